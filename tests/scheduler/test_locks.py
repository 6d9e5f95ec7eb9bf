"""A job lock is held by one process (connection) at a time."""

from __future__ import annotations

from scheduler.locks import job_lock
from storage.db import create_engine, session_factory
from storage.unit_of_work import Database


async def test_a_second_holder_is_refused_while_the_first_holds_the_lock(db):
    database_url = db.url
    other_engine = create_engine(database_url)
    other = Database(session_factory(other_engine))
    try:
        async with job_lock(db, "digest:send") as first:
            async with job_lock(other if "postgresql" in database_url else db, "digest:send") as second:
                assert (first, second) == (True, False)
        async with job_lock(other, "digest:send") as again:
            assert again is True
    finally:
        await other_engine.dispose()


async def test_processes_sending_through_one_database_are_counted_and_a_dead_one_stops_counting(db):
    from scheduler.locks import Presence

    engines = [create_engine(db.url) for _ in range(2)]
    first, second = (Presence(Database(session_factory(engine))) for engine in engines)
    try:
        alone = await first.count()
        gone_before = first.gone()  # the second has not joined yet: not "gone", just unknown
        together = await second.count()
        await first.count()
        await second.leave()  # what PostgreSQL does when a process dies: its connection goes
        after = await first.count()
        gone_after = first.gone()
    finally:
        await first.leave()
        await second.leave()
        for engine in engines:
            await engine.dispose()
    if "postgresql" in db.url:
        assert (alone, together, after) == (1, 2, 1)
        assert (gone_before, gone_after) == (set(), {second.token})
    else:  # SQLite is one process by design
        assert (alone, together, after) == (1, 1, 1)


def test_each_process_paces_at_its_share_of_the_per_token_limit():
    import math

    from scheduler.broadcaster import RateLimit
    from scheduler.jobs import share_of

    telegram = RateLimit(per_second=30, per_chat_per_second=1.0, burst=3)
    assert share_of(telegram, 1) == telegram
    assert share_of(telegram, 3) == RateLimit(per_second=10, per_chat_per_second=1.0, burst=1)
    assert share_of(RateLimit(per_second=math.inf), 3).per_second == math.inf


async def test_a_process_whose_lock_connection_was_lost_joins_again(postgres_url):
    import pytest
    from sqlalchemy import text

    from scheduler.locks import Presence

    engine = create_engine(postgres_url)
    presence = Presence(Database(session_factory(engine)))
    try:
        assert await presence.count() == 1
        async with engine.connect() as admin:  # the database drops the connection (a restart, a failover)
            await admin.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ))
            await admin.commit()
        with pytest.raises(Exception):
            await presence.count()
        assert await presence.count() == 1  # joined again, counted again
    finally:
        await presence.leave()
        await engine.dispose()
