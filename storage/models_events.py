"""The municipal calendar: event types, events, registrations, subscriptions and feedback.

Times are stored in UTC; coordinators enter them, and members see them, in the municipality's
timezone (`Municipality.timezone`). Reminders and notices are rows of the outbox.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage.models import Base, Municipality, utcnow


class Audience(StrEnum):
    """Who an event is for."""

    YOUNG_TEACHERS = "young_teachers"
    MENTORS = "mentors"
    BOTH = "both"
    PRESCHOOL = "preschool"


class EventStatus(StrEnum):
    """Whether an event still takes place."""

    ACTIVE = "active"
    CANCELLED = "cancelled"


class RegistrationState(StrEnum):
    """A member's place at an event."""

    GOING = "going"
    WAITLIST = "waitlist"
    WITHDRAWN = "withdrawn"


# Minutes before the start: 7 days, 1 day, 2 hours.
DEFAULT_REMINDER_OFFSETS = [7 * 24 * 60, 24 * 60, 120]


class EventType(Base):
    """A kind of event from the catalogue (reference data, seeded by the migration)."""

    __tablename__ = "event_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    default_audience: Mapped[str] = mapped_column(String(32), default=Audience.BOTH)
    reminder_offsets: Mapped[list[Any]] = mapped_column(JSON, default=lambda: list(DEFAULT_REMINDER_OFFSETS))
    position: Mapped[int] = mapped_column(Integer, default=100)


class Event(Base):
    """One event of a municipality's calendar."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("municipality_id", "source_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    municipality_id: Mapped[int] = mapped_column(ForeignKey("municipalities.id"), index=True)
    type_id: Mapped[int] = mapped_column(ForeignKey("event_types.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime] = mapped_column(index=True)
    place: Mapped[str | None] = mapped_column(String(300), nullable=True)
    online_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    audience: Mapped[str] = mapped_column(String(32), default=Audience.BOTH)
    capacity: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deficit_tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    organiser_contact: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.ACTIVE, index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    source_uid: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    followup_queued_at: Mapped[datetime | None] = mapped_column(nullable=True)

    event_type: Mapped[EventType] = relationship(lazy="selectin")
    municipality: Mapped[Municipality] = relationship(lazy="selectin")


class Registration(Base):
    """A member's registration for an event: going, on the waiting list, or withdrawn."""

    __tablename__ = "event_registrations"
    __table_args__ = (UniqueConstraint("event_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    # Bumped each time the member gets a place, so a new place gets fresh reminder keys.
    seat_round: Mapped[int] = mapped_column(Integer, default=0)
    attended: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the state last changed: the waiting list is served in this order.
    state_at: Mapped[datetime] = mapped_column(default=utcnow)


class Subscription(Base):
    """A member wants to hear about new events of a type."""

    __tablename__ = "event_subscriptions"
    __table_args__ = (UniqueConstraint("member_id", "type_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    type_id: Mapped[int] = mapped_column(ForeignKey("event_types.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventFeedback(Base):
    """A participant's answers after an event (the 3-point scale of Приложение 1).

    `answers` maps question codes of `event_feedback.yaml` to option codes
    (positive / unsure / negative); `deficit_still_strong` is the answer to "does that
    deficit still feel as strong" (same / weaker / gone), for the groups in `deficit_groups`.
    """

    __tablename__ = "event_feedback"
    __table_args__ = (UniqueConstraint("event_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    deficit_groups: Mapped[list[Any]] = mapped_column(JSON, default=list)
    deficit_still_strong: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
