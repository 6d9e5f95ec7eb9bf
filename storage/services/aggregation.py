"""Deficits and retention signals of a municipality over a period, with small cells suppressed.

Figures count people, not reports: a teacher who reports twice in a period counts once, under
every item they reported. Each report stores its items as a bitmask (`DeficitReport.mask`), so
the database computes, per person, the bitwise OR of their reports in one GROUP BY (as a sum of
`max(mask & bit)`, the bits being disjoint) and then sums the bits per school and subject area in
a second GROUP BY; Python only adds up those few grouped rows. A teacher who changed school or
subject during the period is counted under one of them, so the school figures add up exactly to
the municipality's.

Suppression:

* primary: a figure about 1–4 people is hidden;
* complementary: wherever a total is the sum of parts (a figure split by school, by subject
  area, by week, or a single-choice question's options), a hidden cell must not be the only
  hidden one, or it could be worked out by subtraction; the smallest other part is hidden too,
  repeated until no relation gives a hidden figure away.

The result (`DeficitSummary`) is a plain typed object for the bot and the weekly digest.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import reduce
from operator import add
from zoneinfo import ZoneInfo

from sqlalchemy import String, case, cast, distinct, func, literal_column, select, union_all

from storage.models import Member, Organisation
from storage.models_surveys import (
    MASK_BIT,
    MASK_ITEMS,
    SUBMITTED,
    DeficitReport,
    QuestionnaireVersion,
    SurveyAnswer,
    SurveyCampaign,
    SurveyResponse,
)
from storage.services.errors import NotFound
from storage.services.members import require_coordinator
from storage.unit_of_work import UnitOfWork

THRESHOLD = 5  # figures about 1..THRESHOLD-1 people are hidden
DEFAULT_WEEKS = 8
#: Item codes of each kind, in the order of the taxonomy ("other" last).
KINDS: dict[str, tuple[str, ...]] = {}
for _kind, _code in MASK_ITEMS:
    KINDS.setdefault(_kind, ())
    KINDS[_kind] += (_code,)
#: Retention signals of the young-teacher questionnaire: question → its option codes.
RETENTION: dict[str, tuple[str, ...]] = {
    "q10": ("partly", "yes", "no"),
    "q11": ("leave_asap", "may_leave", "career", "never_leave", "other"),
}
RETENTION_QUESTIONNAIRE = "young_teacher"

Key = tuple[Hashable, ...]


# ---- the result ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A number of people and its share of the slice's base; both None when suppressed."""

    count: int | None
    share: float | None = None

    @property
    def hidden(self) -> bool:
        return self.count is None


@dataclass(frozen=True)
class Split:
    """One slice (the municipality, a school, a subject area, a week): its respondents and codes."""

    respondents: Figure
    codes: dict[str, Figure]


@dataclass(frozen=True)
class KindSummary:
    """Counts of one kind of item (deficit groups, difficulties, help directions, needs)."""

    kind: str
    overall: Split
    by_school: dict[int | None, Split]
    by_subject: dict[str | None, Split]


@dataclass(frozen=True)
class Week:
    """One week of the trend: people who reported, and each kind's codes."""

    start: date
    people: Figure
    codes: dict[str, dict[str, Figure]]


@dataclass(frozen=True)
class Retention:
    """Answers to a retention question (Q10 satisfaction, Q11 plans) in submitted questionnaires."""

    question: str
    respondents: Figure
    codes: dict[str, Figure]


@dataclass(frozen=True)
class DeficitSummary:
    """Everything the ММС sees about deficits in one municipality and period."""

    municipality_id: int
    start: date
    end: date
    people: Figure
    kinds: dict[str, KindSummary]
    trend: list[Week]
    retention: dict[str, Retention]
    school_names: dict[int, str] = field(default_factory=dict)
    threshold: int = THRESHOLD


# ---- suppression ----------------------------------------------------------------------------------


def suppress(
    counts: dict[Key, int], relations: Iterable[tuple[Key, list[Key]]], threshold: int = THRESHOLD
) -> set[Key]:
    """The cells to hide: those about 1..threshold-1 people, and enough others that none can be derived.

    A relation `(total, parts)` says total = sum(parts). If exactly one of its cells is hidden, it
    could be computed from the others, so one more is hidden: the smallest non-zero visible part,
    else the total, else a zero part. This repeats until every relation hides none or at least two.
    """
    hidden = {key for key, value in counts.items() if 0 < value < threshold}
    relations = [(total, list(parts)) for total, parts in relations]
    changed = True
    while changed:
        changed = False
        for total, parts in relations:
            cells = [total, *parts]
            if sum(cell in hidden for cell in cells) != 1:
                continue
            visible = sorted((p for p in parts if p not in hidden), key=lambda p: (counts.get(p, 0), repr(p)))
            nonzero = [p for p in visible if counts.get(p, 0) > 0]
            if nonzero:
                hidden.add(nonzero[0])
            elif total not in hidden:
                hidden.add(total)
            elif visible:
                hidden.add(visible[0])
            else:
                continue
            changed = True
    return hidden


