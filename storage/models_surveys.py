"""Questionnaires, campaigns, responses, anonymous answers and self-reported deficits.

Questionnaire texts are data: every version that was ever answered is kept in
`questionnaire_versions` (the validated body as JSON), so a response always reads back against
the exact wording it was given. Anonymous surveys keep their answers in a table of their own,
with random ids and the day only, and a separate "has answered" mark with nothing to join on.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, utcnow

DRAFT, SUBMITTED = "draft", "submitted"
SELF, QUESTIONNAIRE = "self", "questionnaire"

#: The bit of each deficit item in `DeficitReport.mask`. Stored data depends on the positions:
#: only ever append (at most 63 bits).
MASK_ITEMS: tuple[tuple[str, str], ...] = (
    *(("deficit_group", code) for code in
      ("subject", "methodical", "psychological", "communicative", "ict", "selforg", "other")),
    *(("difficulty", code) for code in
      ("discipline", "motivation", "student_relations", "colleague_relations", "time", "extracurricular", "other")),
    *(("help_direction", code) for code in
      ("subject_methods", "curriculum", "lessons", "assessment", "gia", "projects", "upbringing", "parents", "uud",
       "special_needs", "it", "other")),
    *(("need", code) for code in
      ("colleague_contact", "peer_community", "events", "self_expression", "qualification", "other")),
)
MASK_BIT: dict[tuple[str, str], int] = {item: 1 << index for index, item in enumerate(MASK_ITEMS)}


def mask_of(items) -> int:
    """The bitmask of a report's (kind, code) items (see MASK_ITEMS)."""
    mask = 0
    for item in items:
        mask |= MASK_BIT.get(tuple(item), 0)
    return mask


class QuestionnaireVersion(Base):
    """One version of a questionnaire: the validated body, its checksum and where it came from."""

    __tablename__ = "questionnaire_versions"
    __table_args__ = (UniqueConstraint("code", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    checksum: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    audience: Mapped[str] = mapped_column(String(32))
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    origin: Mapped[str] = mapped_column(String(16))  # "builtin" or "import"
    municipality_id: Mapped[int | None] = mapped_column(ForeignKey("municipalities.id"), nullable=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SurveyCampaign(Base):
    """A questionnaire run in one municipality over a window of days."""

    __tablename__ = "survey_campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    municipality_id: Mapped[int] = mapped_column(ForeignKey("municipalities.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("questionnaire_versions.id"))
    opens_on: Mapped[date] = mapped_column(Date)
    closes_on: Mapped[date] = mapped_column(Date)
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SurveyResponse(Base):
    """One person's answering of one questionnaire version (in a campaign or on their own)."""

    __tablename__ = "survey_responses"
    __table_args__ = (
        UniqueConstraint("member_id", "campaign_id"),
        Index("ix_survey_responses_campaign_status", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("survey_campaigns.id"), nullable=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("questionnaire_versions.id"))
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    #: Where the person is: a question code, "code/row" inside a matrix, or "review".
    position: Mapped[str | None] = mapped_column(String(140), nullable=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SurveyAnswer(Base):
    """The answer to one question of a response; «Другое» text kept beside the value."""

    __tablename__ = "survey_answers"
    __table_args__ = (UniqueConstraint("response_id", "question_code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("survey_responses.id", ondelete="CASCADE"))
    question_code: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSON)
    other_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    answered_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnonymousAnswer(Base):
    """An answer of an anonymous survey: random ids, the day only, no link to a person.

    `sheet` groups the answers of one submission (a random token, not derived from anything).
    On SQLite the table has no rowid, so not even the storage order follows submission order.
    """

    __tablename__ = "survey_anonymous_answers"
    __table_args__ = {"sqlite_with_rowid": False}

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sheet: Mapped[str] = mapped_column(String(32), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("survey_campaigns.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    question_code: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSON)
    other_text: Mapped[str | None] = mapped_column(Text, nullable=True)


class SurveyMark(Base):
    """The "has answered" mark of an anonymous campaign: the campaign and the member, no time, nothing else."""

    __tablename__ = "survey_marks"
    __table_args__ = {"sqlite_with_rowid": False}

    campaign_id: Mapped[int] = mapped_column(ForeignKey("survey_campaigns.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), primary_key=True)


class DeficitReport(Base):
    """A teacher's report of what feels weak, self-made or taken from the annual questionnaire."""

    __tablename__ = "deficit_reports"
    __table_args__ = (Index("ix_deficit_reports_municipality_day", "municipality_id", "created_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), nullable=True, index=True
    )
    municipality_id: Mapped[int] = mapped_column(ForeignKey("municipalities.id"))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), nullable=True)
    subject_area: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_on: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The items as bits (MASK_ITEMS), so counting people per item is a bitwise OR per person.
    mask: Mapped[int] = mapped_column(BigInteger, default=0)


class DeficitItem(Base):
    """One ticked item of a report: a deficit group, a difficulty, a help direction or a need."""

    __tablename__ = "deficit_items"
    __table_args__ = (Index("ix_deficit_items_report_kind_code", "report_id", "kind", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("deficit_reports.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(64))
