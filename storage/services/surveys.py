"""Questionnaires, campaigns and responses, anonymous surveys, and self-reported deficits.

A questionnaire is data (`dialogs/questionnaires/data/*.yaml`, or a file a municipality
imports); every version is stored with its body, and a response keeps the version it answered.
A response is saved answer by answer, with the position reached, so a pause resumes exactly
where it stopped. Submitting a non-anonymous questionnaire feeds its `feeds` questions into a
deficit report; submitting an anonymous one moves the answers into `survey_anonymous_answers`
(random ids, day only) and writes a separate "has answered" mark, and nothing joins the two.

Services never commit and never show text of their own: problems are raised as
`InvalidAnswer(reason, **params)` / `Conflict` / `Forbidden`, and the dialogs word them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, select

from dialogs.questionnaires.schema import Question, Questionnaire, load_builtin, load_questionnaire
from storage.models import AuditRecord, Member, Municipality, Organisation, Role
from storage.repositories.reference import cached, remember
from storage.models_surveys import (
    DRAFT,
    QUESTIONNAIRE,
    SELF,
    SUBMITTED,
    AnonymousAnswer,
    DeficitItem,
    DeficitReport,
    QuestionnaireVersion,
    SurveyAnswer,
    SurveyCampaign,
    SurveyMark,
    SurveyResponse,
    mask_of,
)
from storage.services import outbox
from storage.services.cohort import is_young
from storage.services.errors import Conflict, Forbidden, NotFound, ServiceError
from storage.services.members import require_coordinator
from storage.taxonomy import DeficitGroup, Difficulty, HelpDirection
from storage.unit_of_work import UnitOfWork

YOUNG_TEACHER = "young_teacher"
TEACHER_SUPPORT = "teacher_support"
REVIEW = "review"
OTHER_MAX_LENGTH = 1000
COMMENT_MAX_LENGTH = 2000
DEFAULT_QUIET_HOURS = (time(22, 0), time(8, 0))
INVITE_HOUR = time(10, 0)
#: Who is asked by a campaign, by questionnaire audience.
CAMPAIGN_AUDIENCES = ("young_teachers", "all_teachers")


class InvalidAnswer(ServiceError):
    """An answer that does not fit its question; `reason` is a code, `params` fill the message.

    Reasons: not_an_option, required, exclusive, other_required, too_long, year_format,
    year_range, not_applicable, unknown_row.
    """

    def __init__(self, reason: str, **params: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.params = params


class Incomplete(Conflict):
    """Submitting while a required question is unanswered; `question` is the first such code."""

    def __init__(self, question: str) -> None:
        super().__init__(f"unanswered {question}")
        self.question = question


# ---- questionnaire versions -------------------------------------------------------------------


def body_of(questionnaire: Questionnaire) -> dict[str, Any]:
    """The JSON body stored for a version (only what the file set, so it re-validates as loaded)."""
    return questionnaire.model_dump(mode="json", exclude_unset=True)


def checksum_of(body: Mapping[str, Any]) -> str:
    """A stable digest of a body's content; the version number does not count."""
    content = {key: value for key, value in body.items() if key != "version"}
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# Versions never change, so parsed and rendered questionnaires are cached by their content.
_PARSED: dict[tuple[str, int, str], Questionnaire] = {}
_RENDERED: dict[tuple[str, int, str, str], Questionnaire] = {}


def _cache_key(version: QuestionnaireVersion) -> tuple[str, int, str]:
    return (version.code, version.version, version.checksum)


def questionnaire_of(version: QuestionnaireVersion) -> Questionnaire:
    """The validated questionnaire of a stored version."""
    parsed = _PARSED.get(_cache_key(version))
    if parsed is None:
        parsed = Questionnaire.model_validate(version.body)
        _PARSED[_cache_key(version)] = parsed
    return parsed


def rendered_for(version: QuestionnaireVersion, municipality: Municipality | None) -> Questionnaire:
    """The questionnaire with the municipality's names in its placeholders."""
    return _rendered(_cache_key(version), municipality, version)


def _rendered(key: tuple[str, int, str], municipality: Municipality | None,
              version: QuestionnaireVersion | None = None) -> Questionnaire:
    """`rendered_for` by the version's cache key; without the version, it must be parsed already."""
    texts = dict(municipality.texts or {}) if municipality is not None else {}
    full_key = (*key, json.dumps(texts, sort_keys=True, ensure_ascii=False))
    rendered = _RENDERED.get(full_key)
    if rendered is None:
        parsed = questionnaire_of(version) if version is not None else _PARSED[key]
        rendered = _RENDERED[full_key] = parsed.rendered(texts)
    return rendered


@functools.cache
def builtin_questionnaires() -> dict[str, Questionnaire]:
    """The shipped questionnaires, parsed once per process."""
    return load_builtin()


@dataclass(frozen=True)
class StoredVersion:
    """The outcome of storing a questionnaire: the version row and whether it is new."""

    version: QuestionnaireVersion
    created: bool


async def store_version(
    uow: UnitOfWork,
    questionnaire: Questionnaire,
    *,
    origin: str,
    now: datetime,
    municipality_id: int | None = None,
) -> StoredVersion:
    """Store a questionnaire as a new version unless the same content is already stored.

    The version number is the file's, or one more than the latest stored if that is taken.
    A municipality may not import a new version of a questionnaire it does not own.
    """
    body = body_of(questionnaire)
    checksum = checksum_of(body)
    existing = list(
        (
            await uow.session.execute(
                select(QuestionnaireVersion)
                .where(QuestionnaireVersion.code == questionnaire.code)
                .order_by(QuestionnaireVersion.version)
            )
        ).scalars()
    )
    for row in existing:
        if row.checksum == checksum:
            return StoredVersion(row, False)
    if existing:
        owner = existing[-1]
        if origin == "import" and municipality_id is not None and owner.municipality_id != municipality_id:
            raise Conflict(f"questionnaire {questionnaire.code} belongs to another owner")
    number = max(questionnaire.version, (existing[-1].version + 1) if existing else 1)
    body["version"] = number
    row = QuestionnaireVersion(
        code=questionnaire.code,
        version=number,
        checksum=checksum,
        title=questionnaire.title,
        audience=questionnaire.audience,
        anonymous=questionnaire.anonymous,
        origin=origin,
        municipality_id=municipality_id,
        body=body,
        created_at=now,
    )
    uow.session.add(row)
    await uow.flush()
    return StoredVersion(row, True)


