"""Replies kept in the journal and never confirmed sent, sent again by either channel.

The engine keeps an update's reply in its journal row, in the transaction that marks the update
handled; the channel notes it sent (`Deliveries`). A process that dies in between, or a channel
that fails to take the reply, leaves it due: the channel's intake sends it at its next start, or
in its replay round.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Awaitable, Callable

from dialogs.model import Reply, decode_reply
from storage.repositories.inbox import Deliveries
from storage.unit_of_work import Database

log = logging.getLogger(__name__)

# Sends one kept reply (update id, chat id, reply): True once it is settled (sent, or refused for
# good), False when the channel is failing and the rest should wait for the next round.
Send = Callable[[str, str, Reply], Awaitable[bool]]


async def resend_kept(db: Database, deliveries: Deliveries, transport: str, send: Send, *,
                      received_before: datetime | None = None, handled_before: datetime | None = None,
                      skip: set[str] | frozenset = frozenset()) -> int:
    """Send the kept replies of `transport` oldest first, except those in hand here (sent and not
    yet marked, or in `skip`); returns how many were settled."""
    async with db.unit() as uow:
        due = await uow.inbox.undelivered(transport, received_before=received_before, handled_before=handled_before)
    in_hand = deliveries.in_hand(transport) | skip
    settled = 0
    for update_id, kept in due:
        if update_id in in_hand:
            continue
        try:
            chat_id, reply = decode_reply(kept)
        except (ValueError, TypeError):
            log.warning("%s: a kept reply is unreadable; dropped", transport)
        else:
            if not await send(update_id, chat_id, reply):
                break
            settled += 1
        deliveries.sent(transport, update_id)
    if settled:
        log.info("%s: sent %d replies kept from before a stop or a failure", transport, settled)
    return settled
