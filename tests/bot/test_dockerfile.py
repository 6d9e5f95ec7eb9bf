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


def compose_default(value: str) -> str:
    """What Compose puts in a variable's place when .env does not set it: `${NAME:-default}` → default."""
    import re

    return re.sub(r"\$\{[A-Z0-9_]+(?::?-([^}]*))?\}", lambda match: match.group(1) or "", str(value))


def test_the_proxy_service_sends_the_webhook_and_the_health_endpoints_to_the_bots_http_port(monkeypatch):
    import re

    from bot.settings import Settings
    from handlers.telegram.webhook import SECRET_HEADER, WEBHOOK_PATH

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    proxy, bot = compose["services"]["proxy"], compose["services"]["bot"]
    mount = next(volume for volume in proxy["volumes"] if volume.split(":")[1] == "/etc/nginx/nginx.conf")
    conf = (ROOT / mount.split(":")[0]).read_text()
    live = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())  # without the commented TLS block

    # The bot as the container sees it when .env sets nothing but the token: polling, port 8080.
    for name in [name for name in os.environ if name.startswith(("TELEGRAM__", "HTTP__"))]:
        monkeypatch.delenv(name)
    for name, value in bot["environment"].items():
        monkeypatch.setenv(name, compose_default(value))
    settings = Settings(_env_file=None)
    assert settings.telegram.mode == "polling"
    # ... and in webhook mode with the three variables set in .env.
    monkeypatch.setenv("TELEGRAM__MODE", "webhook")
    monkeypatch.setenv("TELEGRAM__WEBHOOK_URL", "https://bot.example.org")
    monkeypatch.setenv("TELEGRAM__WEBHOOK_SECRET", "x" * 32)
    assert Settings(_env_file=None).telegram.mode == "webhook"
    for name in ("TELEGRAM__MODE", "TELEGRAM__WEBHOOK_URL", "TELEGRAM__WEBHOOK_SECRET"):
        assert bot["environment"][name] == f"${{{name}" + (":-polling}" if name == "TELEGRAM__MODE" else ":-}")

    assert proxy["image"].startswith("nginx:") and proxy["depends_on"]["bot"]
    assert any(str(port).endswith(":80") for port in proxy["ports"]) and re.search(r"^\s*listen 80;", live, re.M)
    assert "container_name" not in bot and "ports" not in bot  # `--scale bot=3` needs both absent
    upstream = re.search(r"set \$bot http://([a-z]+):(\d+);", live)
    assert upstream and upstream.groups() == ("bot", str(settings.http.port))
    for path in (WEBHOOK_PATH, "/healthz", "/readyz", "/metrics"):
        block = re.search(rf"location = {re.escape(path)} \{{(.*?)\n        \}}", live, re.S)
        assert block and "proxy_pass $bot;" in block.group(1), path
    webhook = re.search(rf"location = {re.escape(WEBHOOK_PATH)} \{{(.*?)\n        \}}", live, re.S).group(1)
    header = SECRET_HEADER
    assert f"proxy_set_header {header} $http_{header.lower().replace('-', '_')};" in webhook
    assert re.search(r"location / \{\s*return 404;", live)
