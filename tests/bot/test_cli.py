"""The command line as an administrator uses it: run, chat, invite, settings errors."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def bot_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM__", "VK__", "DB__"))}
    env.update({"DB__URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}", "PYTHONPATH": str(ROOT), "HTTP__PORT": "0"})
    env.update(extra)
    return env


def run_bot(tmp_path: Path, *args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=tmp_path, env=bot_env(tmp_path, **extra),
        input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120,
    )


def test_run_without_a_token_and_without_a_terminal_says_how_to_connect_and_exits_non_zero(tmp_path):
    result = run_bot(tmp_path, "run")

    assert result.returncode == 2
    assert "set TELEGRAM__TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_setting_stops_with_one_line_naming_the_variable(tmp_path):
    result = run_bot(tmp_path, "run", TELEGRAM__TOKEN="not-a-token")

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "TELEGRAM__TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_the_console_chat_registers_a_teacher_with_numbered_buttons(tmp_path):
    answers = ["1", "1", "1", "Орлова Ольга Игоревна", "1", "Кудрово", "2", "1", "1", "2", "2000", "1", "/quit"]

    result = run_bot(tmp_path, "chat", stdin="\n".join(answers) + "\n")

    assert result.returncode == 0, result.stderr
    assert "Главное меню. Вы — молодой педагог." in result.stdout
    with sqlite3.connect(tmp_path / "bot.sqlite3") as connection:
        rows = connection.execute("select full_name, teaching_start_year, birth_year from members").fetchall()
    assert rows == [("Орлова Ольга Игоревна", 2025, 2000)]


def test_invite_creates_a_code_for_a_known_municipality_only(tmp_path):
    good = run_bot(tmp_path, "invite", "--role", "coordinator", "--municipality", "vsevolozhsky")
    bad = run_bot(tmp_path, "invite", "--role", "coordinator", "--municipality", "atlantis")

    assert good.returncode == 0 and "invite code for coordinator" in good.stdout
    assert bad.returncode == 1 and "atlantis" in bad.stderr


def test_every_command_has_help(tmp_path):
    for command in ("run", "chat", "migrate", "import-schools", "invite"):
        result = run_bot(tmp_path, command, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout


def test_import_schools_reports_a_bad_row_and_saves_nothing(tmp_path):
    csv = tmp_path / "schools.csv"
    csv.write_text("municipality,name,kind\nvsevolozhsky,Новая школа,school\nvsevolozhsky,Плохая,zoo\n", encoding="utf-8")

    loaded = run_bot(tmp_path, "import-schools", str(ROOT / "storage" / "reference_data" / "demo.yaml"))
    result = run_bot(tmp_path, "import-schools", str(csv))

    assert loaded.returncode == 0 and "5 new municipalities" in loaded.stdout
    assert result.returncode == 1 and "line 3" in result.stderr
    with sqlite3.connect(tmp_path / "bot.sqlite3") as connection:
        assert connection.execute("select count(*) from organisations where name='Новая школа'").fetchone() == (0,)


async def test_run_with_a_token_serves_telegram_and_stops_cleanly_on_sigterm(tmp_path, emulator):
    env = bot_env(tmp_path, TELEGRAM__TOKEN=emulator.token, TELEGRAM__API_BASE_URL=emulator.base_url,
                  TELEGRAM__POLLING_TIMEOUT="1")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        chat = emulator.chat()
        await chat.send("/start")
        reply = await chat.wait_reply(timeout=30)
        assert reply.content.startswith("Здравствуйте!")
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()[-2000:]
