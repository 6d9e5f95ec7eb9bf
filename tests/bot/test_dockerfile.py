"""The Dockerfile's steps, run outside a container (no Docker daemon here) in a fresh venv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def dockerfile() -> tuple[list[tuple[str, str]], list[str], str]:
    """The COPY pairs, the RUN pip command and the CMD of the Dockerfile."""
    copies, run, cmd = [], "", []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, target = line.split()[1:]
            copies.extend((source, target) for source in sources)
        elif line.startswith("RUN pip install"):
            run = line.removeprefix("RUN ")
        elif line.startswith("CMD "):
            cmd = json.loads(line.removeprefix("CMD "))
    return copies, cmd, run


def test_the_image_installs_and_its_start_command_runs_on_a_fresh_virtualenv(tmp_path):
    copies, cmd, run = dockerfile()
    app = tmp_path / "app"
    app.mkdir()
    for source, target in copies:
        destination = app / target if target not in ("./", ".") else app / Path(source).name
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / source, destination)
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    install = run.split()
    assert install[:2] == ["pip", "install"]
    subprocess.run([str(python), "-m", *install], cwd=app, check=True, capture_output=True, timeout=900)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM__", "VK__", "DB__", "PYTHONPATH"))}
    started = subprocess.run(
        [str(python) if cmd[0] == "python" else cmd[0], *cmd[1:]], cwd=tmp_path, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )

    # The installed package carries its migrations, questionnaires and demo data: a full start-up path.
    invited = subprocess.run(
        [str(python), "-m", "bot", "invite", "--role", "admin"], cwd=tmp_path, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )

    assert cmd == ["python", "-m", "bot", "run"]
    assert started.returncode == 2 and "set TELEGRAM__TOKEN" in started.stderr, started.stderr[-2000:]
    assert invited.returncode == 0 and "invite code for admin" in invited.stdout, invited.stderr[-2000:]


def test_the_compose_file_matches_the_settings_the_bot_reads():
    from bot.settings import Settings

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    bot, db = compose["services"]["bot"], compose["services"]["db"]

    assert bot["command"] == ["python", "-m", "bot", "run"]
    assert bot["depends_on"]["db"]["condition"] == "service_healthy"
    url = bot["environment"]["DB__URL"]
    assert url.startswith("postgresql+asyncpg://") and "@db:5432/" in url
    assert db["environment"]["POSTGRES_DB"] == url.rsplit("/", 1)[1]
    settings = Settings(db={"url": url.replace("${POSTGRES_PASSWORD:-change-me}", "x")}, demo_data=False)
    assert settings.db.url.startswith("postgresql+asyncpg://")
    for name in bot["environment"]:
        head = name.split("__")[0].lower()
        assert head in Settings.model_fields, f"{name} is not a setting"