async def sync_builtin_questionnaires(uow: UnitOfWork, *, now: datetime) -> list[StoredVersion]:
    """Store the shipped questionnaires whose current text is not stored yet (run at start)."""
    return [
        await store_version(uow, questionnaire, origin="builtin", now=now)
        for questionnaire in builtin_questionnaires().values()
    ]


async def import_questionnaire(
    uow: UnitOfWork, source: str | Path, *, now: datetime, municipality_id: int | None = None
) -> StoredVersion:
    """Validate a questionnaire file (QuestionnaireError names the line) and store it as a version."""
    questionnaire = load_questionnaire(Path(source) if isinstance(source, Path) else source)
    stored = await store_version(uow, questionnaire, origin="import", now=now, municipality_id=municipality_id)
    if stored.created:
        uow.session.add(
            AuditRecord(at=now, action="questionnaire.imported", actor="cli",
                        subject=f"questionnaire:{stored.version.code}", details={"version": stored.version.version})
        )
    return stored


async def latest_version(uow: UnitOfWork, code: str, *, now: datetime) -> QuestionnaireVersion:
    """The newest stored version of a questionnaire; a built-in is stored first if it is missing."""
    statement = (
        select(QuestionnaireVersion)
        .where(QuestionnaireVersion.code == code)
        .order_by(QuestionnaireVersion.version.desc())
        .limit(1)
    )
    row = (await uow.session.execute(statement)).scalar_one_or_none()
    if row is None:
        builtin = builtin_questionnaires().get(code)
        if builtin is None:
            raise NotFound(f"questionnaire {code}")
        row = (await store_version(uow, builtin, origin="builtin", now=now)).version
    return row


async def version_by_id(uow: UnitOfWork, version_id: int) -> QuestionnaireVersion:
    row = await uow.session.get(QuestionnaireVersion, version_id)
    if row is None:
        raise NotFound("questionnaire version")
    return row


# ---- answers: validation ------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredAnswer:
    """A saved answer: the value (code, codes, text, year or row → column) and «Другое» text."""

    value: Any
    other_text: str | None = None


def _other_chosen(question: Question, value: Any) -> bool:
    other = question.other_option
    if other is None:
        return False
    if question.type == "single":
        return value == other.code
    if question.type == "multi":
        return other.code in value
    return False


def _clean_other(question: Question, value: Any, other_text: str | None) -> str | None:
    if not _other_chosen(question, value):
        return None
    text = (other_text or "").strip()
    if not text:
        raise InvalidAnswer("other_required")
    if len(text) > OTHER_MAX_LENGTH:
        raise InvalidAnswer("too_long", length=len(text), limit=OTHER_MAX_LENGTH)
    return text


def parse_year(text: str) -> int:
    """A year written by a person: four digits, perhaps followed by «г.»."""
    cleaned = re.sub(r"\s*(г\.?|год)$", "", str(text).strip(), flags=re.IGNORECASE)
    if not re.fullmatch(r"\d{4}", cleaned):
        raise InvalidAnswer("year_format")
    return int(cleaned)


def check_answer(
    question: Question, value: Any, other_text: str | None = None, *, today: date
) -> StoredAnswer:
    """Validate and normalise an answer to one question (every type); raise InvalidAnswer."""
    codes = question.option_codes
    if question.type == "single":
        if not isinstance(value, str) or value not in codes:
            raise InvalidAnswer("not_an_option")
        return StoredAnswer(value, _clean_other(question, value, other_text))
    if question.type == "multi":
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise InvalidAnswer("not_an_option")
        chosen = set(value)
        if not chosen <= set(codes):
            raise InvalidAnswer("not_an_option")
        if not chosen and question.required:
            raise InvalidAnswer("required")
        exclusive = chosen & set(question.exclusive)
        if exclusive and len(chosen) > 1:
            code = sorted(exclusive)[0]
            raise InvalidAnswer("exclusive", option=question.option(code).text)
        ordered = [code for code in codes if code in chosen]
        return StoredAnswer(ordered, _clean_other(question, ordered, other_text))
    if question.type == "text":
        text = str(value or "").strip()
        if not text and question.required:
            raise InvalidAnswer("required")
        if len(text) > question.max_length:
            raise InvalidAnswer("too_long", length=len(text), limit=question.max_length)
        return StoredAnswer(text)
    if question.type == "year":
        year = value if isinstance(value, int) and not isinstance(value, bool) else parse_year(value)
        low, high = question.year_bounds(today)
        if not low <= year <= high:
            raise InvalidAnswer("year_range", low=low, high=high)
        return StoredAnswer(year)
    if question.type == "matrix":
        if not isinstance(value, Mapping):
            raise InvalidAnswer("not_an_option")
        rows = [row.code for row in question.rows]
        for row, column in value.items():
            if row not in rows:
                raise InvalidAnswer("unknown_row")
            if column not in codes:
                raise InvalidAnswer("not_an_option")
        if question.required and set(value) != set(rows):
            raise InvalidAnswer("required")
        return StoredAnswer({row: value[row] for row in rows if row in value})
    raise InvalidAnswer("not_an_option")  # pragma: no cover - the schema allows no other type


# ---- answers: navigation ------------------------------------------------------------------------


def is_complete(question: Question, answer: StoredAnswer | None) -> bool:
    """Whether a stored answer fully answers its question (all matrix rows, «Другое» text given)."""
    if answer is None or answer.value is None:
        return False
    if question.type == "matrix":
        return set(answer.value) >= {row.code for row in question.rows}
    if question.type == "multi" and not answer.value:
        return not question.required
    if question.type == "text" and not str(answer.value).strip():
        return not question.required
    if _other_chosen(question, answer.value) and not answer.other_text:
        return False
    return True


