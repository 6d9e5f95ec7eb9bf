"""The weekly digest for ММС coordinators (domain-brief §5.6–5.7): figures, text, chart, workbook.

`build_digest` gathers one municipality's ISO week into a typed `Digest` with eight sections:

1. headline: young teachers registered (new this week), by стаж band, the share with an active
   mentor, and progress towards the VSEV target «не менее 70 %» (its denominator is entered by a
   coordinator, `DigestTarget`);
2. deficits: this week's self-reports by group, the top difficulties and help directions and the
   split by school and subject over the 4-week trend window (from `aggregation.summarise`, small
   cells already suppressed there);
3. deficit → event coverage: each frequent deficit group of the 4 weeks, and the upcoming events
   tagged with it; uncovered ones are flagged;
4. mentoring: meetings of the week, pairs idle for 14+ days and mentees waiting for a mentor
   (with names: the coordinator must act on them), mentor load;
5. events: the next 4 weeks with registrations against capacity, the week's attendance and
   feedback on the 3-point scale (small cells suppressed), the school-year checklist (LO 11);
6. survey campaigns running in the week: response rate by school;
7. retention signals (Q10, Q11) since the start of the school year, suppressed;
8. the indicator tracker (`_indicators`): every indicator domain-brief §5.6 marks as computable,
   with the source's words, the bot's formula, the source's threshold and a status; those that
   need a feature still to come (consultations, publications) are listed as such; the VK community's
   "updated at least once in 10 days" counts the wall posts published through the bot.

Plus "what to do next" for a quiet week or a new municipality. Figures about what people said
about themselves (deficits, retention, event feedback) follow the small-cell rule of
`aggregation` (1–4 people hidden, and whatever would reveal them by subtraction); operational
counts the coordinator already sees by name in the bot (registrations, pairs, meetings, seats,
who answered a campaign) are shown as they are.

A week is an ISO week in the municipality's timezone. "As of" figures (active pairs, waiting
mentees, upcoming events) are taken at the end of the week, or now for the running week. The
scheduled send (`due_digests`) delivers the last complete week every Monday at 09:00 local time
(weekday and hour are parameters) to each coordinator of the municipality and, as a regional
comparison, to each regional coordinator; a regional coordinator's region is the region of the
invite they registered with (`Invite.region`), or else their municipality's region.

Services never commit. The texts of the digest live here, like the outbox texts of the other
services; the labels of the reference lists come from `dialogs/flows/texts.py`.
"""

from __future__ import annotations

import base64
import io
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, or_, select

from dialogs.flows import texts as T  # a leaf module of labels only
from storage.models import Invite, Member, Municipality, Role
from storage.models_digest import DigestDelivery, DigestTarget
from storage.models_events import Event, EventFeedback, EventStatus, EventType, Registration, RegistrationState
from storage.models_mentoring import MentorMeeting, MentorPair, MentorProfile
from storage.models_outbox import OutboxMessage
from storage.models_surveys import SUBMITTED, QuestionnaireVersion, SurveyCampaign, SurveyMark, SurveyResponse
from storage.services import aggregation
from storage.services import mentoring as mentoring_service
from storage.services import outbox
from storage.services.aggregation import Figure
from storage.services.cohort import experience_band, experience_years, is_young, school_year_start
from storage.services.errors import Forbidden, NotFound
from storage.services.members import require_coordinator
from storage.unit_of_work import UnitOfWork

THRESHOLD = aggregation.THRESHOLD
TREND_WEEKS = 4
UPCOMING_WEEKS = 4
IDLE_DAYS = 14
LONG_IDLE_DAYS = 30
YOUNG_AGE = 35  # LO 11 «не старше 35 лет», VSEV «в возрасте до 35 лет»
COVERAGE_TARGET = 0.70  # VSEV L382
SUPPORT_TARGET = 0.60  # VSEV L206
TEXT_LIMIT = 4096  # https://core.telegram.org/bots/api#sendmessage
DEFAULT_WEEKDAY, DEFAULT_HOUR = 0, 9  # Monday 09:00 local time
CONTEST_TYPES = ("debut", "duet")
FIELD_TYPE = "field_seminar"
COMMUNITY_DAYS = 10  # ВСЕВ L370: the community page is updated at least once in 10 days
JOB_LOCK = "digest:weekly"
WEEK_PATTERN = re.compile(r"^\s*(\d{4})-?W(\d{1,2})\s*$", re.IGNORECASE)

YOUNG_TOTAL, TEACHERS_TOTAL = "young_teachers_total", "teachers_total"
#: Denominators a coordinator enters (the bot only knows who registered), with what they count.
DENOMINATORS: dict[str, str] = {
    YOUNG_TOTAL: "Педагоги до 35 лет со стажем до 3 лет в муниципальной системе образования",
    TEACHERS_TOTAL: "Все педагогические работники муниципальной системы образования",
}
MAX_DENOMINATOR = 1_000_000

# Indicator statuses.
OK, BELOW, INFO, INPUT, LATER = "ok", "below", "info", "input", "later"
STATUS_MARKS = {OK: "✅", BELOW: "⚠️", INFO: "ℹ️", INPUT: "✍️", LATER: "⏳"}
STATUS_WORDS = {OK: "выполнено", BELOW: "ниже порога", INFO: "для сведения", INPUT: "нужен знаменатель",
                LATER: "появится позже"}

BANDS = {"lt1": "до 1 года", "1to2": "от 1 года до 2 лет", "2to3": "от 2 лет до 3 лет", "3plus": "3 года и больше"}
ACTIVITIES = {
    "consultation": "Консультация", "lesson_visit": "Посещение урока", "open_lesson": "Открытый урок наставника",
    "joint_planning": "Совместное планирование", "master_class": "Мастер-класс",
    "contest_prep": "Подготовка к конкурсу", "iom": "ИОМ (план развития)", "other": "Другое",
}
FEEDBACK_QUESTIONS = {"content": "содержание", "organisation": "организация", "usefulness": "польза",
                      "recommend": "рекомендуют"}
FEEDBACK_OPTIONS = ("positive", "unsure", "negative")
HIDDEN = "скрыто"
HIDDEN_LONG = "скрыто (<5)"
MONTHS = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября",
          "ноября", "декабря")


# ---- the result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The ISO week a digest covers, in the municipality's timezone."""

    year: int
    week: int
    start: date
    end: date
    last_day: date  # Sunday, or today for the running week
    as_of: datetime  # when the snapshot figures are taken (UTC)
    school_year_start: date
    timezone: str

    @property
    def label(self) -> str:
        return week_label(self.year, self.week)

    @property
    def partial(self) -> bool:
        return self.last_day < self.end


@dataclass(frozen=True)
class Headline:
    """Section 1: young teachers registered, by стаж band, with a mentor, and the VSEV coverage target."""

    young_total: int
    young_new: int
    bands: dict[str, int]
    mentors: int
    with_mentor: int
    mentor_share: float | None
    involved: int  # ≤35, first three years, a pair or an attended event this school year
    involved_base: int  # registered ≤35 in their first three years
    denominator: int | None  # entered by a coordinator (YOUNG_TOTAL)
    coverage: float | None
    target: float = COVERAGE_TARGET


@dataclass(frozen=True)
class Ranked:
    """A code of a deficit list with its (suppressed) figure."""

    code: str
    label: str
    figure: Figure


@dataclass(frozen=True)
class SliceRow:
    """A school or subject area over the trend window: respondents and each deficit group."""

    name: str
    respondents: Figure
    groups: dict[str, Figure]


@dataclass(frozen=True)
class TrendWeek:
    """One week of the 4-week trend: people who reported, by deficit group."""

    start: date
    people: Figure
    groups: dict[str, Figure]


@dataclass(frozen=True)
class Deficits:
    """Section 2: self-reports of the week, the top lists, the trend and the splits."""

    week_people: Figure
    week_groups: list[Ranked]
    window_start: date
    window_people: Figure
    window_groups: list[Ranked]
    difficulties: list[Ranked]
    help_directions: list[Ranked]
    trend: list[TrendWeek]
    by_school: list[SliceRow]
    by_subject: list[SliceRow]


@dataclass(frozen=True)
class CoverageRow:
    """Section 3: a frequent deficit group and the upcoming events addressing it."""

    group: str
    label: str
    people: Figure
    events: list[str]

    @property
    def covered(self) -> bool:
        return bool(self.events)


@dataclass(frozen=True)
class IdlePairRow:
    """A pair without a meeting for a while (names: the coordinator acts on it)."""

    pair_id: int
    mentor: str
    mentee: str
    since: date
    days: int


@dataclass(frozen=True)
class WaitingRow:
    """A mentee waiting for a mentor (names: the coordinator acts on it)."""

    mentee_id: int
    mentee: str
    organisation: str
    since: date
    days: int


@dataclass(frozen=True)
class Mentoring:
    """Section 4: meetings, idle pairs, waiting mentees, mentor load."""

    meetings: int
    meetings_confirmed: int
    activities: dict[str, int]
    active_pairs: int
    pairs_met_30: int
    idle: list[IdlePairRow]
    idle_long: int
    waiting: list[WaitingRow]
    waiting_long: int
    mentors_active: int
    load: dict[int, int]  # mentees per mentor → how many mentors
    load_max: int
    load_avg: float | None
    free_places: int


@dataclass(frozen=True)
class UpcomingEvent:
    """An event of the next weeks with its seats."""

    event_id: int
    title: str
    type_name: str
    starts: datetime  # local time
    going: int
    waitlist: int
    capacity: int | None
    deficit_tags: list[str]


@dataclass(frozen=True)
class PastEvent:
    """An event held in the week: attendance and feedback (suppressed)."""

    event_id: int
    title: str
    starts: datetime  # local time
    going: int
    attended: int
    absent: int
    unknown: int
    respondents: Figure
    positive: dict[str, Figure]  # question → people answering «Да, вполне или скорее да» (share of respondents)


@dataclass(frozen=True)
class Events:
    """Section 5: the next weeks, the week's events, the school-year checklist."""

    upcoming: list[UpcomingEvent]
    past: list[PastEvent]
    year_held: int
    year_for_young: int  # events of the school year for young teachers and/or mentors (held or planned)
    year_attendees: int  # people who came to an event of the school year
    field_event: bool  # LO 11


@dataclass(frozen=True)
class SchoolResponse:
    """Response rate of one school in a campaign."""

    name: str
    cohort: int
    submitted: int

    @property
    def rate(self) -> float | None:
        return self.submitted / self.cohort if self.cohort else None


@dataclass(frozen=True)
class CampaignStatus:
    """Section 6: a campaign running in the week and its response rate by school."""

    campaign_id: int
    title: str
    opens_on: date
    closes_on: date
    cohort: int
    submitted: int
    schools: list[SchoolResponse]

    @property
    def rate(self) -> float | None:
        return self.submitted / self.cohort if self.cohort else None


@dataclass(frozen=True)
class RetentionBlock:
    """Section 7: Q11 plans to leave and Q10 dissatisfaction, since the school year began (suppressed)."""

    start: date
    q11_respondents: Figure
    leave_asap: Figure
    may_leave: Figure
    q10_respondents: Figure
    dissatisfied: Figure


@dataclass(frozen=True)
class Indicator:
    """Section 8: one indicator of the sources, how the bot computes it, its threshold and status."""

    code: str
    source: str
    short: str
    quote: str
    formula: str
    threshold: str
    value: str
    status: str
    needs: str | None = None


