"""kill -9 in the middle of handling updates loses none of them: the journal replays them, and a
reply committed but not yet sent when the process died goes out after the restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_bot(tmp_path: Path, emulator) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM__", "VK__", "DB__"))}
    env.update({
        "DB__URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.sqlite3'}", "PYTHONPATH": str(ROOT),
        "TELEGRAM__TOKEN": emulator.token, "TELEGRAM__API_BASE_URL": emulator.base_url,
        "TELEGRAM__POLLING_TIMEOUT": "1", "HTTP__ENABLED": "false", "LOG_LEVEL": "WARNING",
    })
    return subprocess.Popen([sys.executable, "-m", "bot", "run"], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def pending_updates(path: Path, where: str = "handled_at is null") -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.05) as connection:
            return connection.execute(f"select count(*) from inbox where {where}").fetchone()[0]
    except sqlite3.Error:
        return 0


async def wait_for_schema(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                connection.execute("select count(*) from inbox").fetchone()
                return
        except sqlite3.Error:
            await asyncio.sleep(0.05)
    raise AssertionError("the bot did not create its database")


async def test_kill_9_while_updates_are_in_flight_loses_none_of_them(tmp_path, emulator):
    database = tmp_path / "bot.sqlite3"
    chats = [emulator.chat() for _ in range(40)]
    process = start_bot(tmp_path, emulator)
    try:
        await wait_for_schema(database)
        await chats[0].send("/start")
        await chats[0].wait_reply(timeout=20)

        await asyncio.gather(*(chat.send("/start") for chat in chats[1:]))
        caught = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not caught:
            caught = pending_updates(database)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

        restarted = start_bot(tmp_path, emulator)
        try:
            for chat in chats:
                reply = await chat.wait_reply(after=0, timeout=30)
                assert reply.content.startswith("Здравствуйте!")
            assert pending_updates(database) == 0
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=30)
        # Every reply went out, and was marked so before the graceful stop: none is kept.
        assert pending_updates(database, "reply is not null") == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert caught > 0, "the kill did not land while updates were journaled but unhandled"
