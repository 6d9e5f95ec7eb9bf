"""Cluster-wide job locks: each scheduled job runs once per tick across every bot process.

Every replica runs its own APScheduler with an in-memory job store (job stores must never be
shared); the jobs themselves take a PostgreSQL advisory lock, and a replica that does not get it
skips that tick. On SQLite (a single process by design) an in-process lock does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from typing import AsyncIterator

from sqlalchemy import text

from storage.unit_of_work import Database

_local: dict[str, asyncio.Lock] = {}


def lock_key(name: str) -> int:
    """A stable 31-bit key for pg_try_advisory_lock."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@contextlib.asynccontextmanager
async def job_lock(db: Database, name: str) -> AsyncIterator[bool]:
    """Yield True when this process holds the job's lock, False when another one does."""
    engine = db.sessions.kw["bind"]
    if engine.dialect.name != "postgresql":
        lock = _local.setdefault(name, asyncio.Lock())
        if lock.locked():
            yield False
            return
        async with lock:
            yield True
        return
    async with engine.connect() as connection:
        key = lock_key(name)
        got = (await connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})).scalar_one()
        try:
            yield bool(got)
        finally:
            if got:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            await connection.commit()
