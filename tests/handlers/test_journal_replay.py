"""Journal rows nobody is handling are picked up while the bot runs, not only at its next start."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from aiogram import Dispatcher
from aiogram.types import Chat, Message, Update, User
from sqlalchemy import select, update

from dialogs.engine import DialogEngine
from dialogs.registry import build_registry
from handlers.telegram.router import build_router
from handlers.telegram.webhook import WebhookIntake
from storage.models import InboxUpdate, utcnow

pytestmark = pytest.mark.timeout(60)


def start_update(update_id: int, user_id: int) -> Update:
    person = User(id=user_id, is_bot=False, first_name="Тест")
    message = Message(message_id=update_id, date=datetime(2026, 11, 26, tzinfo=timezone.utc),
                      chat=Chat(id=user_id, type="private"), from_user=person, text="/start")
    return Update(update_id=update_id, message=message)


async def journal(db, update: Update, *, age: timedelta) -> None:
    async with db.unit() as uow:
        await uow.inbox.record("telegram", str(update.update_id), update.model_dump_json(exclude_none=True))
        await uow.session.execute(
            update_statement(str(update.update_id)).values(received_at=utcnow() - age)
        )
        await uow.commit()


def update_statement(update_id: str):
    return update(InboxUpdate).where(InboxUpdate.transport == "telegram", InboxUpdate.update_id == update_id)


async def handled(db) -> dict[str, bool]:
    async with db.unit() as uow:
        rows = (await uow.session.execute(select(InboxUpdate.update_id, InboxUpdate.handled_at))).all()
    return {update_id: at is not None for update_id, at in rows}


async def test_orphans_are_replayed_and_updates_answered_with_try_again_are_settled(db, emulator, clock):
    await emulator.clear()
    orphan, deferred, fresh = (emulator.chat(81_000 + index) for index in range(3))
    engine = DialogEngine(db, build_registry(), clock=clock)
    dispatcher = Dispatcher()
    dispatcher["engine"] = engine
    dispatcher.include_router(build_router())
    bot = emulator.make_bot()
    intake = WebhookIntake(bot, dispatcher, db, secret="s" * 20)

    # A replica journaled and acknowledged these, then died; another answered "try again" for the
    # second while the database was down (the person was asked to repeat); the third is in flight
    # at a live replica right now.
    await journal(db, start_update(9001, orphan.user_id), age=timedelta(minutes=2))
    await journal(db, start_update(9002, deferred.user_id), age=timedelta(minutes=2))
    await journal(db, start_update(9003, fresh.user_id), age=timedelta(seconds=1))
    engine.deferred.add(("telegram", "9002"))

    replaying = asyncio.create_task(intake.keep_replaying(every=0.1, older_than=timedelta(seconds=60)))
    try:
        await orphan.wait_for(1, timeout=10)
        await asyncio.sleep(0.5)  # another round or two: nothing else may be replayed
    finally:
        intake.stop()
        await replaying
        await intake.drain()
        await bot.session.close()

    assert "Выберите ваш муниципалитет" in (await orphan.last_text() or "")
    assert await deferred.messages() == [] and await fresh.messages() == []
    assert await handled(db) == {"9001": True, "9002": True, "9003": False}
    assert engine.deferred == set()
