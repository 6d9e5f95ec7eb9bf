"""The journal of incoming updates: recorded before they are acknowledged, emptied once handled.

A duplicate delivery (same transport and update id) is recognised by the primary key; a
crash between recording and handling leaves the row pending, and it is replayed at start.
"""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.driver_sql import DriverStatement, many
from storage.models import ChannelCursor, InboxUpdate, utcnow

TABLE = InboxUpdate.__table__
_CURSOR = ChannelCursor.__table__.c
SAVE_CURSOR = DriverStatement(
    "INSERT INTO channel_cursors (name, position, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
    "DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
    [_CURSOR.name, _CURSOR.position, _CURSOR.updated_at],
)
REPLAY_EVERY = 30.0  # seconds between a running intake's looks for orphaned rows
ORPHAN_AGE = timedelta(seconds=60)  # journaled this long ago and not handled: nobody is on it
_counter = itertools.count()


def next_seq() -> int:
    """A monotonic sequence number for ordering replays (microseconds plus a tie-breaker)."""
    return time.time_ns() // 1000 * 1000 + next(_counter) % 1000


_COLUMNS = [TABLE.c.transport, TABLE.c.update_id, TABLE.c.seq, TABLE.c.payload, TABLE.c.received_at]
_RECORD: dict[int, DriverStatement] = {}
CLAIM = DriverStatement(
    "UPDATE inbox SET handled_at = ?, payload = NULL WHERE transport = ? AND update_id = ? AND handled_at IS NULL",
    [TABLE.c.handled_at, TABLE.c.transport, TABLE.c.update_id],
)
_IS_HANDLED = "SELECT handled_at FROM inbox WHERE transport = ? AND update_id = ?"
IS_HANDLED = DriverStatement(_IS_HANDLED, [TABLE.c.transport, TABLE.c.update_id])
IS_HANDLED_LOCKED = DriverStatement(_IS_HANDLED + " FOR UPDATE", [TABLE.c.transport, TABLE.c.update_id])


def record_statement(count: int) -> DriverStatement:
    """INSERT … ON CONFLICT DO NOTHING RETURNING update_id for `count` rows (built once per size)."""
    statement = _RECORD.get(count)
    if statement is None:
        statement = _RECORD[count] = DriverStatement(
            many("INSERT INTO inbox (transport, update_id, seq, payload, received_at) VALUES ",
                 "(?, ?, ?, ?, ?)", count, " ON CONFLICT (transport, update_id) DO NOTHING RETURNING update_id"),
            _COLUMNS * count,
        )
    return statement


def record_values(transport: str, items: list[tuple[str, str | None]]) -> list:
    """The values `record_statement(len(items))` binds for a batch of (update id, payload)."""
    now = utcnow()
    return [value for update_id, payload in items for value in (transport, update_id, next_seq(), payload, now)]


async def _record(target, transport: str, items: list[tuple[str, str | None]]) -> set[str]:
    result = await record_statement(len(items)).execute(target, *record_values(transport, items))
    return {row[0] for row in result}


async def journal(engine, transport: str, items: list[tuple[str, str | None]]) -> set[str]:
    """Journal a batch with one statement that is its own transaction, committed when it returns
    (the intake's hot path: no BEGIN and COMMIT round trips); returns the ids never seen before."""
    if not items:
        return set()
    async with engine.connect() as connection:
        return await _record(connection, transport, items)


class InboxRepository:
    """Record, find and mark incoming updates."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(self, transport: str, update_id: str, payload: str | None) -> bool:
        """Journal an update; False when it was seen before (a duplicate delivery)."""
        return bool(await _record(self.session, transport, [(update_id, payload)]))

    async def claim(self, transport: str, update_id: str) -> bool:
        """Mark a journaled update handled (in the caller's transaction); False if it already was.

        One statement on the hot path: the UPDATE also locks the row on PostgreSQL, so two
        replicas given the same update handle it once. An update that was never journaled is
        claimable too (its row simply does not exist).
        """
        result = await CLAIM.execute(self.session, utcnow(), transport, update_id)
        if result.rowcount == 1:
            return True
        return not await self.is_handled(transport, update_id)

    async def is_handled(self, transport: str, update_id: str) -> bool:
        """Whether the update was handled; on PostgreSQL the row stays locked until commit, so two
        replicas given the same update handle it once."""
        statement = IS_HANDLED_LOCKED if self.session.bind.dialect.name == "postgresql" else IS_HANDLED
        row = (await statement.execute(self.session, transport, update_id)).first()
        return row is not None and row[0] is not None

    async def mark_handled(self, transport: str, update_id: str) -> None:
        """Mark handled and drop the raw payload: the journal keeps updates only until handled."""
        await self.session.execute(
            update(TABLE)
            .where(TABLE.c.transport == transport, TABLE.c.update_id == update_id)
            .values(handled_at=utcnow(), payload=None)
        )

    async def cursor(self, name: str) -> str | None:
        """How far the intake `name` had read its channel (saved with the journal), if recorded."""
        return (await self.session.execute(select(_CURSOR.position).where(_CURSOR.name == name))).scalar()

    async def save_cursor(self, name: str, position: str) -> None:
        """Record how far the intake `name` has read, in the transaction that journals what it read."""
        await SAVE_CURSOR.execute(self.session, name, position, utcnow())

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
