"""The journal of incoming updates: recorded before they are acknowledged, emptied once handled.

A duplicate delivery (same transport and update id) is recognised by the primary key; a
crash between recording and handling leaves the row pending, and it is replayed at start.
The reply an update produced is stored when it is marked handled, in the same transaction, and
cleared once sent (`Deliveries`): a crash in between leaves it due, and it is sent at start.
Handled rows are kept a week (a redelivery within it is still recognised), then pruned.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.driver_sql import DriverStatement, many
from storage.models import ChannelCursor, InboxUpdate, utcnow

log = logging.getLogger(__name__)
TABLE = InboxUpdate.__table__
_CURSOR = ChannelCursor.__table__.c
SAVE_CURSOR = DriverStatement(
    "INSERT INTO channel_cursors (name, position, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) "
    "DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
    [_CURSOR.name, _CURSOR.position, _CURSOR.updated_at],
)
REPLAY_EVERY = 30.0  # seconds between a running intake's looks for orphaned rows
ORPHAN_AGE = timedelta(seconds=60)  # journaled this long ago and not handled: nobody is on it
MARK_DELAY = 0.1  # seconds a sent reply waits to be marked with others (resent if the process dies meanwhile)
MARK_AT_MOST = 512  # updates per statement marking replies sent (well under the drivers' parameter limits)
KEEP_HANDLED = timedelta(days=7)  # handled rows (no payload, no reply) are pruned after this
_counter = itertools.count()


def next_seq() -> int:
    """A monotonic sequence number for ordering replays (microseconds plus a tie-breaker)."""
    return time.time_ns() // 1000 * 1000 + next(_counter) % 1000


_COLUMNS = [TABLE.c.transport, TABLE.c.update_id, TABLE.c.seq, TABLE.c.payload, TABLE.c.received_at]
_RECORD: dict[int, DriverStatement] = {}
# Marks an update handled and keeps its reply until it is sent (`Deliveries`).
CLAIM = DriverStatement(
    "UPDATE inbox SET handled_at = ?, payload = NULL, reply = ? "
    "WHERE transport = ? AND update_id = ? AND handled_at IS NULL",
    [TABLE.c.handled_at, TABLE.c.reply, TABLE.c.transport, TABLE.c.update_id],
)
_DELIVERED: dict[int, DriverStatement] = {}
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


def delivered_statement(count: int) -> DriverStatement:
    """UPDATE clearing the kept reply of `count` updates of one transport (built once per size)."""
    statement = _DELIVERED.get(count)
    if statement is None:
        statement = _DELIVERED[count] = DriverStatement(
            f"UPDATE inbox SET reply = NULL WHERE transport = ? AND update_id IN ({', '.join(['?'] * count)})",
            [TABLE.c.transport, *[TABLE.c.update_id] * count],
        )
    return statement


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

    async def claim(self, transport: str, update_id: str, reply: str | None = None) -> bool:
        """Mark a journaled update handled (in the caller's transaction), keeping its `reply`
        (`dialogs.model.encode_reply`) until it is sent; False if it already was handled.

        The end of an update's handling on SQLite (PostgreSQL's end statement embeds `CLAIM`).
        On PostgreSQL the UPDATE also locks the row, so two replicas given the same update
        handle it once. An update that was never journaled is claimable too (its row simply
        does not exist).
        """
        result = await CLAIM.execute(self.session, utcnow(), reply, transport, update_id)
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

    async def undelivered(self, transport: str, limit: int = 1000, *, received_before: datetime | None = None,
                          handled_before: datetime | None = None) -> list[tuple[str, str]]:
        """Replies of handled updates not known to be sent (the process ended or the channel
        failed in between), oldest first: (update id, `encode_reply` text)."""
        condition = TABLE.c.reply.is_not(None)
        if handled_before is not None:
            condition = and_(condition, TABLE.c.handled_at < handled_before)
        return await self._oldest(TABLE.c.reply, condition, transport, limit, received_before)

    async def last_kept_at(self, transport: str) -> datetime | None:
        """When the youngest reply still kept was stored (its update handled), if any."""
        return (await self.session.execute(
            select(func.max(TABLE.c.handled_at)).where(TABLE.c.transport == transport, TABLE.c.reply.is_not(None))
        )).scalar()

    async def prune(self, before: datetime) -> int:
        """Delete rows handled before `before` (their replies too: a week-old reply is moot)."""
        result = await self.session.execute(
            delete(TABLE).where(TABLE.c.handled_at.is_not(None), TABLE.c.handled_at < before)
        )
        return result.rowcount or 0

    async def cursor(self, name: str) -> str | None:
        """How far the intake `name` had read its channel (saved with the journal), if recorded."""
        return (await self.session.execute(select(_CURSOR.position).where(_CURSOR.name == name))).scalar()

    async def save_cursor(self, name: str, position: str) -> None:
        """Record how far the intake `name` has read, in the transaction that journals what it read."""
        await SAVE_CURSOR.execute(self.session, name, position, utcnow())

    async def pending(self, transport: str, limit: int = 1000, *,
                      received_before: datetime | None = None) -> list[tuple[str, str]]:
        """Updates recorded but not handled (after a crash), oldest first: (update id, payload)."""
        return await self._oldest(TABLE.c.payload, TABLE.c.handled_at.is_(None), transport, limit, received_before)

    async def _oldest(self, column, condition, transport: str, limit: int,
                      received_before: datetime | None) -> list[tuple[str, str]]:
        """(update id, `column`) of the transport's rows meeting `condition`, oldest first; with
        `received_before`, only rows received earlier."""
        statement = select(TABLE.c.update_id, column).where(TABLE.c.transport == transport, condition)
        if received_before is not None:
            statement = statement.where(TABLE.c.received_at < received_before)
        rows = await self.session.execute(statement.order_by(TABLE.c.seq).limit(limit))
        return [(row[0], row[1]) for row in rows]


class Deliveries:
    """Sent replies, marked in the journal in the background: a mark waits `MARK_DELAY` (and for
    the statement in flight), then goes with every mark made meanwhile, so a busy bot pays one
    statement per batch (per update it cost about 80 µs of CPU without the delay). A crash
    before the mark lands sends the reply again at start: at least once, never lost."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self._due: dict[str, set[str]] = {}
        self._marking: dict[str, set[str]] = {}
        self._task: asyncio.Task | None = None

    def sent(self, transport: str, update_id: str) -> None:
        """Note a reply sent; it is marked soon after, in a batch."""
        self._due.setdefault(transport, set()).add(update_id)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._mark_all(), name="mark replies sent")

    def in_hand(self, transport: str) -> set[str]:
        """Updates whose reply is sent but not yet marked: not to be sent again."""
        return self._due.get(transport, set()) | self._marking.get(transport, set())

    async def flush(self) -> None:
        """Mark every reply noted so far (at shutdown; a failure leaves them due, resent at start)."""
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._due:
            self._task = asyncio.get_running_loop().create_task(self._mark_all())
            await asyncio.shield(self._task)

    async def _mark_all(self) -> None:
        try:
            while self._due:
                await asyncio.sleep(MARK_DELAY)
                self._marking, self._due = self._due, {}
                try:
                    await self._mark(self._marking)
                except Exception as error:  # storage down: kept in hand, tried again with the next mark
                    log.warning("could not mark %d replies sent (%s)",
                                sum(map(len, self._marking.values())), type(error).__name__)
                    for transport, ids in self._marking.items():
                        self._due.setdefault(transport, set()).update(ids)
                    return
                finally:
                    self._marking = {}
        finally:
            self._task = None

    async def _mark(self, batch: dict[str, set[str]]) -> None:
        """Clear the kept replies of a batch: one statement per transport and `MARK_AT_MOST` ids."""
        async with self.engine.connect() as connection:
            for transport, ids in batch.items():
                ids = sorted(ids)
                for first in range(0, len(ids), MARK_AT_MOST):
                    chunk = ids[first:first + MARK_AT_MOST]
                    # Sizes rounded up to a power of two (the last id repeated): a few statement
                    # texts, each prepared once on PostgreSQL.
                    chunk += chunk[-1:] * ((1 << (len(chunk) - 1).bit_length()) - len(chunk))
                    await delivered_statement(len(chunk)).execute(connection, transport, *chunk)
