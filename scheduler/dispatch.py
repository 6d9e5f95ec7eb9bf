"""The outbox dispatcher: hands due rows to the broadcaster and records each outcome on its row.

One tick (`dispatch_due`):

1. **claim** due pending rows, a batch per short transaction (PostgreSQL: `FOR UPDATE SKIP
   LOCKED`, so replicas never take the same row; SQLite: one process, writes serialised): each
   claimed row becomes `sending` with `sent_at` = the claim time (its lease), or `unreachable` at
   once when the member has no account we can write to; the next batch is claimed while the
   broadcaster is still sending the previous one, until nothing is due;
2. **attempt**: right before a row's first platform call it becomes `attempting` (rows about to
   leave together are marked in one commit);
3. **send** them through `Broadcaster.send_many` (rate limits, retry-after, backoff live there);
4. **record** each outcome in its own small transaction right after the send returns
   (`sent` + `sent_at`, `unreachable` + the account marked, or back to `pending` later);
5. **release** rows claimed but not attempted (the run stopped early) back to `pending`.

A row is marked `attempting` only while it is still this process's claim; if another process
took it over meanwhile (it thought this one gone), the message is withdrawn, not sent.

So a failure in the middle of a broadcast loses nothing and repeats nothing. A process killed
in the middle leaves its claims behind. Each claim names its process (`claimed_by`, the token of
`scheduler.locks.Presence`); once that process is no longer present, the others sort its claims
out before their next batch; claims without an owner wait for the lease (at start, for the
single SQLite process, all are ours). `release_claims` sorts them out:

- `sending` rows were never handed to the platform: back to `pending`, sent once later;
- `attempting` rows were in flight: the platform may or may not have them, and Telegram cannot
  be asked. They become `uncertain` and are not sent again, so nothing reaches a person twice;
  only a row whose request had not yet left when the process died is lost (in the replicas
  test, with limits lifted, about one of the ~30 uncertain rows of a kill; at 30 msg/s a kill
  rarely catches any). At most the broadcaster's prefetch of rows per killed process is ever
  uncertain (`scheduler.jobs.IN_FLIGHT_AT_MOST`). VK deduplicates by `random_id` (ours is
  derived from the outbox key), so VK rows go back to `pending` instead: sent again, delivered
  once.

Rows of kind "wall" (`WALL_KIND`: an event announcement a coordinator queued) are not messages
to their member: they go to the broadcaster on the transport "vk_wall" (`WALL_TRANSPORT`, the
community wall, `handlers.vk.wall.WallSender`), outside quiet hours' rules. While the broadcaster
has no sender for that transport they are not claimed: they wait, pending.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Collection
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from time import monotonic
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scheduler.broadcaster import Broadcaster, Outcome, Outgoing
from storage.models import Account, Member, Municipality
from storage.models_outbox import OutboxMessage
from storage.services.outbox import FAILED, PENDING, SENT, UNREACHABLE, WALL_KIND, outside_quiet_hours
from storage.unit_of_work import Database

log = logging.getLogger(__name__)

SENDING = "sending"
ATTEMPTING = "attempting"
UNCERTAIN = "uncertain"
IDEMPOTENT_TRANSPORTS = ("vk",)  # the platform drops a repeated call (VK: same random_id)
LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 5
RETRY_BASE = timedelta(minutes=1)
TEXT_LIMIT = 4096
TRANSPORT_ORDER = ("telegram", "vk")
WALL_TRANSPORT = "vk_wall"
WALL_CHAT = "wall"

OnRecorded = Callable[[Outgoing, Outcome], Awaitable[None]]

__all__ = [
    "ATTEMPTING", "DispatchReport", "SENDING", "UNCERTAIN", "WALL_KIND", "WALL_TRANSPORT", "dispatch_due",
    "release_claims",
]


@dataclass
class DispatchReport:
    """What one tick did."""

    claimed: int = 0
    sent: int = 0
    unreachable: int = 0
    failed: int = 0
    rescheduled: int = 0
    deferred: int = 0
    released: int = 0
    uncertain: int = 0
    withdrawn: int = 0  # claimed, then taken over by another process before it was attempted
    #: (transport, outcome) → rows: "sent", "unreachable", "failed", "rescheduled", "uncertain";
    #: transport "none" for a member without an account to write to
    by_transport: Counter[tuple[str, str]] = field(default_factory=Counter)

    def count(self, transport: str | None, outcome: str, rows: int = 1) -> None:
        setattr(self, outcome, getattr(self, outcome) + rows)
        self.by_transport[(transport or "none", outcome)] += rows


@dataclass
class _Claimed:
    row_id: int
    member_id: int | None
    account_id: int | None  # None for a wall post
    transport: str


async def dispatch_due(
    db: Database,
    broadcaster: Broadcaster,
    now: datetime,
    *,
    batch: int = 500,
    quiet: tuple[time, time] | None = None,
    lease: timedelta = LEASE,
    on_recorded: OnRecorded | None = None,
    owner: str | None = None,
    gone_owners: Callable[[], Collection[str] | None] | None = None,
) -> DispatchReport:
    """Send every outbox row due at `now`, claiming `batch` rows at a time, recording each outcome.

    The next batch is claimed while the previous one is still being paced out, so the broadcaster
    never waits for the database between batches. `quiet`: quiet hours; a row that became due
    outside them but is dispatched inside them (a backlog after downtime) waits for the local
    morning. `on_recorded` is awaited after each outcome is committed (tests simulate a crash there).

    `owner` marks the rows this process claims; `gone_owners()` names processes that were present
    and are gone (None: unknown). Their claims are sorted out before each batch, without waiting
    for the lease; the lease remains for every other claim left behind.
    """
    report = DispatchReport()

    async def take_over(older_than: datetime | None) -> None:
        gone = gone_owners() if gone_owners is not None else None
        if older_than is None and not gone:
            return
        released, uncertain = await release_claims(db, older_than=older_than, gone_owners=gone)
        report.released += released
        for transport, rows in uncertain.items():
            report.count(transport, "uncertain", rows)

    await take_over(now - lease)
    pending: dict[str, _Claimed] = {}
    started = monotonic()

    async def due_messages():
        # Claims are stamped with `now`; stop claiming well within the lease, the next tick goes on.
        while monotonic() - started < lease.total_seconds() / 2:
            await take_over(None)  # a replica that died meanwhile: its rows are due again at once
            messages, claimed, found = await _claim(db, broadcaster, now, batch, quiet, report, owner)
            if not found:
                return
            pending.update(claimed)
            for message in messages:
                yield message

    async with _Recorder(db, owner) as recorder:

        async def on_result(msg: Outgoing, outcome: Outcome, _message_id: str | None) -> None:
            claim = pending.pop(msg.key)
            if outcome == Outcome.WITHDRAWN:  # no longer ours: another process has the row
                report.withdrawn += 1
                return
            await recorder.record(claim, outcome, now, report)
            if on_recorded is not None:
                await on_recorded(msg, outcome)

        async def before_send(msg: Outgoing) -> bool:
            return await recorder.attempt(pending[msg.key])

        try:
            await broadcaster.send_many(due_messages(), on_result, before_send=before_send)
        finally:
            if pending:  # claimed but never sent (the run stopped early): due again at once
                report.released += await _release(db, [claim.row_id for claim in pending.values()], owner)
    return report


async def release_claims(
    db: Database, *, older_than: datetime | None = None, gone_owners: Collection[str] | None = None,
) -> tuple[int, Counter[str | None]]:
    """Sort out claims left by a stopped process: never attempted → `pending`; attempted →
    `uncertain` (VK: `pending`). Which claims: all of them (no arguments: the single SQLite
    process at start), those made before `older_than` (the lease), or those of `gone_owners`.
    Returns (rows back to pending, rows now uncertain by transport)."""
    conditions = []
    if older_than is not None:
        conditions.append(OutboxMessage.sent_at < older_than)
    if gone_owners:
        conditions.append(OutboxMessage.claimed_by.in_(gone_owners))

    def claims(state: str):
        statement = update(OutboxMessage).where(OutboxMessage.state == state)
        if conditions:
            statement = statement.where(or_(*conditions))
        return statement

    async with db.unit() as uow:
        execute = uow.session.execute
        released = (await execute(claims(SENDING).values(state=PENDING, sent_at=None, claimed_by=None))).rowcount or 0
        released += (await execute(
            claims(ATTEMPTING).where(OutboxMessage.transport.in_(IDEMPOTENT_TRANSPORTS))
            .values(state=PENDING, sent_at=None, claimed_by=None)
        )).rowcount or 0
        uncertain = Counter((await execute(
            claims(ATTEMPTING).values(state=UNCERTAIN, claimed_by=None).returning(OutboxMessage.transport)
        )).scalars())
        await uow.commit()
    if released:
        log.warning("outbox: %d claimed rows released back to pending", released)
    if uncertain:
        log.warning("outbox: %d rows were in flight when their process stopped; marked uncertain, "
                    "not sent again", sum(uncertain.values()))
    return released, uncertain


# ---- claiming --------------------------------------------------------------------------------


def _can_send(broadcaster: Broadcaster, transport: str) -> bool:
    try:
        broadcaster.limit(transport)
    except KeyError:
        return False
    return True


def _pick_account(accounts: list[Account], preferred: str | None) -> Account | None:
    if not accounts:
        return None
    order = {name: index for index, name in enumerate(TRANSPORT_ORDER)}

    def rank(account: Account) -> tuple[int, int, int]:
        return (0 if account.transport == preferred else 1, order.get(account.transport, 99), account.id)

    return min(accounts, key=rank)


def _in_quiet(moment: datetime, zone: str, quiet: tuple[time, time]) -> bool:
    return outside_quiet_hours(moment, zone, quiet) != moment


async def _claim(
    db: Database,
    broadcaster: Broadcaster,
    now: datetime,
    batch: int,
    quiet: tuple[time, time] | None,
    report: DispatchReport,
    owner: str | None = None,
) -> tuple[list[Outgoing], dict[str, _Claimed], bool]:
    """Claim up to `batch` due rows; returns their messages, the claims by key, and whether any row was due."""
    async with db.unit() as uow:
        statement = (
            select(OutboxMessage)
            .where(OutboxMessage.state == PENDING, OutboxMessage.due_at <= now)
            .order_by(OutboxMessage.due_at, OutboxMessage.id)
            .limit(batch)
        )
        if not _can_send(broadcaster, WALL_TRANSPORT):  # left pending: claiming them would loop
            statement = statement.where(OutboxMessage.kind != WALL_KIND)
        if uow.dialect == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        rows = list((await uow.session.execute(statement)).scalars())
        if not rows:
            return [], {}, False
        member_ids = {row.member_id for row in rows if row.member_id is not None}
        people = {
            member_id: (preferred, zone)
            for member_id, preferred, zone in (
                await uow.session.execute(
                    select(Member.id, Member.preferred_transport, Municipality.timezone)
                    .outerjoin(Municipality, Municipality.id == Member.municipality_id)
                    .where(Member.id.in_(member_ids))
                )
            ).all()
        }
        accounts: dict[int, list[Account]] = {}
        for account in (
            await uow.session.execute(
                select(Account).where(Account.member_id.in_(member_ids), Account.unreachable_at.is_(None))
            )
        ).scalars():
            if _can_send(broadcaster, account.transport):
                accounts.setdefault(account.member_id, []).append(account)

        messages: list[Outgoing] = []
        claimed: dict[str, _Claimed] = {}
        for row in rows:
            if row.kind == WALL_KIND:
                row.state, row.sent_at, row.transport, row.claimed_by = SENDING, now, WALL_TRANSPORT, owner
                claimed[row.key] = _Claimed(row.id, row.member_id, None, WALL_TRANSPORT)
                messages.append(Outgoing(key=row.key, transport=WALL_TRANSPORT, chat_id=WALL_CHAT, text=row.text,
                                         parse_mode=None))
                continue
            preferred, zone = people.get(row.member_id, (None, None))
            zone = zone or "Europe/Moscow"
            if quiet is not None and _in_quiet(now, zone, quiet) and not _in_quiet(row.due_at, zone, quiet):
                row.due_at = outside_quiet_hours(now, zone, quiet)
                report.deferred += 1
                continue
            account = _pick_account(accounts.get(row.member_id, []), preferred)
            if account is None:
                row.state = UNREACHABLE
                report.count(None, "unreachable")
                continue
            row.state, row.sent_at, row.transport, row.claimed_by = SENDING, now, account.transport, owner
            claimed[row.key] = _Claimed(row.id, row.member_id, account.id, account.transport)
            messages.append(_outgoing(row, account))
        report.claimed += len(messages)
        await uow.commit()
    return messages, claimed, True


def _outgoing(row: OutboxMessage, account: Account) -> Outgoing:
    buttons = tuple(_row(item) for item in (row.buttons or []) if item)
    document = photo = None
    attachment: dict[str, Any] = row.attachment or {}
    if attachment.get("content_b64"):
        payload = (str(attachment.get("name") or "file"), base64.b64decode(attachment["content_b64"]))
        if attachment.get("kind") == "photo":
            photo = payload
        else:
            document = payload
    text = row.text if len(row.text) <= TEXT_LIMIT else row.text[: TEXT_LIMIT - 1] + "…"
    return Outgoing(
        key=row.key, transport=account.transport, chat_id=account.chat_id, text=text, parse_mode=None,
        buttons=buttons, document=document, photo=photo,
    )


def _row(item: list) -> tuple[tuple[str, str], ...]:
    """An outbox button is a [label, data] pair on a row of its own (a list of pairs is one row)."""
    if len(item) == 2 and all(isinstance(part, str) for part in item):
        item = [item]
    return tuple((str(label), _callback(str(data))) for label, data in item)


def _callback(data: str) -> str:
    """Outbox buttons name a flow ("flow:events"); the adapters route "go:events" into it."""
    return "go:" + data.removeprefix("flow:") if data.startswith("flow:") else data


# ---- recording -------------------------------------------------------------------------------


class _Recorder:
    """Writes marks and outcomes, each in its own short transaction, over one connection held
    for the run (checking a connection out of the pool per message costs as much as the write;
    on SQLite, with its single connection, a unit of work per write instead).

    Outcomes arrive one at a time (the broadcaster serialises `on_result`); marks arrive from
    every message in flight at once, and those waiting together are written in one commit.
    """

    def __init__(self, db: Database, owner: str | None = None) -> None:
        self._engine: AsyncEngine | None = db.sessions.kw.get("bind")
        self._db = db
        self._owner = owner
        self._connection: AsyncConnection | None = None
        self._lock = asyncio.Lock()  # one transaction at a time on the connection
        self._to_mark: set[int] = set()
        self._marked: set[int] = set()

    async def __aenter__(self) -> "_Recorder":
        # SQLite has a pool of one connection (storage.db): holding it would stop the claims.
        if self._engine is not None and self._engine.dialect.name != "sqlite":
            self._connection = await self._engine.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def attempt(self, claim: _Claimed) -> bool:
        """Mark the row `attempting` (committed) before its first platform call; False when the
        row is no longer ours (another process took it over): it must not be sent."""
        self._to_mark.add(claim.row_id)
        async with self._lock:
            if claim.row_id in self._marked:  # committed with another message's mark
                return True
            if claim.row_id not in self._to_mark:  # a mark that included it found it taken
                return False
            ids = set(self._to_mark)
            self._to_mark = set()
            marked: set[int] = set()

            async def mark(connection) -> None:
                result = await connection.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(ids), OutboxMessage.state == SENDING, *self._mine())
                    .values(state=ATTEMPTING)
                    .returning(OutboxMessage.id)
                )
                marked.update(result.scalars())

            try:
                await self._write(mark)
            except BaseException:
                self._to_mark |= ids  # not decided: each will try again
                raise
            self._marked |= marked
            return claim.row_id in marked

    def _mine(self) -> tuple:
        return (OutboxMessage.claimed_by == self._owner,) if self._owner is not None else ()

    async def record(self, claim: _Claimed, outcome: Outcome, now: datetime, report: DispatchReport) -> None:
        async with self._lock:
            self._marked.discard(claim.row_id)
            await self._write(lambda connection: _record(connection, claim, outcome, now, report, self._mine()))

    async def _write(self, work: Callable[[Any], Awaitable[None]]) -> None:
        if self._connection is None:
            async with self._db.unit() as uow:
                await work(await uow.session.connection())
                await uow.commit()
            return
        try:
            await work(self._connection)
            await self._connection.commit()
        except BaseException:
            await self._connection.rollback()
            raise


async def _record(connection, claim: _Claimed, outcome: Outcome, now: datetime, report: DispatchReport,
                  owned: tuple = ()) -> None:
    """One outcome on its row (fenced on the row still being ours: `sending` or `attempting`, by
    this owner), and the account if blocked."""
    mine = (OutboxMessage.id == claim.row_id, OutboxMessage.state.in_((SENDING, ATTEMPTING)), *owned)
    if outcome == Outcome.SENT:
        values: dict[str, Any] = {"state": SENT, "sent_at": now, "attempts": OutboxMessage.attempts + 1}
        report.count(claim.transport, "sent")
    elif outcome == Outcome.UNREACHABLE:
        values = {"state": UNREACHABLE, "sent_at": None, "attempts": OutboxMessage.attempts + 1}
        if claim.account_id is not None:
            await connection.execute(
                update(Account).where(Account.id == claim.account_id, Account.unreachable_at.is_(None))
                .values(unreachable_at=now)
            )
        report.count(claim.transport, "unreachable")
    else:
        attempts = (
            await connection.execute(select(OutboxMessage.attempts).where(OutboxMessage.id == claim.row_id))
        ).scalar_one() + 1
        if outcome == Outcome.REJECTED or attempts >= MAX_ATTEMPTS:
            values = {"state": FAILED, "sent_at": None, "attempts": attempts}
            report.count(claim.transport, "failed")
        else:
            values = {"state": PENDING, "sent_at": None, "claimed_by": None, "attempts": attempts,
                      "due_at": now + RETRY_BASE * 2 ** (attempts - 1)}
            report.count(claim.transport, "rescheduled")
    await connection.execute(update(OutboxMessage).where(*mine).values(**values))


async def _release(db: Database, row_ids: list[int], owner: str | None = None) -> int:
    owned = (OutboxMessage.claimed_by == owner,) if owner is not None else ()
    async with db.unit() as uow:
        result = await uow.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(row_ids), OutboxMessage.state == SENDING, *owned)
            .values(state=PENDING, sent_at=None, claimed_by=None)
        )
        await uow.commit()
    return result.rowcount or 0