@dataclass(frozen=True)
class Digest:
    """Everything a municipality's coordinator gets for one week."""

    municipality_id: int
    municipality: str
    region: str
    period: Period
    generated_at: datetime
    headline: Headline
    deficits: Deficits
    coverage: list[CoverageRow]
    mentoring: Mentoring
    events: Events
    surveys: list[CampaignStatus]
    retention: RetentionBlock
    indicators: list[Indicator]
    next_steps: list[str]
    denominators: dict[str, int]
    quiet: bool
    new: bool


@dataclass(frozen=True)
class RegionalRow:
    """One municipality of a region on the digest's indicators (no names)."""

    municipality_id: int
    name: str
    young_total: int
    young_new: int
    mentor_share: float | None
    coverage: float | None
    deficit_people: Figure
    top_group: str | None
    meetings: int
    idle: int
    waiting: int
    upcoming: int
    field_event: bool
    leave: Figure


@dataclass(frozen=True)
class RegionalDigest:
    """A region's municipalities compared on the same indicators (the regional monitoring)."""

    region: str
    period: Period
    generated_at: datetime
    rows: list[RegionalRow]
    indicators: dict[str, list[Indicator]]  # municipality name → its tracker


# ---- weeks ---------------------------------------------------------------------------------------


def week_label(year: int, week: int) -> str:
    """'2026-W48' (ISO 8601)."""
    return f"{year}-W{week:02d}"


def parse_week(text: str) -> tuple[int, int]:
    """'2026-W48' → (2026, 48); ValueError for anything else or a week the year does not have."""
    match = WEEK_PATTERN.match(text or "")
    if not match:
        raise ValueError(f"not an ISO week: {text!r} (use e.g. 2026-W48)")
    year, week = int(match.group(1)), int(match.group(2))
    date.fromisocalendar(year, week, 1)  # raises ValueError for week 53 of a 52-week year
    return year, week


def week_of(moment: datetime, timezone_name: str) -> tuple[int, int]:
    """The ISO week a moment falls in, in a timezone."""
    iso = moment.astimezone(ZoneInfo(timezone_name)).isocalendar()
    return iso.year, iso.week


def shift_week(year: int, week: int, weeks: int) -> tuple[int, int]:
    """The ISO week `weeks` before (negative) or after (positive) the given one."""
    iso = (date.fromisocalendar(year, week, 1) + timedelta(weeks=weeks)).isocalendar()
    return iso.year, iso.week


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc)


def make_period(municipality: Municipality, year: int, week: int, now: datetime) -> Period:
    """The week in the municipality's time; ValueError for a week that has not begun."""
    zone = ZoneInfo(municipality.timezone or "Europe/Moscow")
    start = date.fromisocalendar(year, week, 1)
    end = start + timedelta(days=6)
    if now < _midnight(start, zone):
        raise ValueError("the week has not begun")
    as_of = min(now, _midnight(end + timedelta(days=1), zone))
    last_day = min(end, as_of.astimezone(zone).date())
    return Period(year, week, start, end, last_day, as_of, date(school_year_start(last_day), 9, 1), zone.key)


# ---- denominators and regions --------------------------------------------------------------------


async def denominators(uow: UnitOfWork, municipality_id: int) -> dict[str, int]:
    """The newest value of each denominator a coordinator entered for the municipality."""
    rows = await uow.session.execute(
        select(DigestTarget.kind, DigestTarget.value)
        .where(DigestTarget.municipality_id == municipality_id)
        .order_by(DigestTarget.entered_at, DigestTarget.id)
    )
    return {kind: value for kind, value in rows.all()}


async def set_denominator(
    uow: UnitOfWork, actor: Member, *, kind: str, value: int, now: datetime, municipality_id: int | None = None
) -> DigestTarget:
    """A coordinator enters a denominator for their municipality (kept with who and when)."""
    municipality_id = municipality_id if municipality_id is not None else actor.municipality_id
    require_coordinator(actor, municipality_id)
    if municipality_id is None:
        raise Forbidden("no municipality")
    if kind not in DENOMINATORS:
        raise ValueError(f"unknown denominator {kind}")
    if not 1 <= int(value) <= MAX_DENOMINATOR:
        raise ValueError("denominator out of range")
    row = DigestTarget(municipality_id=municipality_id, kind=kind, value=int(value), entered_at=now,
                       entered_by=actor.id)
    uow.session.add(row)
    await uow.flush()
    return row


