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
