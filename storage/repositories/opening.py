"""The start of an update's handling: claim its journal row, then load and lock the person's
dialog state (and note their member id).

On PostgreSQL that is one statement, one round trip instead of three: each round trip costs the
event loop a send, a wake-up and a parse, and they were most of an update's CPU there
(`python -m bench.load --postgres …`). On SQLite the statements run in-process and stay apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.driver_sql import DriverStatement
from storage.models import InboxUpdate, utcnow
from storage.repositories.accounts import MEMBER_ID, remember_member_id
from storage.repositories.conversations import LOAD, DialogState, state_of
from storage.repositories.inbox import CLAIM

if TYPE_CHECKING:
    from storage.unit_of_work import UnitOfWork

_I = InboxUpdate.__table__.c

# `ours`: the claim's UPDATE took the row, or there is no row (an update never journaled is
# claimable, as in `InboxRepository.claim`); the UPDATE waits for a row another transaction
# holds and then finds it handled. The state is read and locked only when the update is ours,
# and only after the claim (its condition reads `ours`): every transaction takes the journal row
# first, then the person's row, so two replicas given the same update cannot deadlock.
CLAIM_AND_LOAD = DriverStatement(
    f"WITH claimed AS ({CLAIM.sql} RETURNING 1), "
    "decision AS ("
    "SELECT (SELECT count(*) FROM claimed) = 1 "
    "OR NOT EXISTS (SELECT 1 FROM inbox WHERE transport = ? AND update_id = ?) AS ours), "
    f"state AS ({LOAD.sql} AND (SELECT ours FROM decision) FOR UPDATE) "
    f"SELECT (SELECT ours FROM decision), ({MEMBER_ID.sql}), "
    "state.flow, state.screen, state.data, state.stack, state.view, state.nonce "
    "FROM (SELECT 1) AS one LEFT JOIN state ON TRUE",
    [*CLAIM.columns, _I.transport, _I.update_id, *LOAD.columns, *MEMBER_ID.columns],
)


async def start_update(uow: UnitOfWork, transport: str, external_id: str,
                       update_id: str | None) -> tuple[bool, DialogState | None]:
    """(whether this transaction claimed the update, the person's dialog state locked for it).
    Without an update id there is nothing to claim: only the state is loaded."""
    if update_id is None or uow.dialect != "postgresql":
        if update_id is not None and not await uow.inbox.claim(transport, update_id):
            return False, None
        return True, await uow.conversations.load(transport, external_id, lock=True)
    row = (await CLAIM_AND_LOAD.execute(
        uow.session, utcnow(), transport, update_id, transport, update_id, transport, external_id, transport, external_id,
    )).first()
    ours, member_id, *state = row
    if not ours:
        return False, None
    remember_member_id(uow.session, transport, external_id, member_id)
    return True, (state_of(*state) if state[0] is not None else None)
