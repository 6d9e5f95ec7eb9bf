"""Replies kept in the journal until sent: marked in batches, kept in hand while storage is down."""

from __future__ import annotations

from sqlalchemy import select

from dialogs.model import OutMessage, Reply
from storage.db import create_engine
from storage.models import InboxUpdate
from storage.repositories.inbox import Deliveries


async def kept(db) -> dict[str, str | None]:
    async with db.unit() as uow:
        return dict((await uow.session.execute(select(InboxUpdate.update_id, InboxUpdate.reply))).all())


async def keep_replies(db, count: int) -> list[str]:
    ids = [f"u{index}" for index in range(count)]
    async with db.unit() as uow:
        for update_id in ids:
            await uow.inbox.record("telegram", update_id, "{}")
            await uow.inbox.claim("telegram", update_id, reply='["1",[["текст",[],[]]]]')
        await uow.commit()
    return ids


async def test_replies_sent_are_marked_in_batches_of_any_size(db):
    ids = await keep_replies(db, 700)  # more than one statement's worth, not a power of two
    deliveries = Deliveries(db.sessions.kw["bind"])
    for update_id in ids[:699]:
        deliveries.sent("telegram", update_id)
    assert deliveries.in_hand("telegram") == set(ids[:699])

    await deliveries.flush()

    assert deliveries.in_hand("telegram") == set()
    assert {update_id for update_id, reply in (await kept(db)).items() if reply is not None} == {"u699"}


async def test_marks_that_fail_stay_in_hand_and_land_with_the_next_mark(db, tmp_path):
    (update_id, later) = await keep_replies(db, 2)
    unreachable = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}")
    deliveries = Deliveries(unreachable)  # storage that fails the write (an empty database: no journal)
    deliveries.sent("telegram", update_id)
    await deliveries.flush()
    assert deliveries.in_hand("telegram") == {update_id}  # not sent again by a replay meanwhile
    await unreachable.dispose()

    deliveries.engine = db.sessions.kw["bind"]  # storage is back
    deliveries.sent("telegram", later)
    await deliveries.flush()
    assert deliveries.in_hand("telegram") == set()
    assert await kept(db) == {update_id: None, later: None}


async def test_a_graceful_stop_marks_the_replies_sent_just_before_it(tmp_path):
    from bot.settings import DbSettings, Settings
    from bot.wiring import build_app

    app = await build_app(Settings(_env_file=None, db=DbSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'b.sqlite3'}")))
    (update_id,) = await keep_replies(app.db, 1)
    app.engine.delivered("telegram", update_id, Reply([OutMessage("Готово")]))  # sent a moment before the stop

    await app.close()

    app = await build_app(Settings(_env_file=None, db=DbSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'b.sqlite3'}")))
    try:
        assert await kept(app.db) == {update_id: None}  # not sent again at the next start
    finally:
        await app.close()
