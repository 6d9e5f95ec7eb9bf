"""Journal rows nobody is handling are picked up while the bot runs, not only at its next start;
a reply is kept with its update until it is sent, and sent at start if a crash came between."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from aiogram import Dispatcher
from aiogram.types import Chat, Message, Update, User
from sqlalchemy import select, update

from dialogs.engine import DialogEngine
from dialogs.model import CommandEvent
from dialogs.registry import build_registry
from handlers.telegram.router import build_router, who_of
from handlers.telegram.webhook import WebhookIntake
from storage.models import InboxUpdate, utcnow
from storage.repositories.inbox import KEEP_HANDLED

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


def intake_of(db, emulator, engine) -> tuple[WebhookIntake, object]:
    dispatcher = Dispatcher()
    dispatcher["engine"] = engine
    dispatcher.include_router(build_router())
    bot = emulator.make_bot()
    return WebhookIntake(bot, dispatcher, db, secret="s" * 20), bot


async def kept_replies(db) -> dict[str, str | None]:
    async with db.unit() as uow:
        rows = (await uow.session.execute(select(InboxUpdate.update_id, InboxUpdate.reply))).all()
    return dict(rows)


async def test_a_reply_committed_but_never_sent_goes_out_at_start_once(db, emulator, clock):
    await emulator.clear()
    person = emulator.chat(82_001)
    engine = DialogEngine(db, build_registry(), clock=clock)
    await journal(db, start_update(9101, person.user_id), age=timedelta(seconds=1))
    # The update is handled and committed, then the process dies before sending the reply.
    reply = await engine.handle(who_of(person.user_id, person.user_id), CommandEvent("start"), update_id="9101")
    assert "Здравствуйте!" in reply.last_text
    assert "Здравствуйте!" in (await kept_replies(db))["9101"]
    assert await person.messages() == []

    intake, bot = intake_of(db, emulator, engine)  # the next start
    try:
        assert await intake.replay_pending() == 0  # nothing to handle again ...
        await person.wait_for(1, timeout=10)  # ... but the reply goes out
        await engine.close()
        assert await kept_replies(db) == {"9101": None}
        await intake.replay_pending()  # and only once
        await asyncio.sleep(0.3)
    finally:
        await intake.drain()
        await bot.session.close()
    texts = [message.content for message in await person.messages()]
    assert len(texts) == 1 and texts[0].startswith("Здравствуйте!")
    assert await handled(db) == {"9101": True}


async def test_a_reply_is_kept_only_until_it_is_sent(db, emulator, clock):
    await emulator.clear()
    person = emulator.chat(82_002)
    engine = DialogEngine(db, build_registry(), clock=clock)
    intake, bot = intake_of(db, emulator, engine)
    await journal(db, start_update(9201, person.user_id), age=timedelta(seconds=1))
    try:
        assert await intake.replay_pending() == 1
        await intake.drain()
        await person.wait_for(1, timeout=10)
        await engine.close()
    finally:
        await bot.session.close()
    assert await kept_replies(db) == {"9201": None}
    assert await handled(db) == {"9201": True}


async def test_a_reply_whose_send_failed_goes_out_with_the_next_round_unless_in_hand(db, emulator, clock):
    """The intake's periodic round sends a reply whose send failed (the channel was down), and
    keeps the ones this process still has in hand."""
    await emulator.clear()
    person, busy = emulator.chat(82_003), emulator.chat(82_004)
    engine = DialogEngine(db, build_registry(), clock=clock)
    for update_id, someone in (("9301", person), ("9302", busy)):
        await journal(db, start_update(int(update_id), someone.user_id), age=timedelta(minutes=2))
        await engine.handle(who_of(someone.user_id, someone.user_id), CommandEvent("start"), update_id=update_id)
    intake, bot = intake_of(db, emulator, engine)
    intake._in_flight.add("9302")  # its handler is still sending it
    replaying = asyncio.create_task(intake.keep_replaying(every=0.1, older_than=timedelta(seconds=60)))
    try:
        await person.wait_for(1, timeout=10)
        await asyncio.sleep(0.5)
    finally:
        intake.stop()
        await replaying
        await bot.session.close()
    await engine.close()
    assert len(await person.messages()) == 1 and await busy.messages() == []
    assert (await kept_replies(db))["9301"] is None and (await kept_replies(db))["9302"] is not None


async def test_handled_rows_are_pruned_after_a_week_unhandled_ones_never(db):
    async with db.unit() as uow:
        for update_id in ("old", "recent", "unhandled"):
            await uow.inbox.record("telegram", update_id, "{}")
        await uow.inbox.claim("telegram", "old", reply='["1", []]')
        await uow.inbox.claim("telegram", "recent")
        await uow.session.execute(update_statement("old").values(handled_at=utcnow() - timedelta(days=8)))
        await uow.session.execute(update_statement("unhandled").values(received_at=utcnow() - timedelta(days=30)))
        await uow.commit()
    async with db.unit() as uow:
        assert await uow.inbox.prune(utcnow() - KEEP_HANDLED) == 1
        await uow.commit()
    assert await handled(db) == {"recent": True, "unhandled": False}


async def test_at_a_start_a_reply_another_replica_stored_just_now_is_left_to_it(db, emulator, clock):
    """Webhook mode, several replicas: one starts while another is sending a reply it has just
    stored. Only the reply of the process killed earlier is sent again."""
    await emulator.clear()
    dead, live = emulator.chat(82_005), emulator.chat(82_006)
    engine, other_replica = (DialogEngine(db, build_registry(), clock=clock) for _ in range(2))
    for update_id, someone in (("9401", dead), ("9402", live)):
        await journal(db, start_update(int(update_id), someone.user_id), age=timedelta(seconds=1))
        await engine.handle(who_of(someone.user_id, someone.user_id), CommandEvent("start"), update_id=update_id)
    async with db.unit() as uow:  # the killed process stored its reply a while ago
        await uow.session.execute(update_statement("9401").values(handled_at=utcnow() - timedelta(seconds=10)))
        await uow.commit()

    async def the_live_replica_sends_its_reply() -> None:
        await asyncio.sleep(0.5)
        other_replica.deliveries.sent("telegram", "9402")
        await other_replica.close()

    intake, bot = intake_of(db, emulator, engine)
    try:
        await asyncio.gather(intake.replay_pending(), the_live_replica_sends_its_reply())
        await dead.wait_for(1, timeout=10)
        await engine.close()
    finally:
        await bot.session.close()
    assert len(await dead.messages()) == 1 and await live.messages() == []
    assert await kept_replies(db) == {"9401": None, "9402": None}
