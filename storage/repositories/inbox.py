"""The journal of incoming updates: recorded before they are acknowledged, emptied once handled.

A duplicate delivery (same transport and update id) is recognised by the primary key; a
crash between recording and handling leaves the row pending, and it is replayed at start.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import InboxUpdate, utcnow

TABLE = InboxUpdate.__table__
REPLAY_EVERY = 30.0  # seconds between a running intake's looks for orphaned rows
ORPHAN_AGE = timedelta(seconds=60)  # journaled this long ago and not handled: nobody is on it
_counter = itertools.count()


def next_seq() -> int:
    """A monotonic sequence number for ordering replays (microseconds plus a tie-breaker)."""
    return time.time_ns() // 1000 * 1000 + next(_counter) % 1000


def record_many_statement(dialect: str, transport: str, items: list[tuple[str, str | None]]):
    """INSERT … ON CONFLICT DO NOTHING RETURNING update_id for a batch of (update id, payload)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    now = utcnow()
    return (
        insert(TABLE)
        .values([
            {"transport": transport, "update_id": update_id, "seq": next_seq(), "payload": payload, "received_at": now}
            for update_id, payload in items
        ])
        .on_conflict_do_nothing(index_elements=["transport", "update_id"])
        .returning(TABLE.c.update_id)
    )


async def journal(engine, transport: str, items: list[tuple[str, str | None]]) -> set[str]:
    """Journal a batch in its own short transaction on a bare connection (the intake's hot path)."""
    if not items:
        return set()
    async with engine.begin() as connection:
        result = await connection.execute(record_many_statement(engine.dialect.name, transport, items))
        return set(result.scalars())


class InboxRepository:
    """Record, find and mark incoming updates."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, transport: str, update_id: str, payload: str | None) -> bool:
        """Journal an update; False when it was seen before (a duplicate delivery)."""
        insert = pg_insert if self.session.bind.dialect.name == "postgresql" else sqlite_insert
        statement = (
            insert(TABLE)
            .values(transport=transport, update_id=update_id, seq=next_seq(), payload=payload, received_at=utcnow())
            .on_conflict_do_nothing(index_elements=["transport", "update_id"])
        )
        result = await self.session.execute(statement)
        return result.rowcount == 1

    async def record_many(self, transport: str, items: list[tuple[str, str | None]]) -> set[str]:
        """Journal a batch in one statement; returns the ids never seen before."""
        if not items:
            return set()
        statement = record_many_statement(self.session.bind.dialect.name, transport, items)
        return set((await self.session.execute(statement)).scalars())

    async def claim(self, transport: str, update_id: str) -> bool:
        """Mark a journaled update handled (in the caller's transaction); False if it already was.

        One statement on the hot path: the UPDATE also locks the row on PostgreSQL, so two
        replicas given the same update handle it once. An update that was never journaled is
        claimable too (its row simply does not exist).
        """
        result = await self.session.execute(
            update(TABLE)
            .where(TABLE.c.transport == transport, TABLE.c.update_id == update_id, TABLE.c.handled_at.is_(None))
            .values(handled_at=utcnow(), payload=None)
        )
        if result.rowcount == 1:
            return True
        return not await self.is_handled(transport, update_id)

    async def is_handled(self, transport: str, update_id: str) -> bool:
        """Whether the update was handled; on PostgreSQL the row stays locked until commit, so two
        replicas given the same update handle it once."""
        statement = select(TABLE.c.handled_at).where(TABLE.c.transport == transport, TABLE.c.update_id == update_id)
        if self.session.bind.dialect.name == "postgresql":
            statement = statement.with_for_update()
        row = (await self.session.execute(statement)).first()
        return row is not None and row.handled_at is not None

    async def mark_handled(self, transport: str, update_id: str) -> None:
        """Mark handled and drop the raw payload: the journal keeps updates only until handled."""
        await self.session.execute(
            update(TABLE)
            .where(TABLE.c.transport == transport, TABLE.c.update_id == update_id)
            .values(handled_at=utcnow(), payload=None)
        )

    async def pending(self, transport: str, limit: int = 1000, *,
                      received_before: datetime | None = None) -> list[tuple[str, str]]:
        """Updates recorded but not handled (after a crash), oldest first: (update id, payload)."""
        statement = select(TABLE.c.update_id, TABLE.c.payload).where(
            TABLE.c.transport == transport, TABLE.c.handled_at.is_(None)
        )
        if received_before is not None:
            statement = statement.where(TABLE.c.received_at < received_before)
        rows = await self.session.execute(statement.order_by(TABLE.c.seq).limit(limit))
        return [(row.update_id, row.payload) for row in rows]
