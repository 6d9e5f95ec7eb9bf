"""The weekly digest: who got which week's digest, and the figures coordinators enter by hand.

`DigestDelivery` makes the scheduled send idempotent: one row per recipient and ISO week,
written in the same transaction as the outbox rows that carry the digest, so a restart never
sends a week twice. `DigestTarget` holds the denominators the bot cannot know (for example
the number of young teachers in the municipality, from HR records); every entry is kept, the
newest one counts.

A regional coordinator's region is not stored here: it is the region of the invite they
registered with (`Invite.region`, `Invite.used_by`), see `storage/services/digest.py`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow


class DigestDelivery(Base):
    """A digest of one ISO week handed to the outbox for one coordinator (municipal or regional)."""

    __tablename__ = "digest_deliveries"
    __table_args__ = (UniqueConstraint("member_id", "week"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    municipality_id: Mapped[int | None] = mapped_column(ForeignKey("municipalities.id"), nullable=True)
    region: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: The ISO week the digest covers, "2026-W48".
    week: Mapped[str] = mapped_column(String(10))
    #: When the digest was queued in the outbox (the outbox row records the actual send).
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)


class DigestTarget(Base):
    """A denominator a coordinator entered for the indicator tracker (the newest entry counts)."""

    __tablename__ = "digest_targets"
    __table_args__ = (Index("ix_digest_targets_municipality_kind", "municipality_id", "kind", "entered_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    municipality_id: Mapped[int] = mapped_column(ForeignKey("municipalities.id"))
    #: What is counted: "young_teachers_total", "teachers_total" (see digest.DENOMINATORS).
    kind: Mapped[str] = mapped_column(String(64))
    value: Mapped[int] = mapped_column(Integer)
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    entered_by: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"), nullable=True)
