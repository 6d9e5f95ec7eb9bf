"""The start and the end of an update's handling: whether it is still to be handled and the
person's dialog state (with their member id) at the start; the new state saved and the update
marked handled, with the reply it produced kept until sent, at the end: together or not at all.

The start is one statement on both databases (`START`). SQLite has one writer at a time (each
unit begins with BEGIN IMMEDIATE), so nothing can change between the start and the end there:
the end saves the state and marks the update handled in the unit's transaction.

On PostgreSQL each is one standalone statement (`DriverStatement`), so an update that changes
only the dialog state costs two round trips, not four: BEGIN and COMMIT are each a round trip, and
round trips were most of an update's CPU there (`python -m bench.load --postgres …`). Nothing is
locked between the two: the end saves the state only over the version the start read (never
writing back a state erased meanwhile) and only while the journal says the update is unhandled,
and marks it handled only if it saved. It locks the journal row first, then the person's row, so
two replicas given the same update cannot deadlock, and one of them leaves it (`DUPLICATE`). A
replica that changed the person's state in between (another update of theirs) makes the end
report `CONFLICT`, and the update is handled again over the new state. A flow that writes
anything else starts the unit's transaction with its first write (plain reads before it run on
their own: `storage.asyncpg_reads`); the end then runs in that transaction, and nothing lands
unless it saves. The Telegram intake reads the start of each new update with the statement that
journals it (`journal_and_start`), so an update that changes only the dialog state costs one
statement more.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storage.driver_sql import DriverStatement
from storage.models import Account, Conversation, InboxUpdate, utcnow
from storage.repositories.accounts import MEMBER_ID, remember_member_id
from storage.repositories.conversations import (
    LOAD, LOADED, SAVED, UPDATE_OVER, DialogState, columns_of, insert, state_of,
)
from storage.repositories.inbox import CLAIM, IS_HANDLED, IS_HANDLED_LOCKED, journal, record_statement, record_values

if TYPE_CHECKING:
    from storage.unit_of_work import UnitOfWork

_I, _A, _CONVERSATION = InboxUpdate.__table__.c, Account.__table__.c, Conversation.__table__.c
_STATE = ", ".join(f"state.{name}" for name in LOADED)  # a load's columns from the CTE or join `state`

# An update never journaled (no row) is still to be handled, as in `InboxRepository.claim`.
START = DriverStatement(
    f"WITH state AS ({LOAD.sql}) "
    f"SELECT NOT EXISTS ({IS_HANDLED.sql} AND handled_at IS NOT NULL), ({MEMBER_ID.sql}), {_STATE} "
    "FROM (SELECT 1) AS one LEFT JOIN state ON TRUE",
    [*LOAD.columns, *IS_HANDLED.columns, *MEMBER_ID.columns],
    standalone=True,
)


def _finish(save: str, columns: list) -> DriverStatement:
    """The end of an update: `save` (which may read `unhandled`) runs only while the journal row,
    locked first, says the update is unhandled; the update is marked handled only if it saved."""
    return DriverStatement(
        f"WITH journal AS ({IS_HANDLED_LOCKED.sql}), "
        "unhandled AS (SELECT NOT EXISTS (SELECT 1 FROM journal WHERE handled_at IS NOT NULL) AS yes), "
        f"saved AS ({save} RETURNING 1), "
        f"claimed AS ({CLAIM.sql} AND EXISTS (SELECT 1 FROM saved) RETURNING 1) "
        "SELECT EXISTS (SELECT 1 FROM saved), (SELECT yes FROM unhandled)",
        [*IS_HANDLED_LOCKED.columns, *columns, *CLAIM.columns],
        standalone=True,
    )


# A person's first state: nothing if someone created one meanwhile.
FINISH_NEW = _finish(
    insert("SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, 1 WHERE (SELECT yes FROM unhandled)")
    + " ON CONFLICT (transport, external_id) DO NOTHING",
    SAVED,
)
# A change of the state read at the start: nothing if it changed or was deleted (the person's data
# erased) meanwhile, so an erased state is never written back.
FINISH_OVER = _finish(UPDATE_OVER.sql + " AND (SELECT yes FROM unhandled)", UPDATE_OVER.columns)


class Outcome(enum.Enum):
    SAVED = "saved"  # the state is saved and the update marked handled (commit the unit)
    DUPLICATE = "duplicate"  # someone else handled the update meanwhile: nothing was saved
    CONFLICT = "conflict"  # the person's state changed meanwhile: nothing was saved; handle again


@dataclass(frozen=True, slots=True)
class Start:
    """Whether the update is still to be handled, and the person's state (None if they have
    none yet) with the version it was read at, and their member id (None if unregistered)."""

    ours: bool
    state: DialogState | None
    version: int = 0
    member_id: int | None = field(default=None, compare=False)


async def start_update(uow: UnitOfWork, transport: str, external_id: str, update_id: str | None,
                       prefetched: Start | None = None) -> Start:
    """The start of an update (without an update id there is nothing to claim). On PostgreSQL a
    start read when the update was journaled (`journal_and_start`) saves the statement."""
    if prefetched is None:
        row = (await START.execute(
            uow.session, transport, external_id, transport, update_id, transport, external_id)).first()
        ours, member_id, *state = row
        if not ours:
            return Start(False, None)
        prefetched = _started(member_id, *state)
    remember_member_id(uow.session, transport, external_id, prefetched.member_id)
    return prefetched


def _started(member_id: int | None, flow: str | None, screen, data, stack, view, nonce, version: int | None) -> Start:
    """The start of an update that is ours, from the state's columns (all None without a state)."""
    state = None if flow is None else state_of(flow, screen, data, stack, view, nonce)
    return Start(True, state, version or 0, member_id)