async def region_of(uow: UnitOfWork, member: Member) -> str | None:
    """A regional coordinator's region: that of the invite they registered with, else their municipality's."""
    region = (
        await uow.session.execute(
            select(Invite.region)
            .where(Invite.used_by == member.id, Invite.region.is_not(None))
            .order_by(Invite.used_at.desc(), Invite.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if region:
        return region
    if member.municipality_id is not None:
        municipality = await uow.reference.municipality(member.municipality_id)
        if municipality is not None:
            return municipality.region
    return None


async def municipalities_of_region(uow: UnitOfWork, region: str) -> list[Municipality]:
    """The municipalities of a region, by name."""
    rows = await uow.session.execute(
        select(Municipality).where(Municipality.region == region).order_by(Municipality.name, Municipality.id)
    )
    return list(rows.scalars())


# ---- access --------------------------------------------------------------------------------------


async def digest_for(
    uow: UnitOfWork, actor: Member, *, year: int, week: int, now: datetime, municipality_id: int | None = None
) -> Digest:
    """The digest of a municipality for its coordinator (their own municipality by default)."""
    municipality_id = municipality_id if municipality_id is not None else actor.municipality_id
    require_coordinator(actor, municipality_id)
    if municipality_id is None:
        raise Forbidden("no municipality")
    return await build_digest(uow, municipality_id, year, week, now)


async def regional_digest_for(
    uow: UnitOfWork, actor: Member, *, year: int, week: int, now: datetime, region: str | None = None
) -> RegionalDigest:
    """The regional comparison for a regional coordinator (their region) or an admin (any region)."""
    if actor is None or actor.role not in (Role.REGIONAL, Role.ADMIN):
        raise Forbidden("regional coordinator role required")
    own = await region_of(uow, actor) if actor.role == Role.REGIONAL else None
    if actor.role == Role.REGIONAL:
        if own is None or (region is not None and region != own):
            raise Forbidden("another region")
        region = own
    if not region:
        raise NotFound("region")
    return await build_regional_digest(uow, region, year, week, now)


# ---- building: people, pairs, attendance ------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    id: int
    role: str
    organisation_id: int | None
    start_year: int | None
    birth_year: int | None
    new: bool  # registered during the week
    mentor_confirmed: bool
    young: bool
    early35: bool  # ≤35 and in the first three years (VSEV L382)


def _young_on(row, municipality: Municipality, on: date) -> bool:
    return row.role == Role.TEACHER and is_young(
        teaching_start_year=row.teaching_start_year, birth_year=row.birth_year, today=on,
        max_experience_years=municipality.young_max_experience_years or 3, max_age=municipality.young_max_age,
    )


async def _people(uow: UnitOfWork, municipality: Municipality, period: Period, week_start: datetime
                  ) -> list[_Person]:
    """Teachers and mentors registered before the snapshot moment (one Core query)."""
    rows = await uow.session.execute(
        select(Member.id, Member.role, Member.organisation_id, Member.teaching_start_year, Member.birth_year,
               case((Member.created_at >= week_start, 1), else_=0).label("new"), Member.mentor_confirmed)
        .where(Member.municipality_id == municipality.id, Member.role.in_([Role.TEACHER, Role.MENTOR]),
               Member.created_at <= period.as_of)
    )
    people = []
    for row in rows:
        years = experience_years(row.teaching_start_year, period.last_day)
        early = (row.role == Role.TEACHER and years is not None and years < 3 and row.birth_year is not None
                 and period.last_day.year - row.birth_year <= YOUNG_AGE)
        people.append(_Person(row.id, row.role, row.organisation_id, row.teaching_start_year, row.birth_year,
                              bool(row.new), bool(row.mentor_confirmed), _young_on(row, municipality,
                                                                                    period.last_day), early))
    return people


@dataclass
class _Pairs:
    active: list[tuple[int, int, int]]  # (pair id, mentor, mentee) active at the snapshot
    supported: set[int]  # mentees with a pair at some time in the school year


async def _pairs(uow: UnitOfWork, municipality_id: int, period: Period, zone: ZoneInfo) -> _Pairs:
    year_start = _midnight(period.school_year_start, zone)
    rows = await uow.session.execute(
        select(MentorPair.id, MentorPair.mentor_id, MentorPair.mentee_id, MentorPair.ended_at)
        .where(MentorPair.municipality_id == municipality_id, MentorPair.started_at < period.as_of,
               or_(MentorPair.ended_at.is_(None), MentorPair.ended_at > year_start))
    )
    active, supported = [], set()
    for pair_id, mentor_id, mentee_id, ended_at in rows:
        supported.add(mentee_id)
        if ended_at is None or ended_at > period.as_of:
            active.append((pair_id, mentor_id, mentee_id))
    return _Pairs(active, supported)


class _EventRow(NamedTuple):
    title: str
    type_code: str
    type_name: str
    starts_at: datetime
    ends_at: datetime
    capacity: int | None
    tags: list[str]
    audience: str


class _Seat(NamedTuple):
    event_id: int
    member_id: int
    state: str
    attended: bool | None


class _Meeting(NamedTuple):
    held_on: date
    activity: str
    confirmed: str
    deficits: list[str]
    pair_id: int
    mentee_id: int


@dataclass
class _EventData:
    events: dict[int, _EventRow]
    registrations: list[_Seat]


async def _event_data(uow: UnitOfWork, municipality_id: int, since: datetime) -> _EventData:
    """Active events ending after `since` (the school year and everything planned) and their registrations."""
    rows = await uow.session.execute(
        select(Event.id, Event.title, EventType.code, EventType.name, Event.starts_at, Event.ends_at, Event.capacity,
               Event.deficit_tags, Event.audience)
        .join(EventType, EventType.id == Event.type_id)
        .where(Event.municipality_id == municipality_id, Event.status == EventStatus.ACTIVE, Event.ends_at > since)
        .order_by(Event.starts_at, Event.id)
    )
    events = {row[0]: _EventRow(row[1], row[2], row[3], row[4], row[5], row[6], list(row[7] or []), row[8])
              for row in rows}
    registrations = []
    if events:
        registrations = [
            _Seat(*row)
            for row in await uow.session.execute(
                select(Registration.event_id, Registration.member_id, Registration.state, Registration.attended)
                .join(Event, Event.id == Registration.event_id)
                .where(Event.municipality_id == municipality_id, Event.status == EventStatus.ACTIVE,
                       Event.ends_at > since,
                       Registration.state.in_([RegistrationState.GOING, RegistrationState.WAITLIST]))
            )
        ]
    return _EventData(events, registrations)


def _came(seat: _Seat) -> bool:
    """Registered and not marked absent (attendance is often left unanswered)."""
    return seat.state == RegistrationState.GOING and seat.attended is not False


# ---- building: sections ------------------------------------------------------------------------------


def _share(part: int, whole: int | None) -> float | None:
    return part / whole if whole else None


def _headline(people: list[_Person], pairs: _Pairs, came: set[int], period: Period,
              targets: dict[str, int]) -> Headline:
    young = [p for p in people if p.young]
    bands = Counter(experience_band(p.start_year, period.last_day) for p in young)
    mentees = {mentee for _pair, _mentor, mentee in pairs.active}
    with_mentor = sum(1 for p in young if p.id in mentees)
    early = [p for p in people if p.early35]
    involved = sum(1 for p in early if p.id in pairs.supported or p.id in came)
    denominator = targets.get(YOUNG_TOTAL)
    return Headline(
        young_total=len(young),
        young_new=sum(1 for p in young if p.new),
        bands={band: bands.get(band, 0) for band in BANDS if bands.get(band) or band != "3plus"},
        mentors=sum(1 for p in people if p.role == Role.MENTOR and p.mentor_confirmed),
        with_mentor=with_mentor,
        mentor_share=_share(with_mentor, len(young)),
        involved=involved,
        involved_base=len(early),
        denominator=denominator,
        coverage=_share(involved, denominator),
    )


def _label(kind: str, code: str) -> str:
    labels = {"deficit_group": T.DEFICIT_GROUPS, "difficulty": T.DIFFICULTIES,
              "help_direction": T.HELP_DIRECTIONS}.get(kind, {})
    return labels.get(code, "Другое" if code == "other" else code)


def _ranked(kind: str, codes: dict[str, Figure], *, skip_other: bool = False) -> list[Ranked]:
    """Codes by count (largest first), hidden ones after the visible ones, zeros dropped."""
    items = [(code, figure) for code, figure in codes.items()
             if figure.count != 0 and not (skip_other and code == "other")]
    items.sort(key=lambda item: (item[1].count is None, -(item[1].count or 0)))
    return [Ranked(code, _label(kind, code), figure) for code, figure in items]


def _deficits(window: aggregation.DeficitSummary) -> Deficits:
    groups = window.kinds["deficit_group"]
    this_week = window.trend[-1]
    names = window.school_names

    def slices(splits: dict, name_of) -> list[SliceRow]:
        rows = [SliceRow(name_of(key), split.respondents, {c: f for c, f in split.codes.items() if c != "other"})
                for key, split in splits.items()]
        rows.sort(key=lambda row: (row.respondents.count is None, -(row.respondents.count or 0), row.name))
        return rows

    return Deficits(
        week_people=this_week.people,
        week_groups=_ranked("deficit_group", this_week.codes["deficit_group"]),
        window_start=window.start,
        window_people=window.people,
        window_groups=_ranked("deficit_group", groups.overall.codes),
        difficulties=_ranked("difficulty", window.kinds["difficulty"].overall.codes, skip_other=True),
        help_directions=_ranked("help_direction", window.kinds["help_direction"].overall.codes, skip_other=True),
        trend=[TrendWeek(week.start, week.people,
                         {c: f for c, f in week.codes["deficit_group"].items() if c != "other"})
               for week in window.trend],
        by_school=slices(groups.by_school, lambda key: names.get(key, "без организации") if key else
                         "без организации"),
        by_subject=slices(groups.by_subject, lambda key: T.SUBJECT_AREAS.get(key or "", "не указана")),
    )


def _coverage(deficits: Deficits, upcoming: list[_EventRow]) -> list[CoverageRow]:
    """Frequent groups of the window (a visible figure, so at least THRESHOLD people) and events tagged with them."""
    rows = []
    for ranked in deficits.window_groups:
        if ranked.figure.count is None or ranked.code == "other":
            continue
        titles = [event.title for event in upcoming if ranked.code in event.tags]
        rows.append(CoverageRow(ranked.code, ranked.label, ranked.figure, titles))
    return rows


async def _names(uow: UnitOfWork, ids: Iterable[int]) -> dict[int, tuple[str, int | None]]:
    ids = sorted(set(ids))
    if not ids:
        return {}
    rows = await uow.session.execute(select(Member.id, Member.full_name, Member.organisation_id)
                                     .where(Member.id.in_(ids)))
    return {member_id: (name, organisation_id) for member_id, name, organisation_id in rows}


async def _mentoring(uow: UnitOfWork, municipality: Municipality, period: Period, pairs: _Pairs,
                     meetings: list[_Meeting], organisations: dict[int, str]) -> Mentoring:
    week = [m for m in meetings if period.start <= m.held_on <= period.last_day]
    activities = Counter(m.activity for m in week)
    month_ago = period.last_day - timedelta(days=30)
    active_ids = {pair_id for pair_id, _mentor, _mentee in pairs.active}
    met = {m.pair_id for m in meetings if m.held_on > month_ago and m.pair_id in active_ids}
    idle = [item for item in await mentoring_service.idle_pairs(
        uow, now=period.as_of, idle_days=IDLE_DAYS, municipality_id=municipality.id)
        if item.pair.id in active_ids]
    paired = {mentee for _pair, _mentor, mentee in pairs.active}
    waiting = [request for request in await mentoring_service.waiting_mentees(
        uow, municipality.id, now=period.as_of, days=0) if request.mentee_id not in paired]
    names = await _names(uow, [i.pair.mentor_id for i in idle] + [i.pair.mentee_id for i in idle]
                         + [r.mentee_id for r in waiting])
    zone = ZoneInfo(period.timezone)
    today = period.as_of.astimezone(zone).date()
    idle_rows = sorted(
        (IdlePairRow(i.pair.id, names.get(i.pair.mentor_id, ("—", None))[0],
                     names.get(i.pair.mentee_id, ("—", None))[0], i.since, i.idle_days) for i in idle),
        key=lambda row: (-row.days, row.mentee),
    )
    waiting_rows = []
    for request in waiting:
        name, organisation_id = names.get(request.mentee_id, ("—", None))
        since = request.created_at.astimezone(zone).date()
        waiting_rows.append(WaitingRow(request.mentee_id, name, organisations.get(organisation_id, "—"), since,
                                       (today - since).days))
    waiting_rows.sort(key=lambda row: (-row.days, row.mentee))
    per_mentor = Counter(mentor for _pair, mentor, _mentee in pairs.active)
    load = Counter(per_mentor.values())
    capacities = await uow.session.execute(
        select(MentorProfile.member_id, MentorProfile.capacity)
        .join(Member, Member.id == MentorProfile.member_id)
        .where(Member.municipality_id == municipality.id, Member.role == Role.MENTOR, Member.mentor_confirmed)
    )
    free = sum(max(0, capacity - per_mentor.get(member_id, 0)) for member_id, capacity in capacities)
    return Mentoring(
        meetings=len(week),
        meetings_confirmed=sum(1 for m in week if m.confirmed == mentoring_service.YES),
        activities=dict(activities.most_common()),
        active_pairs=len(pairs.active),
        pairs_met_30=len(met),
        idle=idle_rows,
        idle_long=sum(1 for row in idle_rows if row.days >= LONG_IDLE_DAYS),
        waiting=waiting_rows,
        waiting_long=sum(1 for row in waiting_rows if row.days > mentoring_service.UNMATCHED_DAYS),
        mentors_active=len(per_mentor),
        load=dict(sorted(load.items())),
        load_max=max(per_mentor.values(), default=0),
        load_avg=_share(len(pairs.active), len(per_mentor)),
        free_places=free,
    )


def _feedback_figures(answers: list[dict]) -> tuple[Figure, dict[str, Figure]]:
    """Respondents and «positive» answers per question of one event, with small cells suppressed."""
    counts: dict[tuple, int] = {("resp",): len(answers)}
    relations = []
    for question in FEEDBACK_QUESTIONS:
        for option in FEEDBACK_OPTIONS:
            counts[(question, option)] = sum(1 for a in answers if a.get(question) == option)
        counts[(question, "any")] = sum(1 for a in answers if a.get(question) in FEEDBACK_OPTIONS)
        relations.append(((question, "any"), [(question, option) for option in FEEDBACK_OPTIONS]))
    hidden = aggregation.suppress(counts, relations)
    if ("resp",) in hidden:
        return Figure(None), {question: Figure(None) for question in FEEDBACK_QUESTIONS}
    positive = {}
    for question in FEEDBACK_QUESTIONS:
        key, base = (question, "positive"), (question, "any")
        if key in hidden:
            positive[question] = Figure(None)
        else:
            positive[question] = Figure(counts[key], _share(counts[key], counts[base]) if base not in hidden else None)
    return Figure(len(answers)), positive


async def _events(uow: UnitOfWork, data: _EventData, period: Period, week_start: datetime,
                  people: dict[int, _Person]) -> tuple[Events, list[_EventRow]]:
    """The events section, and every upcoming event (for the deficit coverage)."""
    zone = ZoneInfo(period.timezone)
    horizon = period.as_of + timedelta(weeks=UPCOMING_WEEKS)
    year_start = _midnight(period.school_year_start, zone)
    year_end = _midnight(date(period.school_year_start.year + 1, 9, 1), zone)
    seats: dict[int, list[_Seat]] = defaultdict(list)
    for seat in data.registrations:
        seats[seat.event_id].append(seat)
    upcoming_all = [event for event in data.events.values() if event.starts_at > period.as_of]
    upcoming = [
        UpcomingEvent(
            event_id, event.title, event.type_name, event.starts_at.astimezone(zone),
            going=sum(1 for seat in seats[event_id] if seat.state == RegistrationState.GOING),
            waitlist=sum(1 for seat in seats[event_id] if seat.state == RegistrationState.WAITLIST),
            capacity=event.capacity, deficit_tags=event.tags,
        )
        for event_id, event in data.events.items() if period.as_of < event.starts_at < horizon
    ]
    held_in_week = [event_id for event_id, event in data.events.items()
                    if week_start <= event.ends_at <= period.as_of]
    feedback: dict[int, list[dict]] = defaultdict(list)
    if held_in_week:
        for event_id, answers in await uow.session.execute(
            select(EventFeedback.event_id, EventFeedback.answers).where(EventFeedback.event_id.in_(held_in_week))
        ):
            feedback[event_id].append(answers or {})
    past = []
    for event_id in held_in_week:
        event = data.events[event_id]
        going = [seat.attended for seat in seats[event_id] if seat.state == RegistrationState.GOING]
        respondents, positive = _feedback_figures(feedback.get(event_id, []))
        past.append(PastEvent(
            event_id, event.title, event.starts_at.astimezone(zone), going=len(going),
            attended=going.count(True), absent=going.count(False), unknown=going.count(None),
            respondents=respondents, positive=positive,
        ))
    held_year = [event_id for event_id, event in data.events.items()
                 if year_start <= event.starts_at and event.ends_at <= period.as_of]
    attendees = {seat.member_id for event_id in held_year for seat in seats[event_id] if _came(seat)}
    field_event = False
    for event_id in held_year:
        if data.events[event_id].type_code != FIELD_TYPE:
            continue
        came = [people.get(seat.member_id) for seat in seats[event_id] if _came(seat)]
        has_mentor = any(p is not None and p.role == Role.MENTOR for p in came)
        has_young = any(p is not None and p.role == Role.TEACHER and p.birth_year is not None
                        and period.last_day.year - p.birth_year <= YOUNG_AGE for p in came)
        field_event = field_event or (has_mentor and has_young)
    for_young = sum(1 for event in data.events.values()
                    if year_start <= event.starts_at < year_end and event.audience in ("young_teachers", "mentors",
                                                                                        "both"))
    return Events(upcoming, past, len(held_year), for_young, len(attendees), field_event), upcoming_all


async def _surveys(uow: UnitOfWork, municipality: Municipality, period: Period, people: list[_Person],
                   organisations: dict[int, str]) -> list[CampaignStatus]:
    week_start = _midnight(period.start, ZoneInfo(period.timezone))
    rows = await uow.session.execute(
        select(SurveyCampaign, QuestionnaireVersion.title, QuestionnaireVersion.audience)
        .join(QuestionnaireVersion, QuestionnaireVersion.id == SurveyCampaign.version_id)
        .where(SurveyCampaign.municipality_id == municipality.id, SurveyCampaign.opens_on <= period.last_day,
               SurveyCampaign.closes_on >= period.start,
               or_(SurveyCampaign.closed_at.is_(None), SurveyCampaign.closed_at >= week_start))
        .order_by(SurveyCampaign.opens_on, SurveyCampaign.id)
    )
    result = []
    by_id = {p.id: p for p in people}
    for campaign, title, audience in rows.all():
        if audience == "young_teachers":
            cohort = {p.id for p in people if p.role == Role.TEACHER and is_young(
                teaching_start_year=p.start_year, birth_year=p.birth_year, today=campaign.opens_on,
                max_experience_years=municipality.young_max_experience_years or 3,
                max_age=municipality.young_max_age)}
        elif audience == "all_teachers":
            cohort = {p.id for p in people}
        else:
            continue
        finished = set((await uow.session.execute(
            select(SurveyResponse.member_id).where(SurveyResponse.campaign_id == campaign.id,
                                                   SurveyResponse.status == SUBMITTED,
                                                   SurveyResponse.submitted_at < period.as_of)
        )).scalars())
        finished |= set((await uow.session.execute(
            select(SurveyMark.member_id).where(SurveyMark.campaign_id == campaign.id)
        )).scalars())
        counted = cohort | {m for m in finished if m in by_id}  # answered, then left the cohort: still counts
        schools: dict[int | None, list[int]] = defaultdict(list)
        for member_id in counted:
            schools[by_id[member_id].organisation_id].append(member_id)
        school_rows = [SchoolResponse(organisations.get(org, "без организации") if org else "без организации",
                                      len(ids), sum(1 for i in ids if i in finished))
                       for org, ids in schools.items()]
        school_rows.sort(key=lambda row: (row.rate if row.rate is not None else 2, row.name))
        result.append(CampaignStatus(campaign.id, title, campaign.opens_on, campaign.closes_on, len(counted),
                                     sum(1 for i in counted if i in finished), school_rows))
    return result


def _retention(summary: aggregation.DeficitSummary) -> RetentionBlock:
    q11, q10 = summary.retention["q11"], summary.retention["q10"]
    return RetentionBlock(summary.start, q11.respondents, q11.codes["leave_asap"], q11.codes["may_leave"],
                          q10.respondents, q10.codes["no"])


# ---- the indicator tracker -----------------------------------------------------------------------------


def lowered(label: str) -> str:
    """A label inside a sentence: «Методические» → «методические», but «ИКТ (цифровые)» stays."""
    return label if len(label) > 1 and label[1].isupper() else label[:1].lower() + label[1:]


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def fig(value: Figure, *, share: bool = False) -> str:
    """A suppressed figure as text."""
    if value.count is None:
        return HIDDEN
    if share and value.share is not None:
        return f"{value.count} ({value.share:.0%})"
    return str(value.count)


def _ratio(part: int, whole: int | None, *, threshold: float | None, needs: str | None = None) -> tuple[str, str]:
    """A share 'part of whole' and its status against a threshold (or INPUT without a denominator)."""
    if not whole:
        return (f"{part} (знаменатель не введён)", INPUT) if needs else (f"{part}", INFO)
    share = part / whole
    status = INFO if threshold is None else (OK if share >= threshold else BELOW)
    return f"{share:.0%} ({part} из {whole})", status


@dataclass(frozen=True)
class _Facts:
    headline: Headline
    deficits: Deficits
    coverage: list[CoverageRow]
    events: Events
    retention: RetentionBlock
    year: aggregation.DeficitSummary
    registered: int
    schools_with_pairs: int
    schools_with_young: int
    contest_young: int
    young_attendees: int
    supported_people: int
    helped_recent: int
    helped_before: int
    meetings_year: int
    meetings_with_deficits: int
    feedback_people: Figure
    feedback_positive: Figure
    targets: dict[str, int]
    as_of: date | None = None  # the digest's last day
    last_wall_post: date | None = None  # the last event announcement the bot posted on the VK wall


def _indicators(f: _Facts) -> list[Indicator]:
    """The tracker: each indicator of domain-brief §5.6 the bot can compute (or will, once a feature exists)."""
    h = f.headline
    teachers = f.targets.get(TEACHERS_TOTAL)
    out: list[Indicator] = []

    def add(code, source, short, quote, formula, threshold, value, status, needs=None):
        out.append(Indicator(code, source, short, quote, formula, threshold, value, status, needs))

    value, status = _ratio(h.involved, h.denominator, threshold=COVERAGE_TARGET, needs=YOUNG_TOTAL)
    add("vsev_l382", "ВСЕВ 2022, L382", "≤35 в первые 3 года вовлечены",
        "Не менее 70 % педагогических работников в возрасте до 35 лет вовлечены в различные формы поддержки и "
        "сопровождения в первые три года работы.",
        "педагоги до 35 лет со стажем до 3 лет, у которых в этом учебном году была пара с наставником или "
        "посещённое мероприятие ÷ число таких педагогов в МСО (вводит координатор)",
        "не менее 70 %", value, status, YOUNG_TOTAL)
    value, status = _ratio(f.supported_people, teachers, threshold=SUPPORT_TARGET, needs=TEACHERS_TOTAL)
    add("vsev_l206", "ВСЕВ 2022, L206", "охват сопровождением (в год)",
        "Численность педагогических работников, охваченных различными формами научно-методического и "
        "методического сопровождения (в год), составляет не менее 60 % от общей численности педагогов.",
        "педагоги и наставники с парой или посещённым мероприятием в учебном году ÷ все педагоги МСО "
        "(вводит координатор)", "не менее 60 %", value, status, TEACHERS_TOTAL)
    add("lo_11", "ЛО, показатель 11", "выездное мероприятие (ЛО 11)",
        "Проведение не менее одного обучающего выездного мероприятия в учебном году с участием наставников, "
        "имеющих в данной сфере положительный практический опыт, и молодых специалистов муниципальной системы "
        "общего образования в возрасте не старше 35 лет",
        "прошедшие в этом учебном году мероприятия «Выездной семинар», на которых были наставник и педагог не "
        "старше 35 лет (записаны и не отмечены как отсутствовавшие)",
        "не менее одного в учебном году", "да" if f.events.field_event else "нет",
        OK if f.events.field_event else BELOW)
    value, status = _ratio(h.with_mentor, h.young_total, threshold=None)
    add("lo_5", "ЛО, показатель 5", "молодые педагоги с наставником",
        "Система поддержки педагогических работников в первые три года практической деятельности, в том числе, "
        "в форме «горизонтального» повышения квалификации и в форме наставничества, а также проведение "
        "обучающих активностей с привлечением действующих наставников",
        "молодые педагоги с активной парой ÷ зарегистрированные молодые педагоги",
        "2 / 1 / 0 баллов (экспертная оценка)", value, status)
    add("lo_8", "ЛО, показатель 8", "мероприятия для сообщества",
        "Организация и проведение мероприятий, направленных на формирование и поддержку сообщества молодых "
        "педагогов, развитие форм наставничества в муниципальной образовательной системе…",
        "мероприятия учебного года, прошедшие к дате дайджеста; сколько человек пришло",
        "2 / 1 / 0 баллов (экспертная оценка)",
        f"проведено: {f.events.year_held}, участников: {f.events.year_attendees}", INFO)
    add("lo_4", "ЛО, показатель 4; КИР 3", "информационный ресурс (бот)",
        "Наличие информационного ресурса (сервиса), обеспечивающего реализацию механизма помощи и поддержки "
        "молодых педагогов", "бот работает: зарегистрированные педагоги и наставники", "да / нет",
        f"да, зарегистрировано {f.registered}" if f.registered else "нет зарегистрированных",
        OK if f.registered else BELOW)
    add("kir_2", "КИР, критерий 2", "ОУ в программах наставничества",
        "Участие учреждений в реализации программ наставничества",
        "ОУ, где есть хотя бы одна активная пара (из ОУ, где есть зарегистрированные молодые педагоги)", "да / нет",
        f"{f.schools_with_pairs} из {f.schools_with_young} ОУ", OK if f.schools_with_pairs else BELOW)
    reported = f.year.people.count != 0
    add("kir_4", "КИР, критерий 4", "мониторинг дефицитов",
        "Система мониторингов по выявлению профессиональных дефицитов молодых специалистов",
        "в этом учебном году педагоги сообщали о дефицитах в боте (самооценка или анкета)", "да / нет",
        "да" if reported else "нет", OK if reported else BELOW)
    uncovered = [row.label for row in f.coverage if not row.covered]
    if f.coverage:
        kir5 = ("да" if not uncovered else "не закрыты: " + ", ".join(uncovered)), (OK if not uncovered else BELOW)
    else:
        kir5 = ("нет частых дефицитов за 4 недели", INFO)
    add("kir_5", "КИР, критерий 5; ВСЕВ L374", "мероприятия по дефицитам",
        "Наличие системы мероприятий с молодыми специалистами с учетом выявленных профессиональных дефицитов",
        "каждая частая группа дефицитов за 4 недели (от 5 человек) закрыта хотя бы одним предстоящим "
        "мероприятием с этой меткой", "да / нет", kir5[0], kir5[1])
    value, status = _ratio(f.contest_young, h.young_total, threshold=None)
    add("kir_6", "КИР, критерий 6; НОВ ОО-7", "участие в конкурсах",
        "Доля молодых специалистов, участвовавших в конкурсах к общему числу молодых специалистов",
        "молодые педагоги, записанные на «Педагогический дебют» или «Педагогический дуэт» в этом учебном году ÷ "
        "зарегистрированные молодые педагоги", "доля, %", value, status)
    add("kir_7", "КИР, критерий 7", "публикации",
        "Доля авторов публикаций к общему числу молодых специалистов", "бот пока не спрашивает о публикациях",
        "доля, %", "—", LATER)
    add("kir_8", "КИР, критерий 8", "сетевая форма",
        "Мероприятия, направленные на профессиональное развитие молодых специалистов, реализуемые в сетевой форме",
        "у мероприятий в боте пока нет признака «в сетевой форме»", "да / нет", "—", LATER)
    add("kir_l260", "КИР, L260", "прошли диагностику дефицитов",
        "Количество педагогических работников, прошедших диагностику профессиональных дефицитов",
        "педагоги, сообщившие о дефицитах с начала учебного года (самооценка или анкета)", "человек",
        fig(f.year.people), INFO)
    groups = _ranked("deficit_group", f.year.kinds["deficit_group"].overall.codes)
    add("kir_l168", "КИР, L168", "нуждаются в повышении компетенций",
        "Доля педагогических работников, нуждающихся в повышении … компетенций (педагогических, методических, "
        "психолого-педагогических, коммуникативных)",
        "по группам дефицитов, среди сообщивших с начала учебного года", "доля, %",
        ", ".join(f"{lowered(r.label)} {pct(r.figure.share)}" for r in groups if r.figure.count is not None
                  and r.code != "other")[:200] or "нет данных", INFO)
    value, status = _ratio(h.young_total, teachers, threshold=None, needs=TEACHERS_TOTAL)
    add("kir_l165", "КИР, L165", "доля молодых педагогов",
        "Доля молодых педагогов к общему количеству педагогов",
        "зарегистрированные молодые педагоги ÷ все педагоги МСО (вводит координатор)", "доля, %", value, status,
        TEACHERS_TOTAL)
    diagnosed = f.year.people.count
    if diagnosed is None:
        value, status = HIDDEN_LONG, INFO
    else:
        value, status = _ratio(diagnosed, teachers, threshold=None, needs=TEACHERS_TOTAL)
    add("kir_l166", "КИР, L166", "доля прошедших диагностику",
        "Доля педагогов, прошедших профессиональную … диагностику от общего количества педагогов района",
        "сообщившие о дефицитах с начала учебного года ÷ все педагоги МСО (вводит координатор)", "доля, %",
        value, status, TEACHERS_TOTAL)
    add("kir_l272", "КИР, L272–273", "удовлетворённость мероприятиями",
        "Доля участников, удовлетворённых мероприятиями, % (по анкете после мероприятия, шкала Приложения 1)",
        "ответившие «Да, вполне или скорее да» о содержании ÷ оставившие отзыв, мероприятия учебного года",
        "доля, %", f"{fig(f.feedback_positive, share=True)} (отзывов: {fig(f.feedback_people)})", INFO)
    add("chel_2_2", "ЧЕЛ, 2.2", "мероприятия для молодых и наставников",
        "Наличие мероприятий (образовательных событий и образовательных активностей), направленных на оказание "
        "методической помощи (поддержки) молодым педагогам и (или) наставничеству",
        "мероприятия учебного года (прошедшие и запланированные) для молодых педагогов и наставников",
        "Наличие мероприятий – 1 балл / отсутствие – 0 баллов", f"{f.events.year_for_young}",
        OK if f.events.year_for_young else BELOW)
    grew = f.helped_recent > f.helped_before
    add("chel_2_4", "ЧЕЛ, 2.4", "динамика получающих помощь",
        "Положительная динамика числа педагогических работников системы общего образования, которые получают "
        "методическую помощь (поддержку) через методические объединения и сетевые сообщества…",
        "получавшие помощь (встреча с наставником или посещённое мероприятие) за последние 4 недели против "
        "4 недель до них", "Положительная динамика – 1 балл / отсутствие – 0 баллов",
        f"{f.helped_recent} против {f.helped_before}", OK if grew else BELOW)
    value, status = _ratio(f.meetings_with_deficits, f.meetings_year, threshold=None)
    add("nov_oo_4", "НОВ, ОО-4", "сопровождение по затруднениям",
        "Практико-ориентированное индивидуальное сопровождение молодых специалистов на основе анализа "
        "профессиональных затруднений, мониторинга результативности деятельности молодых педагогов",
        "встречи наставников с отмеченными дефицитами ÷ все встречи учебного года", "—", value, status)
    value, status = _ratio(f.young_attendees, h.young_total, threshold=None)
    add("nov_oo_8", "НОВ, ОО-8", "активность в мероприятиях",
        "Активность молодых педагогов в образовательных мероприятиях разных уровней",
        "молодые педагоги, пришедшие хотя бы на одно мероприятие учебного года ÷ зарегистрированные молодые "
        "педагоги", "—", value, status)
    r = f.retention
    leaving = "; ".join([f"уйдут при первой возможности {fig(r.leave_asap, share=True)}",
                         f"могут уйти {fig(r.may_leave, share=True)}"])
    add("nov_oo_10", "НОВ, ОО-10 и М-6; КИР, L350", "риск ухода (анкета, в. 11)",
        "Закрепление молодых педагогов в образовательной организации.",
        "ответы на вопрос 11 анкеты молодого педагога с начала учебного года, среди ответивших "
        f"({fig(r.q11_respondents)})", "—", leaving, INFO)
    add("consult", "КИР, L157; ВСЕВ L146–148", "консультации",
        "Оказана адресная консультативно-методическая помощь Учреждениям и отдельным педагогам … – 100 проц. от "
        "запроса.", "появится вместе с консультациями в боте", "100 % запросов", "—", LATER)
    if f.last_wall_post is None:
        wall, wall_status = "публикаций через бот не было", BELOW
    else:
        days = (f.as_of - f.last_wall_post).days
        wall = f"последняя {f.last_wall_post:%d.%m.%Y} ({days} дн. назад)"
        wall_status = OK if days <= COMMUNITY_DAYS else BELOW
    add("community", "ЛО, 6 и 9; ВСЕВ L370; НОВ М-2", "сообщество ВКонтакте",
        "… обновляется не реже 1 раза в 10 дней.",
        "дней с последней публикации на стене сообщества через бот (анонсы мероприятий; записи, сделанные "
        "прямо во ВКонтакте, бот не видит)", f"не реже 1 раза в {COMMUNITY_DAYS} дней", wall, wall_status)
    return out


# ---- next steps ------------------------------------------------------------------------------------


def _next_steps(h: Headline, deficits: Deficits, coverage: list[CoverageRow], mentoring: Mentoring,
                events: Events, targets: dict[str, int]) -> list[str]:
    steps = []
    if h.young_total == 0:
        steps.append("Пригласите молодых педагогов: разошлите ссылку на бота через школы и методические "
                     "объединения — после регистрации здесь появятся их данные.")
    if not events.upcoming:
        steps.append("Добавьте мероприятия на ближайшие недели (📅 Мероприятия): календарь пуст.")
    uncovered = [lowered(row.label) for row in coverage if not row.covered]
    if uncovered:
        steps.append("Запланируйте мероприятия по дефицитам без покрытия: " + ", ".join(uncovered) + ".")
    if mentoring.waiting:
        steps.append(f"Подберите наставников ожидающим ({len(mentoring.waiting)}): 🧩 Подбор наставников.")
    if mentoring.idle:
        steps.append(f"Свяжитесь с парами без встреч {IDLE_DAYS}+ дней ({len(mentoring.idle)}).")
    if h.young_total and deficits.window_people.count == 0:
        steps.append("Попросите молодых педагогов отметить затруднения (⚠️ Сообщить о затруднении): "
                     "за 4 недели сообщений не было.")
    missing = [kind for kind in DENOMINATORS if kind not in targets]
    if missing:
        steps.append("Введите численность педагогов (🎯 Целевые показатели), чтобы считать доли от всех "
                     "педагогов МСО.")
    return steps


# ---- build ---------------------------------------------------------------------------------------------


async def build_digest(uow: UnitOfWork, municipality_id: int, year: int, week: int, now: datetime) -> Digest:
    """One municipality's digest for an ISO week (no access check: see `digest_for`)."""
    municipality = await uow.reference.municipality(municipality_id)
    if municipality is None:
        raise NotFound("municipality")
    period = make_period(municipality, year, week, now)
    zone = ZoneInfo(period.timezone)
    week_start = _midnight(period.start, zone)
    year_start = _midnight(period.school_year_start, zone)
    organisations = {o.id: o.name for o in await uow.reference.organisations(municipality_id)}
    targets = await denominators(uow, municipality_id)

    people = await _people(uow, municipality, period, week_start)
    by_id = {p.id: p for p in people}
    pairs = await _pairs(uow, municipality_id, period, zone)
    data = await _event_data(uow, municipality_id, min(year_start, week_start - timedelta(weeks=8)))
    came_year = {seat.member_id for seat in data.registrations
                 if _came(seat) and data.events[seat.event_id].starts_at >= year_start
                 and data.events[seat.event_id].ends_at <= period.as_of}
    headline = _headline(people, pairs, came_year, period, targets)

    window_start = period.start - timedelta(weeks=TREND_WEEKS - 1)
    window = await aggregation.summarise(uow, municipality_id, start=window_start, end=period.last_day,
                                         weeks=TREND_WEEKS)
    year_summary = await aggregation.summarise(uow, municipality_id, start=period.school_year_start,
                                               end=period.last_day, weeks=0)
    deficits = _deficits(window)
    events, upcoming_all = await _events(uow, data, period, week_start, by_id)
    coverage = _coverage(deficits, upcoming_all)

    since = min(period.school_year_start, period.last_day - timedelta(days=56))
    meetings = [
        _Meeting(*row) for row in await uow.session.execute(
            select(MentorMeeting.held_on, MentorMeeting.activity, MentorMeeting.confirmed, MentorMeeting.deficits,
                   MentorMeeting.pair_id, MentorPair.mentee_id)
            .join(MentorPair, MentorPair.id == MentorMeeting.pair_id)
            .where(MentorPair.municipality_id == municipality_id, MentorMeeting.held_on >= since,
                   MentorMeeting.held_on <= period.last_day, MentorMeeting.confirmed != mentoring_service.NO)
        )
    ]
    mentoring = await _mentoring(uow, municipality, period, pairs, meetings, organisations)
    surveys = await _surveys(uow, municipality, period, people, organisations)
    retention = _retention(year_summary)

    young_ids = {p.id for p in people if p.young}
    recent_from = period.last_day - timedelta(days=27)
    before_from = recent_from - timedelta(days=28)

    def helped(first: date, last: date) -> int:
        """People who met their mentor or came to an event between two days."""
        mentees = {m.mentee_id for m in meetings if first <= m.held_on <= last}
        low, high = _midnight(first, zone), _midnight(last + timedelta(days=1), zone)
        visitors = {seat.member_id for seat in data.registrations if _came(seat)
                    and low <= data.events[seat.event_id].ends_at < high
                    and data.events[seat.event_id].ends_at <= period.as_of}
        return len(mentees | visitors)

    year_meetings = [m for m in meetings if m.held_on >= period.school_year_start]
    year_feedback = await _year_feedback(uow, municipality_id, year_start, period.as_of)
    facts = _Facts(
        headline=headline, deficits=deficits, coverage=coverage, events=events, retention=retention,
        year=year_summary, registered=len(people),
        schools_with_pairs=len({by_id[mentee].organisation_id for _p, _m, mentee in pairs.active
                                if mentee in by_id and by_id[mentee].organisation_id}),
        schools_with_young=len({p.organisation_id for p in people if p.young and p.organisation_id}),
        contest_young=len({seat.member_id for seat in data.registrations
                           if seat.member_id in young_ids and data.events[seat.event_id].type_code in CONTEST_TYPES
                           and data.events[seat.event_id].starts_at >= year_start and _came(seat)}),
        young_attendees=len(came_year & young_ids),
        supported_people=len(came_year | pairs.supported),
        helped_recent=helped(recent_from, period.last_day),
        helped_before=helped(before_from, recent_from - timedelta(days=1)),
        meetings_year=len(year_meetings),
        meetings_with_deficits=sum(1 for m in year_meetings if m.deficits),
        feedback_people=year_feedback[0], feedback_positive=year_feedback[1], targets=targets,
        as_of=period.last_day, last_wall_post=await _last_wall_post(uow, municipality_id, period.as_of, zone),
    )
    indicators = _indicators(facts)
    next_steps = _next_steps(headline, deficits, coverage, mentoring, events, targets)
    quiet = (headline.young_new == 0 and deficits.week_people.count == 0 and mentoring.meetings == 0
             and not events.past)
    return Digest(
        municipality_id=municipality_id, municipality=municipality.name, region=municipality.region,
        period=period, generated_at=now, headline=headline, deficits=deficits, coverage=coverage,
        mentoring=mentoring, events=events, surveys=surveys, retention=retention, indicators=indicators,
        next_steps=next_steps, denominators=targets, quiet=quiet, new=headline.young_total == 0,
    )


async def _last_wall_post(uow: UnitOfWork, municipality_id: int, until: datetime, zone: ZoneInfo) -> date | None:
    """The day (local) of the last wall post the municipality's coordinators published through the bot."""
    last = (await uow.session.execute(
        select(func.max(OutboxMessage.sent_at))
        .join(Member, Member.id == OutboxMessage.member_id)
        .where(OutboxMessage.kind == outbox.WALL_KIND, OutboxMessage.state == outbox.SENT,
               Member.municipality_id == municipality_id, OutboxMessage.sent_at <= until)
    )).scalar()
    if last is None:
        return None
    if last.tzinfo is None:  # SQLite through func.max: the column type's processing does not apply
        last = last.replace(tzinfo=timezone.utc)
    return last.astimezone(zone).date()


async def _year_feedback(uow: UnitOfWork, municipality_id: int, since: datetime, until: datetime
                         ) -> tuple[Figure, Figure]:
    """People who left feedback on the school year's events, and those satisfied with the content (suppressed)."""
    rows = await uow.session.execute(
        select(EventFeedback.member_id, EventFeedback.answers)
        .join(Event, Event.id == EventFeedback.event_id)
        .where(Event.municipality_id == municipality_id, Event.starts_at >= since, Event.ends_at <= until)
    )
    answered: dict[int, set[str]] = defaultdict(set)
    for member_id, answers in rows:
        answered[member_id].add((answers or {}).get("content"))
    people = len(answered)
    positive = sum(1 for options in answered.values() if "positive" in options)
    counts = {("people",): people, ("positive",): positive, ("rest",): people - positive}
    hidden = aggregation.suppress(counts, [(("people",), [("positive",), ("rest",)])])
    people_fig = Figure(None) if ("people",) in hidden else Figure(people)
    positive_fig = (Figure(None) if ("positive",) in hidden
                    else Figure(positive, _share(positive, people) if ("people",) not in hidden else None))
    return people_fig, positive_fig


# ---- the regional digest ---------------------------------------------------------------------------


def _regional_row(digest: Digest) -> RegionalRow:
    top = next((r.label for r in digest.deficits.window_groups if r.figure.count is not None and r.code != "other"),
               None)
    return RegionalRow(
        municipality_id=digest.municipality_id, name=digest.municipality,
        young_total=digest.headline.young_total, young_new=digest.headline.young_new,
        mentor_share=digest.headline.mentor_share, coverage=digest.headline.coverage,
        deficit_people=digest.deficits.window_people, top_group=top, meetings=digest.mentoring.meetings,
        idle=len(digest.mentoring.idle), waiting=len(digest.mentoring.waiting), upcoming=len(digest.events.upcoming),
        field_event=digest.events.field_event, leave=digest.retention.leave_asap,
    )


async def build_regional_digest(uow: UnitOfWork, region: str, year: int, week: int, now: datetime
                                ) -> RegionalDigest:
    """The region's municipalities side by side on the digest's figures and indicators (no names)."""
    municipalities = await municipalities_of_region(uow, region)
    if not municipalities:
        raise NotFound("region")
    digests = []
    for municipality in municipalities:
        digests.append(await build_digest(uow, municipality.id, year, week, now))
    return RegionalDigest(
        region=region, period=digests[0].period, generated_at=now, rows=[_regional_row(d) for d in digests],
        indicators={d.municipality: d.indicators for d in digests},
    )


# ---- text ---------------------------------------------------------------------------------------------


def day_month(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]}"


def period_text(period: Period) -> str:
    span = f"{day_month(period.start)} – {day_month(period.end)} {period.end.year}"
    head = f"неделя {period.week} ({span})"
    if period.partial:
        head += f", на {period.last_day:%d.%m}"
    return head


def _render_municipal(d: Digest, detail: int) -> str:
    """The message at a level of detail (2 = full lists, 0 = only the essentials)."""
    names = (5, 3, 1)[2 - detail]
    h, de, m, ev = d.headline, d.deficits, d.mentoring, d.events
    lines = [f"🗞 Дайджест: {d.municipality}", period_text(d.period).capitalize()]
    if d.new:
        lines += ["", "👋 В боте пока нет зарегистрированных молодых педагогов — таблицам не из чего "
                      "складываться. С чего начать:"]
        lines += [f"• {step}" for step in d.next_steps]
        return "\n".join(lines)

    lines += ["", "👩‍🏫 Молодые педагоги"]
    lines.append(f"Зарегистрировано: {h.young_total} (новых за неделю: {h.young_new})")
    if d.quiet:
        return _render_quiet(d, lines, names)
    lines.append("По стажу: " + ", ".join(f"{BANDS[b]} — {n}" for b, n in h.bands.items()))
    lines.append(f"С наставником: {h.with_mentor} из {h.young_total} ({pct(h.mentor_share)})")
    if h.denominator:
        mark = "✅" if (h.coverage or 0) >= h.target else "⚠️"
        lines.append(f"Цель «не менее 70 % до 35 лет вовлечены»: {pct(h.coverage)} ({h.involved} из "
                     f"{h.denominator}) {mark}")
    else:
        lines.append(f"Вовлечены (до 35 лет, стаж до 3 лет): {h.involved} из {h.involved_base} "
                     "зарегистрированных; для цели 70 % введите численность (🎯)")

    lines += ["", "⚠️ Дефициты"]
    if de.week_people.count == 0 and de.window_people.count == 0:
        lines.append("За 4 недели никто не сообщал о затруднениях.")
    else:
        lines.append(f"Сообщили за неделю: {fig(de.week_people)}; за 4 недели: {fig(de.window_people)}")
        if de.week_groups:
            lines.append("За неделю по группам: " + ", ".join(
                f"{lowered(r.label)} {fig(r.figure)}" for r in de.week_groups if r.code != "other"))
        if de.difficulties:
            lines.append("Трудности (4 нед.): " + "; ".join(
                f"{r.label} — {fig(r.figure)}" for r in de.difficulties[:3]))
        if de.help_directions and detail:
            lines.append("Нужна помощь (4 нед.): " + "; ".join(
                f"{r.label} — {fig(r.figure)}" for r in de.help_directions[:3]))
        lines.append("Динамика по неделям: " + " → ".join(fig(w.people) for w in de.trend))
        schools = [row for row in de.by_school if row.respondents.count is not None][:names]
        if schools and detail:
            lines.append("Больше всего сообщений: " + "; ".join(f"{row.name} — {row.respondents.count}"
                                                                   for row in schools))

    lines += ["", "🎯 Дефициты и мероприятия"]
    if not d.coverage:
        lines.append("Частых дефицитов (от 5 человек за 4 недели) нет.")
    for row in d.coverage[:3]:
        if row.covered:
            lines.append(f"✅ {row.label} ({fig(row.people)}): «{row.events[0]}»"
                         + (f" и ещё {len(row.events) - 1}" if len(row.events) > 1 else ""))
        else:
            lines.append(f"❗ {row.label} ({fig(row.people)}): нет предстоящих мероприятий")

    lines += ["", "🤝 Наставничество"]
    lines.append(f"Встреч за неделю: {m.meetings} (подтверждено: {m.meetings_confirmed}); активных пар: "
                 f"{m.active_pairs}")
    if m.idle:
        lines.append(f"Без встреч {IDLE_DAYS}+ дней: {len(m.idle)} (из них {LONG_IDLE_DAYS}+: {m.idle_long})")
        lines += [f"• {row.mentor} — {row.mentee}: {row.days} дн." for row in m.idle[:names]]
        if len(m.idle) > names:
            lines.append(f"• и ещё {len(m.idle) - names} — в файле")
    if m.waiting:
        lines.append(f"Ждут наставника: {len(m.waiting)} (дольше {mentoring_service.UNMATCHED_DAYS} дней: "
                     f"{m.waiting_long})")
        lines += [f"• {row.mentee}, {row.organisation}: {row.days} дн." for row in m.waiting[:names]]
        if len(m.waiting) > names:
            lines.append(f"• и ещё {len(m.waiting) - names} — в файле")
    if m.mentors_active:
        lines.append(f"Наставников с парами: {m.mentors_active}; наставляемых в среднем "
                     f"{m.load_avg:.1f}".replace(".", ",") + f", максимум {m.load_max}; свободных мест: {m.free_places}")

    lines += ["", "📅 Мероприятия"]
    if ev.upcoming:
        for item in ev.upcoming[: names + 1]:
            seats = f"{item.going}/{item.capacity}" if item.capacity else f"{item.going}"
            wait = f", в листе ожидания {item.waitlist}" if item.waitlist else ""
            lines.append(f"• {item.starts:%d.%m} «{item.title}»: записались {seats}{wait}")
        if len(ev.upcoming) > names + 1:
            lines.append(f"• и ещё {len(ev.upcoming) - names - 1} — в файле")
    else:
        lines.append(f"На ближайшие {UPCOMING_WEEKS} недели мероприятий нет.")
    for item in ev.past[:names]:
        feedback = ""
        if item.respondents.count:
            feedback = (f"; отзывов {item.respondents.count}, «да, вполне или скорее да»: содержание "
                        f"{_share_text(item.positive['content'])}, польза {_share_text(item.positive['usefulness'])}")
        elif item.respondents.count is None:
            feedback = "; отзывов меньше 5"
        lines.append(f"Прошло {item.starts:%d.%m} «{item.title}»: пришли {item.attended} из {item.going}"
                     f"{feedback}")
    lines.append(f"Выездное мероприятие с наставниками и молодыми (ЛО 11): {'да ✅' if ev.field_event else 'пока нет'}")

    for campaign in d.surveys:
        lines += ["", f"📝 Анкетирование до {campaign.closes_on:%d.%m}: «{campaign.title}»"]
        lines.append(f"Ответили {campaign.submitted} из {campaign.cohort} ({pct(campaign.rate)})")
        low = [s for s in campaign.schools if s.cohort][:names]
        if low and detail:
            lines.append("Меньше всего ответов: " + "; ".join(f"{s.name} — {pct(s.rate)}" for s in low))

    r = d.retention
    if r.q11_respondents.count != 0 or r.q10_respondents.count != 0:
        lines += ["", "🚪 Риск ухода (анкета, с начала учебного года)"]
        lines.append(f"Уйдут при первой возможности: {fig(r.leave_asap, share=True)}; могут уйти: "
                     f"{fig(r.may_leave, share=True)} (ответили: {fig(r.q11_respondents)})")
        lines.append(f"Не удовлетворены своей подготовкой: {fig(r.dissatisfied, share=True)}")

    checked = [i for i in d.indicators if i.status in (OK, BELOW, INPUT)]
    lines += ["", "📋 Показатели"]
    shown = checked if detail == 2 else [i for i in checked if i.status != OK]
    lines += [f"{STATUS_MARKS[i.status]} {i.short}: {i.value}" for i in shown]
    if detail < 2 and len(shown) < len(checked):
        lines.append(f"✅ выполнено: {len(checked) - len(shown)}")
    lines.append(f"Все показатели ({len(d.indicators)}) с формулами и порогами — в файле XLSX.")

    if d.next_steps:
        lines += ["", "👉 Что сделать"]
        lines += [f"• {step}" for step in d.next_steps[: names + 1]]
    if any(x.count is None for x in (de.week_people, de.window_people)) or any(
            r.figure.count is None for r in de.week_groups + de.difficulties):
        lines += ["", "«скрыто» — меньше 5 человек (или можно было бы вычислить такую группу)."]
    return "\n".join(lines)


def _render_quiet(d: Digest, lines: list[str], names: int) -> str:
    """A quiet week: the essentials, what still needs action, and what to do next (no empty tables)."""
    h, m, ev = d.headline, d.mentoring, d.events
    lines.append(f"С наставником: {h.with_mentor} из {h.young_total} ({pct(h.mentor_share)})")
    lines += ["", "😌 Тихая неделя: новых регистраций, сообщений о затруднениях, встреч наставников и "
                  "мероприятий не было."]
    if m.idle or m.waiting:
        lines += ["", "🤝 Ждут вашего решения"]
        lines += [f"• {row.mentor} — {row.mentee}: без встреч {row.days} дн." for row in m.idle[:names]]
        lines += [f"• {row.mentee}, {row.organisation}: ждёт наставника {row.days} дн." for row in m.waiting[:names]]
        hidden = max(0, len(m.idle) - names) + max(0, len(m.waiting) - names)
        if hidden:
            lines.append(f"• и ещё {hidden} — в файле")
    if ev.upcoming:
        lines += ["", "📅 Впереди"]
        for item in ev.upcoming[:names]:
            seats = f"{item.going}/{item.capacity}" if item.capacity else f"{item.going}"
            lines.append(f"• {item.starts:%d.%m} «{item.title}»: записались {seats}")
    if d.next_steps:
        lines += ["", "👉 Что сделать"]
        lines += [f"• {step}" for step in d.next_steps]
    return "\n".join(lines)


def _share_text(value: Figure) -> str:
    return HIDDEN if value.count is None else pct(value.share)


def _render_regional(d: RegionalDigest, detail: int) -> str:
    """The comparison: a few lines per municipality (one line at the lowest detail), no names."""
    lines = [f"🗞 Региональный дайджест: {d.region}", period_text(d.period).capitalize(), ""]
    total_young = sum(row.young_total for row in d.rows)
    total_new = sum(row.young_new for row in d.rows)
    lines.append(f"👩‍🏫 Молодых педагогов в боте: {total_young} (новых за неделю: {total_new}), "
                 f"муниципалитетов: {len(d.rows)}")
    for row in d.rows:
        if detail == 0:
            lines.append(f"📍 {row.name}: молодых {row.young_total} (+{row.young_new}), с наставником "
                         f"{pct(row.mentor_share)}, цель 70 %: {pct(row.coverage)}, ждут наставника {row.waiting}")
            continue
        lines += ["", f"📍 {row.name}"]
        if row.young_total == 0:
            lines.append("Молодые педагоги ещё не зарегистрированы.")
            continue
        lines.append(f"Молодых: {row.young_total} (+{row.young_new}); с наставником: {pct(row.mentor_share)}; "
                     f"цель 70 %: {pct(row.coverage)}")
        parts = [f"дефициты за 4 нед.: {fig(row.deficit_people)}"]
        if row.top_group:
            parts.append(f"чаще всего — {lowered(row.top_group)}")
        lines.append("; ".join(parts))
        if detail == 2:
            lines.append(f"Встреч: {row.meetings}; пар без встреч {IDLE_DAYS}+ дн.: {row.idle}; ждут наставника: "
                         f"{row.waiting}; мероприятий впереди: {row.upcoming}; ЛО 11: "
                         f"{'да' if row.field_event else 'нет'}")
    lines += ["", "Показатели по муниципалитетам — в файле XLSX. Имена не показываются: по ним работают "
                  "координаторы муниципалитетов."]
    return "\n".join(lines)


def render_text(digest: Digest | RegionalDigest, *, limit: int = TEXT_LIMIT) -> str:
    """The digest as a short plain-text message (emoji headings, no markup) within Telegram's limit."""
    render = _render_regional if isinstance(digest, RegionalDigest) else _render_municipal
    for detail in (2, 1, 0):
        text = render(digest, detail)
        if len(text) <= limit:
            return text
    cut = text[: limit - 40].rsplit("\n", 1)[0]
    return cut + "\n… продолжение — в файле XLSX."


# ---- chart ------------------------------------------------------------------------------------------


def render_chart(digest: Digest | RegionalDigest) -> bytes:
    """A PNG: deficits by group over 4 weeks and the weekly trend (regional: municipalities compared)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as Canvas

    chart = Canvas(figsize=(10, 4.6), dpi=100)
    FigureCanvasAgg(chart)
    if isinstance(digest, RegionalDigest):
        _regional_chart(chart, digest)
    else:
        _municipal_chart(chart, digest)
    chart.tight_layout()
    buffer = io.BytesIO()
    chart.savefig(buffer, format="png")
    return buffer.getvalue()


def _municipal_chart(chart, d: Digest) -> None:
    if d.deficits.window_people.count == 0:
        axis = chart.subplots(1, 1)
        axis.set_axis_off()
        axis.text(0.5, 0.55, "За 4 недели сообщений о затруднениях не было", ha="center", va="center", fontsize=14)
        axis.text(0.5, 0.4, "Молодые педагоги отмечают их в боте: «⚠ Сообщить о затруднении»", ha="center",
                  va="center", fontsize=10, color="grey")
        chart.suptitle(f"{d.municipality}: {d.period.label}", fontsize=11)
        return
    left, right = chart.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    groups = [code for code in T.DEFICIT_GROUPS]
    window = {r.code: r.figure for r in d.deficits.window_groups}
    values = [window.get(code, Figure(0)).count for code in groups]
    labels = [T.DEFICIT_GROUPS[code] for code in groups]
    bars = left.barh(labels[::-1], [v or 0 for v in values[::-1]], color="#4C72B0")
    for bar, value in zip(bars, values[::-1]):
        left.annotate(HIDDEN if value is None else str(value), (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                      xytext=(3, 0), textcoords="offset points", va="center", fontsize=9)
    left.set_title(f"Дефициты по группам, 4 недели с {d.deficits.window_start:%d.%m}", fontsize=10)
    left.set_xlabel("человек")
    left.margins(x=0.15)
    weeks = [w.start.strftime("%d.%m") for w in d.deficits.trend]
    people = [float("nan") if w.people.count is None else w.people.count for w in d.deficits.trend]
    right.plot(weeks, people, marker="o", linewidth=2, color="black", label="сообщили (всего)")
    top = [r.code for r in d.deficits.window_groups if r.code != "other" and r.figure.count is not None][:3]
    for code in top:
        series = [float("nan") if w.groups.get(code, Figure(0)).count is None else w.groups[code].count
                  for w in d.deficits.trend]
        right.plot(weeks, series, marker=".", linewidth=1, label=lowered(T.DEFICIT_GROUPS[code]))
    right.set_title("Динамика по неделям (человек)", fontsize=10)
    right.set_ylim(bottom=0)
    right.legend(fontsize=8, loc="upper left")
    chart.suptitle(f"{d.municipality}: {d.period.label}", fontsize=11)


def _regional_chart(chart, d: RegionalDigest) -> None:
    axis = chart.subplots(1, 1)
    names = [row.name for row in d.rows]
    shares = [(row.mentor_share or 0) * 100 for row in d.rows]
    coverage = [(row.coverage or 0) * 100 for row in d.rows]
    positions = list(range(len(names)))
    axis.barh([p + 0.2 for p in positions], shares, height=0.4, label="с наставником, %", color="#4C72B0")
    axis.barh([p - 0.2 for p in positions], coverage, height=0.4, label="вовлечены (цель 70 %), %", color="#DD8452")
    axis.axvline(COVERAGE_TARGET * 100, color="grey", linestyle="--", linewidth=1)
    axis.set_yticks(positions, names, fontsize=8)
    axis.invert_yaxis()  # the first municipality on top, as in the text
    axis.set_xlim(0, 100)
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title(f"{d.region}: {d.period.label}", fontsize=11)


# ---- workbook ----------------------------------------------------------------------------------------


def _cell(value):
    """A workbook cell: a suppressed figure reads «скрыто (<5)»."""
    if isinstance(value, Figure):
        return HIDDEN_LONG if value.count is None else value.count
    return value


def _sheet(book, title: str, headers: Sequence[str], rows: Iterable[Sequence], *, caption: str | None = None,
           percent_columns: Sequence[int] = ()) -> None:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    sheet = book.create_sheet(title)
    if caption:
        sheet.append([caption])
        sheet.cell(row=1, column=1).font = Font(bold=True)
    sheet.append(list(headers))
    header_row = sheet.max_row
    for column in range(1, len(headers) + 1):
        sheet.cell(row=header_row, column=column).font = Font(bold=True)
    for row in rows:
        sheet.append([_cell(value) for value in row])
        for column in percent_columns:
            cell = sheet.cell(row=sheet.max_row, column=column + 1)
            if isinstance(cell.value, float):
                cell.number_format = "0%"
    for index in range(1, len(headers) + 1):
        letter = get_column_letter(index)
        width = max(len(str(cell.value or "")) for cell in sheet[letter][header_row - 1:])
        sheet.column_dimensions[letter].width = min(60, max(10, width + 2))


def render_workbook(digest: Digest | RegionalDigest) -> bytes:
    """An XLSX with a sheet per section, holding the same figures as the text (and the details)."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    if isinstance(digest, RegionalDigest):
        _regional_book(book, digest)
    else:
        _municipal_book(book, digest)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _municipal_book(book, d: Digest) -> None:
    h, de, m, ev, r = d.headline, d.deficits, d.mentoring, d.events, d.retention
    caption = f"{d.municipality}, {period_text(d.period)}"
    _sheet(book, "Главное", ["Показатель", "Значение"], [
        ["Молодые педагоги, зарегистрировано", h.young_total],
        ["Новых за неделю", h.young_new],
        *[[f"Стаж {BANDS[b]}", n] for b, n in h.bands.items()],
        ["Подтверждённых наставников", h.mentors],
        ["Молодых педагогов с наставником", h.with_mentor],
        ["Доля с наставником", h.mentor_share],
        ["До 35 лет со стажем до 3 лет, зарегистрировано", h.involved_base],
        ["Из них вовлечены в формы поддержки (учебный год)", h.involved],
        ["Численность таких педагогов в МСО (введена координатором)", h.denominator],
        ["Доля вовлечённых (цель не менее 70 %)", h.coverage],
    ], caption=caption, percent_columns=[1])
    _sheet(book, "Дефициты", ["Что", "Код", "За неделю", "За 4 недели"], [
        ["Сообщили о затруднениях (человек)", "", de.week_people, de.window_people],
        *[["Группа: " + T.DEFICIT_GROUPS.get(code, code), code,
           next((x.figure for x in de.week_groups if x.code == code), Figure(0)),
           next((x.figure for x in de.window_groups if x.code == code), Figure(0))] for code in T.DEFICIT_GROUPS],
        *[["Трудность: " + x.label, x.code, "", x.figure] for x in de.difficulties],
        *[["Помощь: " + x.label, x.code, "", x.figure] for x in de.help_directions],
    ], caption=f"{caption}; «скрыто» — меньше 5 человек или вычислимо вычитанием")
    _sheet(book, "Динамика", ["Неделя с", "Сообщили", *T.DEFICIT_GROUPS.values()], [
        [w.start.strftime("%d.%m.%Y"), w.people, *[w.groups.get(code, Figure(0)) for code in T.DEFICIT_GROUPS]]
        for w in de.trend
    ], caption="Люди по неделям (4 недели)")
    _sheet(book, "По школам", ["Организация", "Сообщили", *T.DEFICIT_GROUPS.values()], [
        [row.name, row.respondents, *[row.groups.get(code, Figure(0)) for code in T.DEFICIT_GROUPS]]
        for row in de.by_school
    ], caption=f"Группы дефицитов по организациям, 4 недели с {de.window_start:%d.%m.%Y}")
    _sheet(book, "По предметам", ["Предметная область", "Сообщили", *T.DEFICIT_GROUPS.values()], [
        [row.name, row.respondents, *[row.groups.get(code, Figure(0)) for code in T.DEFICIT_GROUPS]]
        for row in de.by_subject
    ], caption=f"Группы дефицитов по предметным областям, 4 недели с {de.window_start:%d.%m.%Y}")
    _sheet(book, "Покрытие", ["Группа дефицитов", "Человек за 4 недели", "Покрыта", "Предстоящие мероприятия"], [
        [row.label, row.people, "да" if row.covered else "НЕТ", "; ".join(row.events)] for row in d.coverage
    ], caption="Частые дефициты (от 5 человек) и мероприятия с такой меткой")
    _sheet(book, "Наставничество", ["Показатель", "Значение"], [
        ["Встреч за неделю", m.meetings], ["Из них подтверждено наставляемым", m.meetings_confirmed],
        *[[f"Вид работы: {ACTIVITIES.get(code, code)}", n] for code, n in m.activities.items()],
        ["Активных пар", m.active_pairs], ["Пар со встречей за 30 дней", m.pairs_met_30],
        [f"Пар без встреч {IDLE_DAYS}+ дней", len(m.idle)], [f"Из них {LONG_IDLE_DAYS}+ дней", m.idle_long],
        ["Ждут наставника", len(m.waiting)],
        [f"Ждут дольше {mentoring_service.UNMATCHED_DAYS} дней", m.waiting_long],
        ["Наставников с парами", m.mentors_active], ["Среднее число наставляемых", m.load_avg],
        ["Максимум наставляемых у одного", m.load_max], ["Свободных мест у наставников", m.free_places],
        *[[f"Наставников с {k} наставляемыми", n] for k, n in m.load.items()],
    ], caption=caption)
    _sheet(book, "Пары без встреч", ["Наставник", "Наставляемый", "Последняя встреча или начало", "Дней"], [
        [row.mentor, row.mentee, row.since.strftime("%d.%m.%Y"), row.days] for row in m.idle
    ], caption="Имена видны только координатору муниципалитета")
    _sheet(book, "Ждут наставника", ["Педагог", "Организация", "Ждёт с", "Дней"], [
        [row.mentee, row.organisation, row.since.strftime("%d.%m.%Y"), row.days] for row in m.waiting
    ], caption="Имена видны только координатору муниципалитета")
    _sheet(book, "Мероприятия", ["Когда", "Мероприятие", "Тип", "Записались", "Мест", "Лист ожидания",
                                 "Метки дефицитов"], [
        [e.starts.strftime("%d.%m.%Y %H:%M"), e.title, e.type_name, e.going, e.capacity, e.waitlist,
         ", ".join(T.DEFICIT_GROUPS.get(t, t) for t in e.deficit_tags)] for e in ev.upcoming
    ], caption=f"Ближайшие {UPCOMING_WEEKS} недели")
    _sheet(book, "Прошли", ["Когда", "Мероприятие", "Записались", "Пришли", "Не пришли", "Не отмечено",
                            "Отзывов", *[f"«Да» — {q}" for q in FEEDBACK_QUESTIONS.values()]], [
        [e.starts.strftime("%d.%m.%Y %H:%M"), e.title, e.going, e.attended, e.absent, e.unknown, e.respondents,
         *[_share_text(e.positive[q]) for q in FEEDBACK_QUESTIONS]] for e in ev.past
    ], caption="Мероприятия недели; доли ответов «Да, вполне или скорее да»")
    _sheet(book, "Анкетирование", ["Анкета", "Организация", "Опрашиваемых", "Ответили", "Доля"], [
        row for campaign in d.surveys for row in (
            [[campaign.title, "Всего", campaign.cohort, campaign.submitted, campaign.rate]]
            + [[campaign.title, s.name, s.cohort, s.submitted, s.rate] for s in campaign.schools])
    ], caption="Кампании, идущие на этой неделе", percent_columns=[4])
    _sheet(book, "Удержание", ["Ответ", "Человек", "Доля"], [
        ["Ответили на вопрос 11", r.q11_respondents, ""],
        ["Уйду в другую профессию при первой возможности", r.leave_asap, r.leave_asap.share],
        ["Могу уйти, если найду что-то более интересное и высокооплачиваемое", r.may_leave, r.may_leave.share],
        ["Ответили на вопрос 10", r.q10_respondents, ""],
        ["Не удовлетворены уровнем своей подготовки («Нет»)", r.dissatisfied, r.dissatisfied.share],
    ], caption=f"Анкета молодого педагога с {r.start:%d.%m.%Y}", percent_columns=[2])
    _indicator_sheet(book, "Показатели", d.indicators)
    _sheet(book, "Что сделать", ["Шаг"], [[step] for step in d.next_steps],
           caption="Что сделать дальше" + (" (тихая неделя)" if d.quiet else ""))
    _sheet(book, "Знаменатели", ["Что", "Значение"], [
        [label, d.denominators.get(kind)] for kind, label in DENOMINATORS.items()
    ], caption="Введены координатором (🎯 Целевые показатели)")


def _indicator_sheet(book, title: str, indicators: list[Indicator]) -> None:
    _sheet(book, title, ["Источник", "Показатель (текст источника)", "Как считает бот", "Порог", "Значение",
                         "Статус"], [
        [i.source, i.quote, i.formula, i.threshold, i.value, STATUS_WORDS[i.status]] for i in indicators
    ], caption="Показатели, которые бот может посчитать по своим данным (domain-brief §5.6)")


def _regional_book(book, d: RegionalDigest) -> None:
    _sheet(book, "Сравнение", ["Муниципалитет", "Молодых педагогов", "Новых за неделю", "С наставником",
                               "Вовлечены (цель 70 %)", "Сообщили о дефицитах за 4 недели", "Частая группа",
                               "Встреч за неделю", f"Пар без встреч {IDLE_DAYS}+ дн.", "Ждут наставника",
                               "Мероприятий впереди", "ЛО 11", "Уйдут при первой возможности"], [
        [row.name, row.young_total, row.young_new, row.mentor_share, row.coverage, row.deficit_people,
         row.top_group or "—", row.meetings, row.idle, row.waiting, row.upcoming, "да" if row.field_event else "нет",
         row.leave] for row in d.rows
    ], caption=f"{d.region}, {period_text(d.period)}", percent_columns=[3, 4])
    names = list(d.indicators)
    first = d.indicators[names[0]] if names else []
    _sheet(book, "Показатели", ["Источник", "Показатель", "Порог", *names], [
        [indicator.source, indicator.short, indicator.threshold,
         *[f"{STATUS_MARKS[d.indicators[name][index].status]} {d.indicators[name][index].value}" for name in names]]
        for index, indicator in enumerate(first)
    ], caption="Показатели по муниципалитетам (значение и статус)")


# ---- the weekly schedule -------------------------------------------------------------------------------


def due_week(now: datetime, timezone_name: str, *, weekday: int = DEFAULT_WEEKDAY, hour: int = DEFAULT_HOUR
             ) -> tuple[int, int] | None:
    """The week whose digest is due at `now`: the last complete ISO week, once this week's send time passed."""
    zone = ZoneInfo(timezone_name or "Europe/Moscow")
    local = now.astimezone(zone)
    monday = local.date() - timedelta(days=local.weekday())
    moment = datetime.combine(monday + timedelta(days=weekday), time(hour), tzinfo=zone)
    if local < moment:
        return None
    previous = (monday - timedelta(days=7)).isocalendar()
    return previous.year, previous.week


@dataclass(frozen=True)
class Rendered:
    """A digest's text and files, ready for the outbox or a chat."""

    label: str
    text: str
    chart: bytes
    workbook: bytes

    @property
    def chart_name(self) -> str:
        return f"digest-{self.label}.png"

    @property
    def workbook_name(self) -> str:
        return f"digest-{self.label}.xlsx"


CHART_CAPTION = "📊 Дефициты по группам и динамика за 4 недели"
REGIONAL_CHART_CAPTION = "📊 Муниципалитеты: доля с наставником и вовлечённость"
WORKBOOK_CAPTION = "📎 Подробности: лист на каждый раздел дайджеста"
OPEN_DIGEST = [["🗞 Дайджест недели", "flow:digest"]]


def render(digest: Digest | RegionalDigest) -> Rendered:
    """Text, chart and workbook of a digest."""
    label = digest.period.label
    if isinstance(digest, RegionalDigest):
        label = f"{label}-region"
    return Rendered(label, render_text(digest), render_chart(digest), render_workbook(digest))


def attachment(name: str, kind: str, content: bytes) -> dict:
    """The outbox attachment shape the dispatcher reads (scheduler/dispatch.py `_outgoing`)."""
    return {"name": name, "kind": kind, "content_b64": base64.b64encode(content).decode("ascii")}


async def _deliver(uow: UnitOfWork, member: Member, week: str, rendered: Rendered, now: datetime, *,
                   municipality_id: int | None, region: str | None, regional: bool) -> None:
    prefix = f"digest:{member.id}:{week}"
    await outbox.enqueue(uow, key=f"{prefix}:text", kind="digest.text", member_id=member.id, text=rendered.text,
                         due_at=now, buttons=OPEN_DIGEST)
    await outbox.enqueue(uow, key=f"{prefix}:chart", kind="digest.chart", member_id=member.id,
                         text=REGIONAL_CHART_CAPTION if regional else CHART_CAPTION, due_at=now,
                         attachment=attachment(rendered.chart_name, "photo", rendered.chart))
    await outbox.enqueue(uow, key=f"{prefix}:workbook", kind="digest.workbook", member_id=member.id,
                         text=WORKBOOK_CAPTION, due_at=now,
                         attachment=attachment(rendered.workbook_name, "document", rendered.workbook))
    uow.session.add(DigestDelivery(member_id=member.id, municipality_id=municipality_id, region=region, week=week,
                                   sent_at=now))
    await uow.flush()


async def _delivered(uow: UnitOfWork, member_ids: Sequence[int], week: str) -> set[int]:
    if not member_ids:
        return set()
    rows = await uow.session.execute(
        select(DigestDelivery.member_id).where(DigestDelivery.week == week,
                                               DigestDelivery.member_id.in_(list(member_ids)))
    )
    return set(rows.scalars())


async def due_digests(uow: UnitOfWork, now: datetime, *, weekday: int = DEFAULT_WEEKDAY,
                      hour: int = DEFAULT_HOUR) -> int:
    """Queue the week's digest for every coordinator (and regional coordinator) it is due for; returns how many.

    Due from `weekday` at `hour` (local time of the municipality; of the region's first municipality
    for a regional coordinator) for the last complete ISO week. Each digest is built once per
    municipality or region and queued as three outbox rows (text, PNG, XLSX) keyed
    `digest:<member>:<week>:text|chart|workbook`, with a `DigestDelivery` row in the same
    transaction: running again, or after a restart, queues nothing twice.
    """
    queued = 0
    municipalities = {m.id: m for m in await uow.reference.municipalities()}
    coordinators = list((await uow.session.execute(
        select(Member).where(Member.role == Role.COORDINATOR, Member.municipality_id.is_not(None))
        .order_by(Member.id)
    )).scalars())
    by_municipality: dict[int, list[Member]] = defaultdict(list)
    for member in coordinators:
        by_municipality[member.municipality_id].append(member)
    for municipality_id, members in by_municipality.items():
        municipality = municipalities.get(municipality_id)
        if municipality is None:
            continue
        week = due_week(now, municipality.timezone, weekday=weekday, hour=hour)
        if week is None:
            continue
        label = week_label(*week)
        done = await _delivered(uow, [m.id for m in members], label)
        waiting = [m for m in members if m.id not in done]
        if not waiting:
            continue
        rendered = render(await build_digest(uow, municipality_id, week[0], week[1], now))
        for member in waiting:
            await _deliver(uow, member, label, rendered, now, municipality_id=municipality_id,
                           region=municipality.region, regional=False)
            queued += 1

    regionals = list((await uow.session.execute(
        select(Member).where(Member.role == Role.REGIONAL).order_by(Member.id)
    )).scalars())
    cache: dict[tuple[str, str], Rendered] = {}
    for member in regionals:
        region = await region_of(uow, member)
        members_of_region = [m for m in municipalities.values() if m.region == region]
        if not region or not members_of_region:
            continue
        home = municipalities.get(member.municipality_id) if member.municipality_id else None
        zone_name = (home or sorted(members_of_region, key=lambda m: (m.name, m.id))[0]).timezone
        week = due_week(now, zone_name, weekday=weekday, hour=hour)
        if week is None:
            continue
        label = week_label(*week)
        if await _delivered(uow, [member.id], label):
            continue
        if (region, label) not in cache:
            cache[(region, label)] = render(await build_regional_digest(uow, region, week[0], week[1], now))
        await _deliver(uow, member, label, cache[(region, label)], now, municipality_id=None, region=region,
                       regional=True)
        queued += 1
    return queued

