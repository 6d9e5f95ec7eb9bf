"""The bot's HTTP side: Telegram webhook, health and readiness, Prometheus metrics."""

from __future__ import annotations

import logging
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text

from bot.metrics import OUTBOX_BACKLOG, REGISTRY
from storage.models import utcnow
from storage.models_outbox import OutboxMessage
from storage.unit_of_work import Database

log = logging.getLogger(__name__)


async def database_ready(db: Database) -> bool:
    """One round trip to the database."""
    try:
        async with db.unit() as uow:
            await uow.session.execute(text("SELECT 1"))
        return True
    except Exception as error:  # any failure means "not ready"
        log.warning("database not reachable: %s", type(error).__name__)
        return False


def build_web_app(db: Database, channels: dict[str, Callable[[], bool]] | None = None) -> web.Application:
    """/healthz (the process is up), /readyz (database and channels), /metrics."""
    app = web.Application(client_max_size=2 * 1024 * 1024)
    channels = channels or {}

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = {"database": await database_ready(db)}
        checks.update({name: bool(check()) for name, check in channels.items()})
        ready = all(checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def metrics(_request: web.Request) -> web.Response:
        try:
            async with db.unit() as uow:
                backlog = (
                    await uow.session.execute(
                        select(func.count(OutboxMessage.id)).where(
                            OutboxMessage.state == "pending", OutboxMessage.due_at <= utcnow()
                        )
                    )
                ).scalar_one()
            OUTBOX_BACKLOG.set(backlog)
        except Exception:
            pass
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner and the port actually bound (port 0 picks a free one)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port
    return runner, bound