_JOURNAL_AND_START: dict[int, DriverStatement] = {}


def _journal_and_start_statement(count: int) -> DriverStatement:
    """`record_statement(count)` that also reads, for each update it journals, the start of its
    person (built once per size)."""
    statement = _JOURNAL_AND_START.get(count)
    if statement is None:
        record = record_statement(count)
        statement = _JOURNAL_AND_START[count] = DriverStatement(
            f"WITH new AS ({record.sql}), "
            f"people (update_id, external_id) AS (VALUES {', '.join(['(?, ?)'] * count)}) "
            "SELECT new.update_id, (SELECT member_id FROM accounts WHERE transport = ? "
            f"AND external_id = people.external_id), {_STATE} "
            "FROM new JOIN people ON people.update_id = new.update_id "
            "LEFT JOIN conversations AS state ON state.transport = ? AND state.external_id = people.external_id",
            [*record.columns, *[_I.update_id, _A.external_id] * count, _A.transport, _CONVERSATION.transport],
        )
    return statement


async def journal_and_start(engine, transport: str, items: list[tuple[str, str | None, str | None]]
                            ) -> dict[str, Start | None]:
    """Journal a batch of (update id, payload, the sender's id) as `journal` does, and return the
    updates never seen before. On PostgreSQL with the start of each (its person's state and member
    id, read by the same statement): handling it then needs one statement, not two. Elsewhere,
    and for an update without a sender, the start is None (the engine reads it)."""
    if not items:
        return {}
    records = [(update_id, payload) for update_id, payload, _ in items]
    if engine.dialect.name != "postgresql":
        return dict.fromkeys(await journal(engine, transport, records))
    values = record_values(transport, records)
    values += [value for update_id, _, external_id in items for value in (update_id, external_id)]
    async with engine.connect() as connection:
        rows = await _journal_and_start_statement(len(items)).execute(connection, *values, transport, transport)
    senders = {update_id: external_id for update_id, _, external_id in items}
    return {row[0]: _started(*row[1:]) if senders[row[0]] is not None else None for row in rows}


async def finish_update(uow: UnitOfWork, transport: str, external_id: str, update_id: str | None,
                        state: DialogState, start: Start, reply: str | None = None) -> Outcome:
    """Save the state the update produced and mark the update handled, keeping its `reply`
    (`dialogs.model.encode_reply`) until it is sent; commit after SAVED."""
    if uow.dialect != "postgresql":
        await uow.conversations.save(transport, external_id, state)
        if update_id is not None:  # the start found it unhandled, and nobody else writes meanwhile
            await uow.inbox.claim(transport, update_id, reply)
        return Outcome.SAVED
    session = uow.session
    if session.new or session.dirty or session.deleted:
        await session.flush()  # changes not yet flushed start the unit's transaction, before the end
    now = utcnow()
    if start.version == 0 or uow.conversations.forgotten(transport, external_id):
        statement, values = FINISH_NEW, (transport, external_id, *columns_of(state))
    else:
        statement, values = FINISH_OVER, (*columns_of(state), transport, external_id, start.version)
    saved, unhandled = (await statement.execute(
        session, transport, update_id, *values, now, reply, transport, update_id)).first()
    if saved:
        return Outcome.SAVED
    return Outcome.CONFLICT if unhandled else Outcome.DUPLICATE
