"""Mentoring: mentor profiles, requests for a mentor, proposals, pairs, exclusions, meetings.

The invariants "a mentee has at most one active mentor" and "a mentor is never over capacity"
are kept by the services (row locks on PostgreSQL, serialised writes on SQLite); the first one
is also a partial unique index, so no code path can break it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

ACTIVE = text("ended_at IS NULL")


class MentorProfile(Base):
    """What a mentor offers: strengths, how many mentees, network mentoring, contacts to share."""

    __tablename__ = "mentor_profiles"

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), primary_key=True)
    category: Mapped[str] = mapped_column(String(16), default="none")
    strengths: Mapped[list[Any]] = mapped_column(JSON, default=list)
    help_directions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    accepts_network: Mapped[bool] = mapped_column(Boolean, default=False)
    share_link: Mapped[bool] = mapped_column(Boolean, default=False)
    contact_phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MentorRequest(Base):
    """A teacher's explicit request for a mentor, with what they agreed to share on pairing."""

    __tablename__ = "mentor_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    mentee_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    municipality_id: Mapped[int] = mapped_column(ForeignKey("municipalities.id"), index=True)
    deficit_groups: Mapped[list[Any]] = mapped_column(JSON, default=list)
    share_link: Mapped[bool] = mapped_column(Boolean, default=False)
    contact_phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="open", index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class MentorProposal(Base):
    """A proposed pair: proposed → approved/rejected (coordinator) → accepted/declined (mentor), or withdrawn."""

    __tablename__ = "mentor_proposals"

    id: Mapped[int] = mapped_column(primary_key=True)
    municipality_id: Mapped[int] = mapped_column(ForeignKey("municipalities.id"), index=True)
    mentee_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    mentor_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    score: Mapped[int] = mapped_column(Integer, default=0)
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(16), default="matching")
    state: Mapped[str] = mapped_column(String(16), default="proposed", index=True)
    close_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"), nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(nullable=True)


class MentorPair(Base):
    """A mentor and a mentee working together from `started_at` until `ended_at`."""

    __tablename__ = "mentor_pairs"
    __table_args__ = (
        Index(
            "uq_mentor_pairs_active_mentee", "mentee_id", unique=True,
            sqlite_where=ACTIVE, postgresql_where=ACTIVE,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    municipality_id: Mapped[int] = mapped_column(ForeignKey("municipalities.id"), index=True)
    mentor_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    mentee_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    proposal_id: Mapped[int | None] = mapped_column(
        ForeignKey("mentor_proposals.id", ondelete="SET NULL"), nullable=True
    )
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"), nullable=True)
    ended_by: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"), nullable=True)


class MentorExclusion(Base):
    """A private "never pair me with this person"; the other person never sees it."""

    __tablename__ = "mentor_exclusions"
    __table_args__ = (UniqueConstraint("member_id", "excluded_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    excluded_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MentorMeeting(Base):
    """One logged meeting of a pair, and whether the mentee confirmed it happened."""

    __tablename__ = "mentor_meetings"

    id: Mapped[int] = mapped_column(primary_key=True)
    pair_id: Mapped[int] = mapped_column(ForeignKey("mentor_pairs.id", ondelete="CASCADE"), index=True)
    held_on: Mapped[date] = mapped_column(Date)
    duration_min: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    activity: Mapped[str] = mapped_column(String(32))
    deficits: Mapped[list[Any]] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    logged_by: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"), nullable=True)
    confirmed: Mapped[str] = mapped_column(String(8), default="pending")
    confirmed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