# ---- queries ----------------------------------------------------------------------------------------


def week_starts(end: date, weeks: int) -> list[date]:
    """Mondays of the last `weeks` weeks up to `end`, oldest first."""
    monday = end - timedelta(days=end.weekday())
    return [monday - timedelta(weeks=weeks - 1 - index) for index in range(weeks)]


def _bit(expression, bit: int):
    return expression.op("&")(literal_column(str(bit)))


def _or_of_masks():
    """The bitwise OR of the masks in a group: the bits are disjoint, so it is the sum of max(mask & bit)."""
    return reduce(add, [func.max(_bit(DeficitReport.mask, bit)) for bit in MASK_BIT.values()])


def _per_person(conditions, *keys):
    """One row per person (grouped with `keys`): the OR of their masks, their school and subject.

    Reports whose member was deleted count as a person each.
    """
    named = [key.label(f"k{index}") for index, key in enumerate(keys)]
    members = (
        select(DeficitReport.member_id.label("person"), *named,
               func.max(DeficitReport.organisation_id).label("org"),
               func.max(DeficitReport.subject_area).label("subj"), _or_of_masks().label("m"))
        .where(*conditions, DeficitReport.member_id.is_not(None))
        .group_by(DeficitReport.member_id, *keys)
    )
    orphans = (
        select((-DeficitReport.id).label("person"), *named, DeficitReport.organisation_id.label("org"),
               DeficitReport.subject_area.label("subj"), DeficitReport.mask.label("m"))
        .where(*conditions, DeficitReport.member_id.is_(None))
    )
    return union_all(members, orphans).cte("per_person")


def _bit_sums(people):
    """Per group: people, people with each item, people with any item of each kind."""
    columns = [func.count().label("people")]
    columns += [func.sum(case((_bit(people.c.m, bit) != 0, 1), else_=0)) for bit in MASK_BIT.values()]
    for kind, codes in KINDS.items():
        kind_mask = sum(MASK_BIT[(kind, code)] for code in codes)
        columns.append(func.sum(case((_bit(people.c.m, kind_mask) != 0, 1), else_=0)))
    return columns


def _add(counts: dict[Key, int], key: Key, value) -> None:
    counts[key] = counts.get(key, 0) + int(value or 0)


async def summarise(
    uow: UnitOfWork, municipality_id: int, *, start: date, end: date, weeks: int = DEFAULT_WEEKS,
    threshold: int = THRESHOLD,
) -> DeficitSummary:
    """The suppressed summary of one municipality for the days start..end (inclusive); no access check."""
    municipality = await uow.reference.municipality(municipality_id)
    if municipality is None:
        raise NotFound("municipality")
    counts: dict[Key, int] = {("people",): 0}
    items = list(MASK_ITEMS)
    in_period = (
        DeficitReport.municipality_id == municipality_id,
        DeficitReport.created_on >= start,
        DeficitReport.created_on <= end,
    )
    people = _per_person(in_period)
    rows = await uow.session.execute(select(people.c.org, people.c.subj, *_bit_sums(people))
                                     .group_by(people.c.org, people.c.subj))
    for org, subject, total, *figures in rows:
        _add(counts, ("people",), total)
        for (kind, code), value in zip(items, figures):
            for key in (("code", kind, code), ("code_s", kind, code, org), ("code_j", kind, code, subject)):
                _add(counts, key, value)
        for kind, value in zip(KINDS, figures[len(items):]):
            for key in (("resp", kind), ("resp_s", kind, org), ("resp_j", kind, subject)):
                _add(counts, key, value)

    mondays = week_starts(end, weeks) if weeks > 0 else []
    if mondays:
        week_of = case(*[(DeficitReport.created_on >= monday, index)
                         for index, monday in reversed(list(enumerate(mondays)))], else_=-1)
        in_window = (
            DeficitReport.municipality_id == municipality_id,
            DeficitReport.created_on >= mondays[0],
            DeficitReport.created_on <= end,
        )
        weekly = _per_person(in_window, week_of)
        rows = await uow.session.execute(select(weekly.c.k0, *_bit_sums(weekly)).group_by(weekly.c.k0))
        for week, total, *figures in rows:
            _add(counts, ("week_people", week), total)
            for (kind, code), value in zip(items, figures):
                _add(counts, ("week", week, kind, code), value)

    await _retention(uow, municipality, start, end, counts)

    schools = sorted({key[3] for key in counts if key[0] == "code_s"}, key=lambda s: (s is None, s or 0))
    subjects = sorted({key[3] for key in counts if key[0] == "code_j"}, key=lambda s: (s is None, s or ""))
    relations = _relations(counts, schools, subjects, mondays, start, end)
    hidden = suppress(counts, relations, threshold)
    names = {
        org.id: org.name
        for org in (
            await uow.session.execute(select(Organisation).where(Organisation.municipality_id == municipality_id))
        ).scalars()
    }
    return _assemble(municipality_id, start, end, counts, hidden, schools, subjects, mondays, names, threshold)