def applicable(questionnaire: Questionnaire, answers: Mapping[str, StoredAnswer]) -> list[Question]:
    """The questions to ask given the answers so far (conditions read only asked questions)."""
    asked: dict[str, Any] = {}
    result: list[Question] = []
    for question in questionnaire.questions:
        if question.when is not None and not question.when.is_met(asked.get(question.when.question)):
            continue
        result.append(question)
        if question.code in answers:
            asked[question.code] = answers[question.code].value
    return result


def next_question(
    questionnaire: Questionnaire, answers: Mapping[str, StoredAnswer], after: str | None
) -> Question | None:
    """The first question to ask after `after` (None: from the start); None when at the end."""
    passed = after is None
    for question in applicable(questionnaire, answers):
        if passed:
            return question
        passed = question.code == after
    if not passed:  # `after` is no longer asked: go by questionnaire order
        order = [question.code for question in questionnaire.questions]
        index = order.index(after) if after in order else -1
        for question in applicable(questionnaire, answers):
            if order.index(question.code) > index:
                return question
    return None


def previous_question(
    questionnaire: Questionnaire, answers: Mapping[str, StoredAnswer], before: str | None
) -> Question | None:
    """The question asked just before `before` (None: the last one); None at the start."""
    asked = applicable(questionnaire, answers)
    if before is None:
        return asked[-1] if asked else None
    order = [question.code for question in questionnaire.questions]
    index = order.index(before) if before in order else len(order)
    earlier = [question for question in asked if order.index(question.code) < index]
    return earlier[-1] if earlier else None


def first_unanswered(questionnaire: Questionnaire, answers: Mapping[str, StoredAnswer]) -> Question | None:
    """The first asked question that is required and not fully answered."""
    for question in applicable(questionnaire, answers):
        if question.required and not is_complete(question, answers.get(question.code)):
            return question
    return None


# ---- responses -----------------------------------------------------------------------------------


def local_today(municipality: Municipality | None, now: datetime) -> date:
    """Today's date where the municipality is."""
    zone = ZoneInfo(municipality.timezone) if municipality is not None else None
    return now.astimezone(zone).date() if zone else now.date()


def is_open(campaign: SurveyCampaign, today: date) -> bool:
    """Whether the campaign takes answers today."""
    return campaign.closed_at is None and campaign.opens_on <= today <= campaign.closes_on


async def _municipality(uow: UnitOfWork, municipality_id: int | None) -> Municipality | None:
    return await uow.reference.municipality(municipality_id) if municipality_id is not None else None


