"""Cluster-wide job locks: each scheduled job runs once per tick across every bot process.

Every replica runs its own APScheduler with an in-memory job store (job stores must never be
shared); the jobs themselves take a PostgreSQL advisory lock, and a replica that does not get it
skips that tick. On SQLite (a single process by design) an in-process lock does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
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


PRESENCE_KEY = lock_key("bot:senders")  # first half of the two-part advisory keys of the slots
PRESENCE_SLOTS = 64
APPLICATION_PREFIX = "bot-sender:"


class Presence:
    """How many bot processes send through one PostgreSQL database right now.

    Each sending process holds one advisory lock of a small range (`PRESENCE_KEY`, slot) on a
    connection of its own for as long as it runs, named after the process's `token`; PostgreSQL
    drops the lock with the connection, so a killed replica stops counting at once, and its
    outbox claims (marked with its token) can be taken over at once (`gone()`). Platform rate
    limits are per bot token, so every process paces itself at its share: the configured limit
    divided by this count. On SQLite (one process) the count is always 1.
    """

    def __init__(self, db: Database) -> None:
        self._engine = db.sessions.kw.get("bind")
        self._connection = None
        #: this process's name among the senders (it marks the outbox rows it claims)
        self.token = uuid.uuid4().hex[:16]
        #: tokens of the processes present at the last successful count (None: unknown)
        self.live: set[str] | None = None
        #: every token ever counted present
        self.seen: set[str] = set()

    @property
    def owner(self) -> str | None:
        """The token to claim rows with: only while this process is present (counted by others)."""
        return self.token if self._connection is not None else None

    @property
    def shared(self) -> bool:
        return self._engine is not None and self._engine.dialect.name == "postgresql"

    async def join(self) -> None:
        """Take a free slot (idempotent; again after the connection was lost)."""
        if not self.shared or self._connection is not None:
            return
        connection = await self._engine.connect()
        try:
            # The others find our token in pg_stat_activity beside our lock.
            await connection.execute(text(f"SET application_name = '{APPLICATION_PREFIX}{self.token}'"))
            await connection.commit()
            for slot in range(PRESENCE_SLOTS):
                got = (await connection.execute(
                    text("SELECT pg_try_advisory_lock(:key, :slot)"), {"key": PRESENCE_KEY, "slot": slot}
                )).scalar_one()
                await connection.commit()  # session-level lock: it outlives the transaction
                if got:
                    self._connection = connection
                    return
        except BaseException:
            await connection.invalidate()
            raise
        await connection.invalidate()  # every slot taken: count without us (and hold no lock)

    async def count(self) -> int:
        """Processes present (at least 1: this one). Counted over our own lock's connection, so
        a lost connection (and with it our slot) shows up here, and the next count joins again."""
        if not self.shared:
            return 1
        query = text(
            "SELECT a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :key AND l.objsubid = 2"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
        self.live = None
        await self.join()
        try:
            if self._connection is not None:
                names = list((await self._connection.execute(query, {"key": PRESENCE_KEY})).scalars())
                await self._connection.commit()
            else:  # every slot taken
                async with self._engine.connect() as connection:
                    names = list((await connection.execute(query, {"key": PRESENCE_KEY})).scalars())
        except Exception:
            await self.leave()
            raise
        tokens = {name.removeprefix(APPLICATION_PREFIX) for name in names
                  if name and name.startswith(APPLICATION_PREFIX)}
        if self._connection is not None and self.token in tokens:
            self.live = tokens  # trusted only when it sees ourselves
            self.seen |= tokens
        return max(1, len(names))

    def gone(self) -> set[str] | None:
        """Processes counted present before and absent now (None: unknown). Only those: a process
        that joined after our last count is absent from `live` but very much alive."""
        return self.seen - self.live if self.live is not None else None

    async def leave(self) -> None:
        """Give the slot back. The connection is discarded, not returned to the pool: a pooled
        connection would keep the session-level lock and count this process forever."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.invalidate()
            except Exception:  # already broken
                pass
