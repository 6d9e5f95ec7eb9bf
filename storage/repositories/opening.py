"""The start of an update's handling: claim its journal row, then load and lock the person's
dialog state (and note their member id).

On PostgreSQL that is one statement, one round trip instead of three: each round trip costs the
event loop a send, a wake-up and a parse, and they were most of an update's CPU there
(`python -m bench.load --postgres …`). On SQLite the statements run in-process and stay apart.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.driver_sql import DriverStatement
from storage.models import Account, Conversation, InboxUpdate, utcnow
from storage.repositories.accounts import remember_member_id
from storage.repositories.conversations import ConversationRepository, DialogState, state_of
from storage.repositories.inbox import InboxRepository

_I, _C, _A = InboxUpdate.__table__.c, Conversation.__table__.c, Account.__table__.c

# `ours`: the claim's UPDATE took the row, or there is no row (an update never journaled is
# claimable, as in `InboxRepository.claim`); the UPDATE waits for a row another transaction
# holds and then finds it handled. The state is read and locked only when the update is ours,
# and only after the claim (its condition reads `ours`): every transaction takes the journal row
# first, then the person's row, so two replicas given the same update cannot deadlock.
CLAIM_AND_LOAD = DriverStatement(
    "WITH claimed AS ("
    "UPDATE inbox SET handled_at = ?, payload = NULL "
    "WHERE transport = ? AND update_id = ? AND handled_at IS NULL RETURNING 1), "
    "decision AS ("
    "SELECT (SELECT count(*) FROM claimed) = 1 "
    "OR NOT EXISTS (SELECT 1 FROM inbox WHERE transport = ? AND update_id = ?) AS ours), "
    "state AS ("
    "SELECT flow, screen, data, stack, view, nonce FROM conversations "
    "WHERE transport = ? AND external_id = ? AND (SELECT ours FROM decision) FOR UPDATE) "
    "SELECT (SELECT ours FROM decision), "
    "(SELECT member_id FROM accounts WHERE transport = ? AND external_id = ?), "
    "state.flow, state.screen, state.data, state.stack, state.view, state.nonce "
    "FROM (SELECT 1) AS one LEFT JOIN state ON TRUE",
    [_I.handled_at, _I.transport, _I.update_id, _I.transport, _I.update_id, _C.transport, _C.external_id,
     _A.transport, _A.external_id],
)


async def start_update(session: AsyncSession, transport: str, external_id: str,
                       update_id: str | None) -> tuple[bool, DialogState | None]:
    """(whether this transaction claimed the update, the person's dialog state locked for it).
    Without an update id there is nothing to claim: only the state is loaded."""
    conversations = ConversationRepository(session)
    if update_id is None or session.bind.dialect.name != "postgresql":
        if update_id is not None and not await InboxRepository(session).claim(transport, update_id):
            return False, None
        return True, await conversations.load(transport, external_id, lock=True)
    row = (await CLAIM_AND_LOAD.execute(
        session, utcnow(), transport, update_id, transport, update_id, transport, external_id, transport, external_id,
    )).first()
    ours, member_id, *state = row
    if not ours:
        return False, None
    remember_member_id(session, transport, external_id, member_id)
    return True, (state_of(*state) if state[0] is not None else None)