async def _retention(uow: UnitOfWork, municipality, start: date, end: date, counts: dict[Key, int]) -> None:
    """People per option of Q10 and Q11 among the young-teacher questionnaires submitted in the period."""
    zone = ZoneInfo(municipality.timezone)
    since = datetime.combine(start, time(0), tzinfo=zone)
    until = datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone)
    value = cast(SurveyAnswer.value, String)  # the JSON text, e.g. '"yes"', the same on both databases
    rows = await uow.session.execute(
        select(SurveyAnswer.question_code, value, func.count(distinct(SurveyResponse.member_id)))
        .join(SurveyResponse, SurveyResponse.id == SurveyAnswer.response_id)
        .join(QuestionnaireVersion, QuestionnaireVersion.id == SurveyResponse.version_id)
        .join(Member, Member.id == SurveyResponse.member_id)
        .outerjoin(SurveyCampaign, SurveyCampaign.id == SurveyResponse.campaign_id)
        .where(
            SurveyAnswer.question_code.in_(list(RETENTION)),
            SurveyResponse.status == SUBMITTED,
            SurveyResponse.submitted_at >= since,
            SurveyResponse.submitted_at < until,
            QuestionnaireVersion.code == RETENTION_QUESTIONNAIRE,
            func.coalesce(SurveyCampaign.municipality_id, Member.municipality_id) == municipality.id,
        )
        .group_by(SurveyAnswer.question_code, value)
    )
    for question, raw, n in rows:
        option = json.loads(raw) if raw else None
        if isinstance(option, str):
            _add(counts, ("ret", question, option), n)
    for question, options in RETENTION.items():
        counts[("ret_resp", question)] = sum(counts.get(("ret", question, option), 0) for option in options)


def _relations(counts, schools, subjects, mondays, start, end) -> list[tuple[Key, list[Key]]]:
    relations: list[tuple[Key, list[Key]]] = []
    for kind, codes in KINDS.items():
        relations.append((("resp", kind), [("resp_s", kind, s) for s in schools]))
        relations.append((("resp", kind), [("resp_j", kind, j) for j in subjects]))
        for code in codes:
            relations.append((("code", kind, code), [("code_s", kind, code, s) for s in schools]))
            relations.append((("code", kind, code), [("code_j", kind, code, j) for j in subjects]))
    # Weekly figures add up to the period's when the last weeks of the trend tile the period exactly.
    if start in mondays and end - mondays[-1] < timedelta(days=7):
        weeks = range(mondays.index(start), len(mondays))
        relations.append((("people",), [("week_people", w) for w in weeks]))
        for kind, codes in KINDS.items():
            for code in codes:
                relations.append((("code", kind, code), [("week", w, kind, code) for w in weeks]))
    for question, options in RETENTION.items():
        relations.append((("ret_resp", question), [("ret", question, o) for o in options]))
    return relations


def _assemble(municipality_id, start, end, counts, hidden, schools, subjects, mondays, names, threshold):
    def fig(key: Key, base: Key | None = None) -> Figure:
        if key in hidden:
            return Figure(None)
        count = counts.get(key, 0)
        if base is None or base in hidden or not counts.get(base):
            return Figure(count)
        return Figure(count, count / counts[base])

    def split(resp: Key, code_key, codes: tuple[str, ...]) -> Split:
        return Split(fig(resp), {code: fig(code_key(code), resp) for code in codes})

    kinds: dict[str, KindSummary] = {}
    for kind, codes in KINDS.items():
        kinds[kind] = KindSummary(
            kind=kind,
            overall=split(("resp", kind), lambda c, k=kind: ("code", k, c), codes),
            by_school={s: split(("resp_s", kind, s), lambda c, k=kind, s=s: ("code_s", k, c, s), codes)
                       for s in schools if counts.get(("resp_s", kind, s))},
            by_subject={j: split(("resp_j", kind, j), lambda c, k=kind, j=j: ("code_j", k, c, j), codes)
                        for j in subjects if counts.get(("resp_j", kind, j))},
        )
    trend = [
        Week(monday, fig(("week_people", w)),
             {kind: {code: fig(("week", w, kind, code)) for code in codes} for kind, codes in KINDS.items()})
        for w, monday in enumerate(mondays)
    ]
    retention = {
        question: Retention(question, fig(("ret_resp", question)),
                            {o: fig(("ret", question, o), ("ret_resp", question)) for o in options})
        for question, options in RETENTION.items()
    }
    return DeficitSummary(municipality_id, start, end, fig(("people",)), kinds, trend, retention,
                          {s: names.get(s, "—") for s in schools if s is not None}, threshold)


async def deficit_summary(
    uow: UnitOfWork, actor: Member, *, start: date, end: date, weeks: int = DEFAULT_WEEKS,
    municipality_id: int | None = None,
) -> DeficitSummary:
    """The summary for a coordinator of the municipality (their own by default)."""
    municipality_id = municipality_id if municipality_id is not None else actor.municipality_id
    require_coordinator(actor, municipality_id)
    return await summarise(uow, municipality_id, start=start, end=end, weeks=weeks)
