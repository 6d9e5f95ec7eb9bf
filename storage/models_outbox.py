"""The outbox: every message the bot sends on its own initiative (reminders, invitations, nudges).

A row is due at `due_at`; the dispatcher sends it through the broadcaster and records the
outcome on the row, so a restart neither loses a message nor sends it twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow


class OutboxMessage(Base):
    """One message to one member, with its delivery state."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    buttons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    attachment: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    due_at: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    transport: Mapped[str | None] = mapped_column(String(16), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The bot process (`scheduler.locks.Presence.token`) holding the row while it is `sending` or
    # `attempting`: once that process is gone its claims are sorted out at once, not after the lease.
    claimed_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
