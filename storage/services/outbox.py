"""Queueing messages the bot sends on its own: one row per recipient, idempotent by key."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from storage.models_outbox import OutboxMessage
from storage.unit_of_work import UnitOfWork

PENDING, SENT, FAILED, UNREACHABLE, CANCELLED = "pending", "sent", "failed", "unreachable", "cancelled"
WALL_KIND = "wall"  # a post on the VK community wall (an event announcement), not a message to a person


def parse_quiet_hours(spec: str) -> tuple[time, time]:
    """'22:00-08:00' → (22:00, 08:00)."""
    start, end = spec.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def outside_quiet_hours(moment: datetime, timezone: str, quiet: tuple[time, time]) -> datetime:
    """The same moment, or the end of the quiet hours (morning, local time) if it falls inside them."""
    zone = ZoneInfo(timezone)
    local = moment.astimezone(zone)
    start, end = quiet
    clock = local.time()
    inside = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not inside:
        return moment
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=zone).astimezone(moment.tzinfo)


async def enqueue(
    uow: UnitOfWork,
    *,
    key: str,
    kind: str,
    member_id: int,
    text: str,
    due_at: datetime,
    buttons: list | None = None,
    attachment: dict | None = None,
) -> OutboxMessage | None:
    """Queue a message unless one with the same key exists (then nothing happens, None is returned).

    `buttons` are rows of [label, data] pairs where data is a dialog target such as
    "flow:events" that the adapters turn into a button opening that flow.
    """
    existing = (await uow.session.execute(select(OutboxMessage.id).where(OutboxMessage.key == key))).first()
    if existing is not None:
        return None
    row = OutboxMessage(
        key=key, kind=kind, member_id=member_id, text=text, due_at=due_at, buttons=buttons or [],
        attachment=attachment, state=PENDING, attempts=0,
    )
    uow.session.add(row)
    await uow.flush()
    return row


async def cancel(uow: UnitOfWork, *, key_prefix: str) -> int:
    """Cancel pending messages whose key starts with a prefix (e.g. a cancelled event's reminders)."""
    result = await uow.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.key.startswith(key_prefix, autoescape=True), OutboxMessage.state == PENDING)
        .values(state=CANCELLED)
    )
    return result.rowcount or 0