async def start_or_resume(
    uow: UnitOfWork,
    member: Member,
    *,
    now: datetime,
    campaign_id: int | None = None,
    questionnaire_code: str | None = None,
) -> SurveyResponse:
    """The member's draft for a campaign (or, without one, for the newest version of a questionnaire).

    Raises Conflict("submitted") when they already answered, Conflict("closed") when the campaign
    does not take answers today, Forbidden when the campaign is not for them.
    """
    if campaign_id is not None:
        campaign = await uow.session.get(SurveyCampaign, campaign_id)
        if campaign is None:
            raise NotFound("campaign")
        if campaign.municipality_id != member.municipality_id:
            raise Forbidden("another municipality")
        version = await version_by_id(uow, campaign.version_id)
        if not await _in_audience(uow, member, version.audience, campaign):
            raise Forbidden("not in the audience")
        if not is_open(campaign, local_today(await _municipality(uow, campaign.municipality_id), now)):
            raise Conflict("closed")
        if version.anonymous and await has_answered_anonymously(uow, campaign.id, member.id):
            raise Conflict("submitted")
        response = (
            await uow.session.execute(
                select(SurveyResponse).where(
                    SurveyResponse.member_id == member.id, SurveyResponse.campaign_id == campaign.id
                )
            )
        ).scalar_one_or_none()
        if response is not None:
            if response.status == SUBMITTED:
                raise Conflict("submitted")
            return response
        version_id = version.id
    else:
        if questionnaire_code is None:
            raise ValueError("a campaign or a questionnaire code is needed")
        version = await latest_version(uow, questionnaire_code, now=now)
        if version.anonymous:
            raise Conflict("an anonymous questionnaire is answered in a campaign only")
        response = (
            await uow.session.execute(
                select(SurveyResponse)
                .join(QuestionnaireVersion, QuestionnaireVersion.id == SurveyResponse.version_id)
                .where(
                    SurveyResponse.member_id == member.id,
                    SurveyResponse.campaign_id.is_(None),
                    SurveyResponse.status == DRAFT,
                    QuestionnaireVersion.code == questionnaire_code,
                )
                .order_by(SurveyResponse.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        if response is not None:
            return response
        version_id = version.id
    response = SurveyResponse(
        member_id=member.id, campaign_id=campaign_id, version_id=version_id, status=DRAFT,
        position=None, started_at=now, updated_at=now,
    )
    uow.session.add(response)
    await uow.flush()
    return response


async def own_response(uow: UnitOfWork, member: Member, response_id: int) -> SurveyResponse:
    """A response of this member (NotFound for anyone else's or a vanished one)."""
    response = await uow.session.get(SurveyResponse, response_id)
    if response is None or response.member_id != member.id:
        raise NotFound("response")
    return response


async def answers_of(uow: UnitOfWork, response_id: int) -> dict[str, StoredAnswer]:
    """A response's saved answers by question code."""
    rows = await uow.session.execute(
        select(SurveyAnswer.question_code, SurveyAnswer.value, SurveyAnswer.other_text).where(
            SurveyAnswer.response_id == response_id
        )
    )
    return {code: StoredAnswer(value, other) for code, value, other in rows}


async def questionnaire_for_response(uow: UnitOfWork, response: SurveyResponse, member: Member) -> Questionnaire:
    """The response's questionnaire version, with the member's municipality names filled in.

    Every step of a questionnaire asks for it. A version never changes, so which one an id names
    is remembered, and the version's row (its whole body as JSON) is read only the first time."""
    municipality = await _municipality(uow, member.municipality_id)
    remembered = ("questionnaire version", response.version_id)
    key = cached(remembered)
    if key is None or key not in _PARSED:
        version = await version_by_id(uow, response.version_id)
        remember(remembered, _cache_key(version))
        return rendered_for(version, municipality)
    return _rendered(key, municipality)


def _require_draft(response: SurveyResponse) -> None:
    if response.status != DRAFT:
        raise Conflict("submitted")


async def _write_answer(uow: UnitOfWork, response: SurveyResponse, code: str, answer: StoredAnswer, now: datetime) -> None:
    row = (
        await uow.session.execute(
            select(SurveyAnswer).where(SurveyAnswer.response_id == response.id, SurveyAnswer.question_code == code)
        )
    ).scalar_one_or_none()
    if row is None:
        uow.session.add(
            SurveyAnswer(response_id=response.id, question_code=code, value=answer.value,
                         other_text=answer.other_text, answered_at=now)
        )
    else:
        row.value = answer.value
        row.other_text = answer.other_text
        row.answered_at = now
    response.updated_at = now
    await uow.flush()


async def save_answer(
    uow: UnitOfWork,
    response: SurveyResponse,
    questionnaire: Questionnaire,
    question_code: str,
    value: Any,
    other_text: str | None = None,
    *,
    now: datetime,
    today: date | None = None,
    answers: Mapping[str, StoredAnswer] | None = None,
) -> StoredAnswer:
    """Validate an answer against its question and save it (replacing an earlier one).
    `answers`: the response's answers as the caller read them in this transaction, if it did."""
    _require_draft(response)
    question = questionnaire.question(question_code)
    if answers is None:
        answers = await answers_of(uow, response.id)
    if question.code not in {q.code for q in applicable(questionnaire, answers)}:
        raise InvalidAnswer("not_applicable")
    answer = check_answer(question, value, other_text, today=today or now.date())
    await _write_answer(uow, response, question.code, answer, now)
    return answer


async def save_matrix_row(
    uow: UnitOfWork,
    response: SurveyResponse,
    questionnaire: Questionnaire,
    question_code: str,
    row_code: str,
    column_code: str,
    *,
    now: datetime,
) -> StoredAnswer:
    """Answer one row of a matrix question, keeping the rows answered before."""
    _require_draft(response)
    question = questionnaire.question(question_code)
    if question.type != "matrix":
        raise InvalidAnswer("not_an_option")
    answers = await answers_of(uow, response.id)
    value = dict(answers[question.code].value) if question.code in answers else {}
    if row_code not in {row.code for row in question.rows}:
        raise InvalidAnswer("unknown_row")
    if column_code not in question.option_codes:
        raise InvalidAnswer("not_an_option")
    value[row_code] = column_code
    answer = StoredAnswer({row.code: value[row.code] for row in question.rows if row.code in value})
    await _write_answer(uow, response, question.code, answer, now)
    return answer


async def clear_answer(uow: UnitOfWork, response: SurveyResponse, question_code: str, *, now: datetime) -> None:
    """Remove an answer (an optional question skipped)."""
    _require_draft(response)
    await uow.session.execute(
        delete(SurveyAnswer).where(SurveyAnswer.response_id == response.id, SurveyAnswer.question_code == question_code)
    )
    response.updated_at = now
    await uow.flush()


async def set_position(uow: UnitOfWork, response: SurveyResponse, position: str | None, *, now: datetime) -> None:
    """Remember where the person is (a question code, "code/row" or "review")."""
    if response.status == DRAFT and response.position != position:
        response.position = position
        response.updated_at = now
        await uow.flush()


@dataclass(frozen=True)
class ReviewItem:
    """One line of the review screen: the question and its answer (None if unanswered)."""

    question: Question
    answer: StoredAnswer | None
    complete: bool


async def review(uow: UnitOfWork, response: SurveyResponse, questionnaire: Questionnaire) -> list[ReviewItem]:
    """Every asked question with its answer, in order."""
    answers = await answers_of(uow, response.id)
    return [
        ReviewItem(question, answers.get(question.code), is_complete(question, answers.get(question.code)))
        for question in applicable(questionnaire, answers)
    ]


@dataclass(frozen=True)
class Submitted:
    """The outcome of a submission: the response (None for an anonymous one) and the deficit report fed."""

    response: SurveyResponse | None
    anonymous: bool
    report: DeficitReport | None = None


async def submit(
    uow: UnitOfWork, member: Member, response: SurveyResponse, questionnaire: Questionnaire, *, now: datetime
) -> Submitted:
    """Submit a complete response once; an anonymous one is moved out of reach of the person."""
    _require_draft(response)
    if response.member_id != member.id:
        raise NotFound("response")
    municipality = await _municipality(uow, member.municipality_id)
    today = local_today(municipality, now)
    campaign = await uow.session.get(SurveyCampaign, response.campaign_id) if response.campaign_id else None
    if campaign is not None and not is_open(campaign, today):
        raise Conflict("closed")
    answers = await answers_of(uow, response.id)
    missing = first_unanswered(questionnaire, answers)
    if missing is not None:
        raise Incomplete(missing.code)
    asked = {question.code for question in applicable(questionnaire, answers)}
    stale = [code for code in answers if code not in asked]
    if stale:
        await uow.session.execute(
            delete(SurveyAnswer).where(SurveyAnswer.response_id == response.id, SurveyAnswer.question_code.in_(stale))
        )
        answers = {code: answer for code, answer in answers.items() if code in asked}
    if questionnaire.anonymous:
        if campaign is None:
            raise Conflict("an anonymous questionnaire is answered in a campaign only")
        await _submit_anonymous(uow, member, response, campaign, answers, today)
        return Submitted(None, True)
    response.status = SUBMITTED
    response.submitted_at = now
    response.position = None
    response.updated_at = now
    await uow.flush()
    report = await _feed_deficits(uow, member, questionnaire, answers, today)
    return Submitted(response, False, report)


async def _submit_anonymous(
    uow: UnitOfWork,
    member: Member,
    response: SurveyResponse,
    campaign: SurveyCampaign,
    answers: Mapping[str, StoredAnswer],
    today: date,
) -> None:
    """Copy the answers with random ids and the day only, mark the member, drop the draft."""
    if await has_answered_anonymously(uow, campaign.id, member.id):
        raise Conflict("submitted")
    sheet = secrets.token_hex(16)
    rows = [
        {"id": secrets.token_hex(16), "sheet": sheet, "campaign_id": campaign.id, "day": today,
         "question_code": code, "value": answer.value, "other_text": answer.other_text}
        for code, answer in answers.items()
    ]
    if rows:
        await uow.session.execute(insert(AnonymousAnswer), rows)
    await uow.session.execute(insert(SurveyMark).values(campaign_id=campaign.id, member_id=member.id))
    await uow.session.execute(delete(SurveyAnswer).where(SurveyAnswer.response_id == response.id))
    await uow.session.execute(delete(SurveyResponse).where(SurveyResponse.id == response.id))
    uow.session.expunge(response)
    await uow.flush()


async def has_answered_anonymously(uow: UnitOfWork, campaign_id: int, member_id: int) -> bool:
    """Whether the member's "has answered" mark exists for an anonymous campaign."""
    row = await uow.session.execute(
        select(SurveyMark.member_id).where(SurveyMark.campaign_id == campaign_id, SurveyMark.member_id == member_id)
    )
    return row.first() is not None


async def _feed_deficits(
    uow: UnitOfWork,
    member: Member,
    questionnaire: Questionnaire,
    answers: Mapping[str, StoredAnswer],
    today: date,
) -> DeficitReport | None:
    """Questions marked `feeds` (Q12 difficulties, Q13 deficit groups, Q14 needs) make a deficit report."""
    items: list[tuple[str, str]] = []
    for question in questionnaire.questions:
        answer = answers.get(question.code)
        if question.feeds is None or answer is None or answer.value is None:
            continue
        codes = [answer.value] if isinstance(answer.value, str) else list(answer.value)
        items += [(question.feeds, code) for code in codes]
    if not items or member.municipality_id is None:
        return None
    return await _add_report(uow, member, items, None, today, QUESTIONNAIRE)


# ---- campaigns -----------------------------------------------------------------------------------


def default_window(today: date) -> tuple[date, date]:
    """May–June, as the source programmes run the annual surveys: this year's, or next year's if past."""
    year = today.year if today <= date(today.year, 6, 30) else today.year + 1
    return date(year, 5, 1), date(year, 6, 30)


async def open_campaign(
    uow: UnitOfWork,
    actor: Member,
    *,
    questionnaire_code: str,
    now: datetime,
    opens_on: date | None = None,
    closes_on: date | None = None,
    municipality_id: int | None = None,
) -> SurveyCampaign:
    """Open a campaign of the newest version of a questionnaire in the actor's municipality."""
    municipality_id = municipality_id if municipality_id is not None else actor.municipality_id
    require_coordinator(actor, municipality_id)
    municipality = await _municipality(uow, municipality_id)
    if municipality is None:
        raise NotFound("municipality")
    version = await latest_version(uow, questionnaire_code, now=now)
    if version.audience not in CAMPAIGN_AUDIENCES:
        raise Conflict(f"questionnaire {questionnaire_code} is not run in campaigns")
    if version.municipality_id not in (None, municipality_id):
        raise Forbidden("another municipality's questionnaire")
    default_open, default_close = default_window(local_today(municipality, now))
    opens_on = opens_on or default_open
    closes_on = closes_on or (default_close if opens_on <= default_close else opens_on + timedelta(days=60))
    if closes_on < opens_on:
        raise ValueError("a campaign closes after it opens")
    overlapping = await uow.session.execute(
        select(SurveyCampaign.id)
        .join(QuestionnaireVersion, QuestionnaireVersion.id == SurveyCampaign.version_id)
        .where(
            SurveyCampaign.municipality_id == municipality_id,
            SurveyCampaign.closed_at.is_(None),
            QuestionnaireVersion.code == questionnaire_code,
            SurveyCampaign.opens_on <= closes_on,
            SurveyCampaign.closes_on >= opens_on,
        )
    )
    if overlapping.first() is not None:
        raise Conflict("overlapping campaign")
    campaign = SurveyCampaign(
        municipality_id=municipality_id, version_id=version.id, opens_on=opens_on, closes_on=closes_on,
        created_by=actor.id, created_at=now,
    )
    uow.session.add(campaign)
    await uow.flush()
    uow.session.add(
        AuditRecord(at=now, action="campaign.opened", actor=f"member:{actor.id}", subject=f"campaign:{campaign.id}",
                    details={"questionnaire": questionnaire_code, "version": version.version})
    )
    return campaign


async def campaign_for(uow: UnitOfWork, actor: Member, campaign_id: int) -> SurveyCampaign:
    """A campaign the actor coordinates (Forbidden for another municipality's)."""
    campaign = await uow.session.get(SurveyCampaign, campaign_id)
    if campaign is None:
        raise NotFound("campaign")
    require_coordinator(actor, campaign.municipality_id)
    return campaign


async def close_campaign(uow: UnitOfWork, actor: Member, campaign_id: int, *, now: datetime) -> SurveyCampaign:
    """Stop taking answers now and drop the invitations and reminders not yet sent."""
    campaign = await campaign_for(uow, actor, campaign_id)
    if campaign.closed_at is not None:
        raise Conflict("already closed")
    campaign.closed_at = now
    await outbox.cancel(uow, key_prefix=f"campaign:{campaign.id}:")
    uow.session.add(
        AuditRecord(at=now, action="campaign.closed", actor=f"member:{actor.id}", subject=f"campaign:{campaign.id}")
    )
    await uow.flush()
    return campaign


@dataclass(frozen=True)
class CampaignInfo:
    """A campaign with its questionnaire's code, title and version."""

    campaign: SurveyCampaign
    code: str
    title: str
    version: int
    anonymous: bool


async def campaigns_of(uow: UnitOfWork, actor: Member, *, municipality_id: int | None = None) -> list[CampaignInfo]:
    """The campaigns of the actor's municipality, newest first."""
    municipality_id = municipality_id if municipality_id is not None else actor.municipality_id
    require_coordinator(actor, municipality_id)
    rows = await uow.session.execute(
        select(SurveyCampaign, QuestionnaireVersion)
        .join(QuestionnaireVersion, QuestionnaireVersion.id == SurveyCampaign.version_id)
        .where(SurveyCampaign.municipality_id == municipality_id)
        .order_by(SurveyCampaign.opens_on.desc(), SurveyCampaign.id.desc())
    )
    return [CampaignInfo(c, v.code, v.title, v.version, v.anonymous) for c, v in rows]


async def campaign_info(uow: UnitOfWork, campaign: SurveyCampaign) -> CampaignInfo:
    version = await version_by_id(uow, campaign.version_id)
    return CampaignInfo(campaign, version.code, version.title, version.version, version.anonymous)


def _young(member: Member, municipality: Municipality, on: date) -> bool:
    return is_young(
        teaching_start_year=member.teaching_start_year,
        birth_year=member.birth_year,
        today=on,
        max_experience_years=municipality.young_max_experience_years,
        max_age=municipality.young_max_age,
    )


def in_audience(member: Member, audience: str, municipality: Municipality, on: date) -> bool:
    """Whether a member is asked by a questionnaire of this audience (the cohort rule for young teachers)."""
    if audience == "young_teachers":
        return member.role == Role.TEACHER and _young(member, municipality, on)
    if audience == "all_teachers":
        return member.role in (Role.TEACHER, Role.MENTOR)
    return False


async def _in_audience(uow: UnitOfWork, member: Member, audience: str, campaign: SurveyCampaign) -> bool:
    municipality = await _municipality(uow, campaign.municipality_id)
    return municipality is not None and in_audience(member, audience, municipality, campaign.opens_on)


async def cohort(uow: UnitOfWork, municipality_id: int, audience: str, on: date) -> list[Member]:
    """Who a campaign asks: young teachers under the municipality's rule for the school year of `on`,
    or every teacher and mentor."""
    municipality = await _municipality(uow, municipality_id)
    if municipality is None:
        raise NotFound("municipality")
    roles = [Role.TEACHER] if audience == "young_teachers" else [Role.TEACHER, Role.MENTOR]
    members = (
        await uow.session.execute(
            select(Member).where(Member.municipality_id == municipality_id, Member.role.in_(roles)).order_by(Member.id)
        )
    ).scalars()
    return [member for member in members if in_audience(member, audience, municipality, on)]


async def _finished_ids(uow: UnitOfWork, campaign_id: int) -> set[int]:
    submitted = await uow.session.execute(
        select(SurveyResponse.member_id).where(
            SurveyResponse.campaign_id == campaign_id, SurveyResponse.status == SUBMITTED
        )
    )
    marked = await uow.session.execute(select(SurveyMark.member_id).where(SurveyMark.campaign_id == campaign_id))
    return set(submitted.scalars()) | set(marked.scalars())


def _send_at(moment: datetime, municipality: Municipality, quiet) -> datetime:
    return outbox.outside_quiet_hours(moment, municipality.timezone, quiet or DEFAULT_QUIET_HOURS)


async def invite_cohort(
    uow: UnitOfWork,
    campaign: SurveyCampaign,
    *,
    text: str,
    button: str,
    now: datetime,
    quiet: tuple[time, time] | None = None,
) -> int:
    """Queue an invitation to everyone in the campaign's cohort (again: only the newcomers).

    Invitations are due when the campaign opens (10:00 local) or now if it is open, never in
    quiet hours; the outbox key `campaign:{id}:invite:{member_id}` keeps them single.
    """
    municipality = await _municipality(uow, campaign.municipality_id)
    version = await version_by_id(uow, campaign.version_id)
    opening = datetime.combine(campaign.opens_on, INVITE_HOUR, tzinfo=ZoneInfo(municipality.timezone))
    due = _send_at(max(now, opening), municipality, quiet)
    finished = await _finished_ids(uow, campaign.id)
    queued = 0
    for member in await cohort(uow, campaign.municipality_id, version.audience, campaign.opens_on):
        if member.id in finished:
            continue
        row = await outbox.enqueue(
            uow, key=f"campaign:{campaign.id}:invite:{member.id}", kind="survey.invite", member_id=member.id,
            text=text, due_at=due, buttons=[[button, "flow:questionnaire"]],
        )
        queued += row is not None
    return queued


async def running_campaigns(uow: UnitOfWork, *, now: datetime) -> list[SurveyCampaign]:
    """Campaigns not closed whose window includes today somewhere (for the scheduled jobs)."""
    today = now.date()
    rows = await uow.session.execute(
        select(SurveyCampaign).where(
            SurveyCampaign.closed_at.is_(None),
            SurveyCampaign.opens_on <= today + timedelta(days=1),
            SurveyCampaign.closes_on >= today - timedelta(days=1),
        ).order_by(SurveyCampaign.id)
    )
    return list(rows.scalars())


async def remind_unfinished(
    uow: UnitOfWork,
    campaign: SurveyCampaign,
    *,
    text: str,
    button: str,
    now: datetime,
    round_key: str | None = None,
    quiet: tuple[time, time] | None = None,
) -> int:
    """Queue a reminder to everyone in the cohort who has not submitted (once per round, default: per day)."""
    municipality = await _municipality(uow, campaign.municipality_id)
    today = local_today(municipality, now)
    if not is_open(campaign, today):
        return 0
    version = await version_by_id(uow, campaign.version_id)
    round_key = round_key or today.isoformat()
    finished = await _finished_ids(uow, campaign.id)
    due = _send_at(now, municipality, quiet)
    queued = 0
    for member in await cohort(uow, campaign.municipality_id, version.audience, campaign.opens_on):
        if member.id in finished:
            continue
        row = await outbox.enqueue(
            uow, key=f"campaign:{campaign.id}:remind:{round_key}:{member.id}", kind="survey.reminder",
            member_id=member.id, text=text, due_at=due, buttons=[[button, "flow:questionnaire"]],
        )
        queued += row is not None
    return queued


@dataclass(frozen=True)
class SchoolRate:
    """Response rate of one organisation: the cohort, how many started and how many submitted."""

    organisation_id: int | None
    name: str
    cohort: int
    started: int
    submitted: int

    @property
    def rate(self) -> float:
        return self.submitted / self.cohort if self.cohort else 0.0


@dataclass(frozen=True)
class ResponseRate:
    """Response rate of a campaign, by school and in total."""

    campaign: SurveyCampaign
    schools: list[SchoolRate]

    @property
    def cohort(self) -> int:
        return sum(school.cohort for school in self.schools)

    @property
    def submitted(self) -> int:
        return sum(school.submitted for school in self.schools)

    @property
    def rate(self) -> float:
        return self.submitted / self.cohort if self.cohort else 0.0


async def response_rate(uow: UnitOfWork, actor: Member, campaign_id: int) -> ResponseRate:
    """How many of each school's cohort started and submitted (coordinators of the municipality only)."""
    campaign = await campaign_for(uow, actor, campaign_id)
    version = await version_by_id(uow, campaign.version_id)
    people = {member.id: member for member in await cohort(uow, campaign.municipality_id, version.audience, campaign.opens_on)}
    finished = await _finished_ids(uow, campaign.id)
    drafts = set(
        (
            await uow.session.execute(
                select(SurveyResponse.member_id).where(
                    SurveyResponse.campaign_id == campaign.id, SurveyResponse.status == DRAFT
                )
            )
        ).scalars()
    )
    missing = (finished | drafts) - set(people)
    if missing:  # people who answered but left the cohort since still count
        extra = await uow.session.execute(select(Member).where(Member.id.in_(missing)))
        people.update({member.id: member for member in extra.scalars()})
    by_school: dict[int | None, list[int]] = {}
    for member in people.values():
        by_school.setdefault(member.organisation_id, []).append(member.id)
    organisations = {
        org.id: org.name
        for org in (
            await uow.session.execute(select(Organisation).where(Organisation.municipality_id == campaign.municipality_id))
        ).scalars()
    }
    schools = [
        SchoolRate(
            organisation_id=org_id,
            name=organisations.get(org_id, "—") if org_id is not None else "—",
            cohort=len(ids),
            started=sum(1 for i in ids if i in drafts or i in finished),
            submitted=sum(1 for i in ids if i in finished),
        )
        for org_id, ids in by_school.items()
    ]
    schools.sort(key=lambda school: (school.organisation_id is None, school.name))
    return ResponseRate(campaign, schools)


@dataclass(frozen=True)
class AvailableSurvey:
    """A campaign the member can answer now, with their draft if they started."""

    campaign: SurveyCampaign
    version: QuestionnaireVersion
    response: SurveyResponse | None


async def available_surveys(uow: UnitOfWork, member: Member, *, now: datetime) -> list[AvailableSurvey]:
    """Open campaigns of the member's municipality that ask them and that they have not submitted."""
    if member.municipality_id is None:
        return []
    municipality = await _municipality(uow, member.municipality_id)
    today = local_today(municipality, now)
    rows = await uow.session.execute(
        select(SurveyCampaign, QuestionnaireVersion)
        .join(QuestionnaireVersion, QuestionnaireVersion.id == SurveyCampaign.version_id)
        .where(
            SurveyCampaign.municipality_id == member.municipality_id,
            SurveyCampaign.closed_at.is_(None),
            SurveyCampaign.opens_on <= today,
            SurveyCampaign.closes_on >= today,
        )
        .order_by(SurveyCampaign.opens_on, SurveyCampaign.id)
    )
    result = []
    for campaign, version in rows:
        if not in_audience(member, version.audience, municipality, campaign.opens_on):
            continue
        if version.anonymous and await has_answered_anonymously(uow, campaign.id, member.id):
            continue
        response = (
            await uow.session.execute(
                select(SurveyResponse).where(
                    SurveyResponse.member_id == member.id, SurveyResponse.campaign_id == campaign.id
                )
            )
        ).scalar_one_or_none()
        if response is not None and response.status == SUBMITTED:
            continue
        result.append(AvailableSurvey(campaign, version, response))
    return result


# ---- year over year ------------------------------------------------------------------------------


def describe_answer(question: Question, answer: StoredAnswer | None) -> str:
    """An answer in words: option texts (and «Другое» text), the text, the year, or row: column."""
    if answer is None or answer.value is None:
        return ""
    value = answer.value
    labels = {option.code: option.text for option in question.options}
    if question.type == "single":
        text = labels.get(value, str(value))
        return f"{text} {answer.other_text}" if answer.other_text else text
    if question.type == "multi":
        parts = [labels.get(code, str(code)) for code in value]
        if answer.other_text:
            parts = [f"{part} {answer.other_text}" if code == getattr(question.other_option, "code", None) else part
                     for code, part in zip(value, parts)]
        return "; ".join(parts)
    if question.type == "matrix":
        rows = {row.code: row.text for row in question.rows}
        return "; ".join(f"{rows.get(row, row)} — {labels.get(col, col)}" for row, col in value.items())
    return str(value)


@dataclass(frozen=True)
class SideBySide:
    """One teacher's submitted answers to one questionnaire, a column per campaign (oldest first)."""

    member_id: int
    columns: list[str]
    rows: list[tuple[str, str, list[str]]] = field(default_factory=list)


@dataclass(frozen=True)
class Respondent:
    """A member who submitted a named questionnaire, and how many times (one per campaign)."""

    member_id: int
    full_name: str
    responses: int


async def respondents(
    uow: UnitOfWork, actor: Member, *, questionnaire_code: str = YOUNG_TEACHER
) -> list[Respondent]:
    """The actor's municipality's members with submitted responses to the questionnaire, by name
    (those who answered more than once first: they are the ones to compare)."""
    require_coordinator(actor, actor.municipality_id)
    if actor.municipality_id is None:
        return []
    count = func.count(SurveyResponse.id)
    rows = await uow.session.execute(
        select(Member.id, Member.full_name, count)
        .join(SurveyResponse, SurveyResponse.member_id == Member.id)
        .join(QuestionnaireVersion, QuestionnaireVersion.id == SurveyResponse.version_id)
        .where(
            Member.municipality_id == actor.municipality_id,
            SurveyResponse.status == SUBMITTED,
            QuestionnaireVersion.code == questionnaire_code,
        )
        .group_by(Member.id, Member.full_name)
        .order_by((count > 1).desc(), Member.full_name)
    )
    return [Respondent(member_id, full_name, responses) for member_id, full_name, responses in rows]


async def answers_side_by_side(
    uow: UnitOfWork, actor: Member, member_id: int, *, questionnaire_code: str = YOUNG_TEACHER
) -> SideBySide:
    """A teacher's answers from each campaign beside the next year's, for the coordinator to compare."""
    member = await uow.members.get(member_id)
    if member is None:
        raise NotFound("member")
    require_coordinator(actor, member.municipality_id)
    municipality = await _municipality(uow, member.municipality_id)
    rows = list(
        await uow.session.execute(
            select(SurveyResponse, QuestionnaireVersion, SurveyCampaign)
            .join(QuestionnaireVersion, QuestionnaireVersion.id == SurveyResponse.version_id)
            .outerjoin(SurveyCampaign, SurveyCampaign.id == SurveyResponse.campaign_id)
            .where(
                SurveyResponse.member_id == member_id,
                SurveyResponse.status == SUBMITTED,
                QuestionnaireVersion.code == questionnaire_code,
            )
            .order_by(SurveyResponse.submitted_at)
        )
    )
    columns, per_response, order = [], [], {}
    years = [campaign.opens_on.year for _response, _version, campaign in rows if campaign is not None]
    by_month = len(set(years)) < len(years)  # two campaigns in one year: tell them apart by month
    for response, version, campaign in rows:
        questionnaire = rendered_for(version, municipality)
        if campaign is None:
            columns.append(response.submitted_at.date().strftime("%d.%m.%Y"))
        else:
            columns.append(campaign.opens_on.strftime("%m.%Y") if by_month else str(campaign.opens_on.year))
        answers = await answers_of(uow, response.id)
        per_response.append({q.code: describe_answer(q, answers.get(q.code)) for q in questionnaire.questions})
        for question in questionnaire.questions:
            order.setdefault(question.code, (question.number, question.text))
    result = SideBySide(member_id, columns)
    for code, (number, text) in sorted(order.items(), key=lambda item: item[1][0]):
        result.rows.append((code, f"{number}. {text}", [answers.get(code, "") for answers in per_response]))
    return result


# ---- deficits ------------------------------------------------------------------------------------

DEFICIT_KINDS: dict[str, frozenset[str]] = {
    "deficit_group": frozenset(g.value for g in DeficitGroup),
    "difficulty": frozenset(d.value for d in Difficulty),
    "help_direction": frozenset(h.value for h in HelpDirection),
}


async def _add_report(
    uow: UnitOfWork,
    member: Member,
    items: Sequence[tuple[str, str]],
    comment: str | None,
    today: date,
    source: str,
) -> DeficitReport:
    unique = list(dict.fromkeys(items))
    report = DeficitReport(
        member_id=member.id, municipality_id=member.municipality_id, organisation_id=member.organisation_id,
        subject_area=member.subject_area, created_on=today, source=source, comment=comment, mask=mask_of(unique),
    )
    uow.session.add(report)
    await uow.flush()
    if unique:
        await uow.session.execute(
            insert(DeficitItem), [{"report_id": report.id, "kind": kind, "code": code} for kind, code in unique]
        )
    return report


async def report_deficits(
    uow: UnitOfWork,
    member: Member,
    *,
    now: datetime,
    groups: Iterable[str] = (),
    difficulties: Iterable[str] = (),
    help_directions: Iterable[str] = (),
    comment: str | None = None,
) -> DeficitReport:
    """Record what a teacher feels weak in right now (the deficit flow and the monthly nudge)."""
    if member.municipality_id is None:
        raise Conflict("no municipality")
    items = [("deficit_group", c) for c in groups] + [("difficulty", c) for c in difficulties]
    items += [("help_direction", c) for c in help_directions]
    for kind, code in items:
        if code not in DEFICIT_KINDS[kind]:
            raise InvalidAnswer("not_an_option")
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > COMMENT_MAX_LENGTH:
        raise InvalidAnswer("too_long", length=len(comment), limit=COMMENT_MAX_LENGTH)
    if not items and comment is None:
        raise InvalidAnswer("required")
    today = local_today(await _municipality(uow, member.municipality_id), now)
    return await _add_report(uow, member, items, comment, today, SELF)


async def deficit_nudges(
    uow: UnitOfWork, municipality_id: int, *, text: str, button: str, now: datetime,
    quiet: tuple[time, time] | None = None,
) -> int:
    """Queue this month's nudge to report deficits to every young teacher of the municipality."""
    municipality = await _municipality(uow, municipality_id)
    if municipality is None:
        raise NotFound("municipality")
    today = local_today(municipality, now)
    due = _send_at(now, municipality, quiet)
    queued = 0
    for member in await cohort(uow, municipality_id, "young_teachers", today):
        row = await outbox.enqueue(
            uow, key=f"deficits:nudge:{today:%Y-%m}:{member.id}", kind="deficits.nudge", member_id=member.id,
            text=text, due_at=due, buttons=[[button, "flow:deficits"]],
        )
        queued += row is not None
    return queued


async def report_count(uow: UnitOfWork, member_id: int) -> int:
    """How many deficit reports a member has made (for tests and the profile)."""
    return (
        await uow.session.execute(select(func.count(DeficitReport.id)).where(DeficitReport.member_id == member_id))
    ).scalar_one()
