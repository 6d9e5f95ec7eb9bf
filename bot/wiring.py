"""Build the bot's parts from settings: database, engine, channels, scheduler."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import Settings
from dialogs.engine import DialogEngine
from dialogs.registry import build_registry
from storage.db import create_engine, session_factory
from storage.migrate import serialise, upgrade
from storage.models import utcnow
from storage.services.reference import ensure_demo_reference
from storage.services.surveys import sync_builtin_questionnaires
from storage.unit_of_work import Database

log = logging.getLogger(__name__)


@dataclass
class App:
    """Everything a running bot needs, built once from settings and passed down."""

    settings: Settings
    sql: AsyncEngine
    db: Database
    engine: DialogEngine
    clock: Callable[[], datetime] = utcnow
    closers: list = field(default_factory=list)

    async def close(self) -> None:
        for close in reversed(self.closers):
            await close()
        await self.engine.close()
        await self.sql.dispose()


async def build_app(settings: Settings, *, clock: Callable[[], datetime] = utcnow, migrate: bool = True) -> App:
    """Create the database (migrated, with demo data on a fresh install) and the dialog engine."""
    sql = create_engine(settings.db.url, echo=settings.db.echo)
    if migrate:
        await upgrade(sql)
    db = Database(session_factory(sql))
    async with db.unit() as uow:
        await (await uow.session.connection()).run_sync(serialise)  # replicas starting together: one at a time
        if settings.demo_data and await ensure_demo_reference(uow):
            log.info("loaded the demo reference data (municipalities and organisations)")
        await sync_builtin_questionnaires(uow, now=clock())
        await uow.commit()
    engine = DialogEngine(db, build_registry(), config=settings, clock=clock)
    return App(settings=settings, sql=sql, db=db, engine=engine, clock=clock)


def build_telegram(app: App):
    """The aiogram Bot, a Dispatcher with our router, and the intake: durable polling or webhook."""
    from aiogram import Dispatcher

    from handlers.telegram.polling import DurablePolling
    from handlers.telegram.router import build_router
    from handlers.telegram.session import build_bot
    from handlers.telegram.timing import UpdateTimer
    from handlers.telegram.webhook import WebhookIntake

    telegram = app.settings.telegram
    assert telegram.token is not None
    bot = build_bot(telegram.token.get_secret_value(), telegram.api_base_url)
    dispatcher = Dispatcher(disable_fsm=True)  # dialog state lives in the engine's table, not aiogram's FSM
    dispatcher["engine"] = app.engine
    dispatcher.update.outer_middleware(UpdateTimer())
    dispatcher.include_router(build_router())
    if telegram.mode == "webhook":
        intake = WebhookIntake(bot, dispatcher, app.db, secret=telegram.webhook_secret.get_secret_value())
    else:
        intake = DurablePolling(bot, dispatcher, app.db, timeout=telegram.polling_timeout)
    app.closers.append(bot.session.close)
    return bot, dispatcher, intake
