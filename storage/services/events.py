"""The municipal calendar: events, registrations with a waiting list, reminders and feedback.

Times are stored in UTC and entered/shown in the municipality's timezone. Everything the bot
says on its own about an event (reminders, change and cancellation notices, a freed place,
announcements, the post-event question) is a row of the outbox with an idempotent key:

    ev:<event>:rem:<member>:<version>.<seat round>:<minutes before>   reminder
    ev:<event>:chg:<version>:<member>                                change notice
    ev:<event>:cancel:<member>                                       cancellation notice
    ev:<event>:promo:<member>:<seat round>                           a place freed for you
    ev:<event>:ann:<member>                                          announcement to a subscriber
    ev:<event>:after:<member>                                        «Вы были на мероприятии?»

so cancelling "every pending reminder of event 7" is the key prefix `ev:7:rem:`, and of one
member `ev:7:rem:<member>:`. Services never commit.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select

from storage.models import Member, Municipality, Role
from storage.models_events import (
    Audience,
    Event,
    EventFeedback,
    EventStatus,
    EventType,
    Registration,
    RegistrationState,
    Subscription,
)
from storage.services import outbox
from storage.services.errors import Conflict, Forbidden, NotFound
from storage.services.members import require_coordinator
from storage.taxonomy import DeficitGroup
from storage.unit_of_work import UnitOfWork

Quiet = tuple[time, time]
QUIET_HOURS: Quiet = outbox.parse_quiet_hours("22:00-08:00")

GOING, WAITLIST, WITHDRAWN = RegistrationState.GOING, RegistrationState.WAITLIST, RegistrationState.WITHDRAWN
ACTIVE, CANCELLED = EventStatus.ACTIVE, EventStatus.CANCELLED
AUDIENCES = tuple(a.value for a in Audience)
DEFICIT_CODES = frozenset(g.value for g in DeficitGroup)

# The 3-point scale of Приложение 1 (dialogs/questionnaires/data/event_feedback.yaml).
FEEDBACK_QUESTIONS = ("content", "organisation", "usefulness", "recommend")
FEEDBACK_SCALE = ("positive", "unsure", "negative")
# After a further-training programme the questions are Приложение 1's own (course_feedback.yaml).
COURSE_TYPE = "dpp_course"
COURSE_QUESTIONS = ("competence", "content", "facilities", "service_quality", "courtesy", "recommend")


def feedback_questions(event: Event | None) -> tuple[str, ...]:
    """The scale questions asked after `event`: Приложение 1 after a course, the adapted form otherwise."""
    if event is not None and event.event_type is not None and event.event_type.code == COURSE_TYPE:
        return COURSE_QUESTIONS
    return FEEDBACK_QUESTIONS
# "Does that deficit still feel as strong?"
DEFICIT_ANSWERS = ("same", "weaker", "gone")

FOLLOWUP_HORIZON = timedelta(days=7)   # ended events older than this get no post-event question
FEEDBACK_WINDOW = timedelta(days=30)   # a post-event question stays answerable this long
EDITABLE = frozenset({
    "type_code", "title", "description", "starts_at", "ends_at", "place", "online_url", "audience",
    "capacity", "deficit_tags", "organiser_contact",
})
# Changing these tells everyone registered (and moves the reminders).
MATERIAL = frozenset({"starts_at", "ends_at", "place", "online_url"})

OPEN_EVENTS = [["📅 Мероприятия", "flow:events"]]
OPEN_FEEDBACK = [["Ответить", "flow:event_feedback"]]


# ---- texts of the messages the bot sends on its own ----------------------------------------
# (The outbox stores the text itself; the dialogs show the same wording on screens.)

REMINDER = "Напоминание: {when} — «{title}».\n{where}"
CHANGED = "Изменения в мероприятии «{title}».\nТеперь: {when_full}.\n{where}"
CANCELLED_NOTICE = "Мероприятие «{title}» ({when_full}) отменено. Приносим извинения."
PROMOTED = (
    "Освободилось место: вы записаны на «{title}» ({when_full}).\n{where}\n"
    "Если планы изменились, откройте мероприятие и нажмите «Не пойду»."
)
ANNOUNCEMENT = "Новое мероприятие: «{title}» ({type_name}).\n{when_full}.\n{where}"
AFTER = "Мероприятие «{title}» завершилось. Вы были на мероприятии? Ответьте, пожалуйста, на пару вопросов."
MONTHS = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября",
          "ноября", "декабря")


class EventInvalid(ValueError):
    """Event fields that do not fit together; `field` names the first bad one."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


# ---- time ------------------------------------------------------------------------------------


def zone_of(municipality: Municipality | None) -> ZoneInfo:
    return ZoneInfo(municipality.timezone if municipality and municipality.timezone else "Europe/Moscow")


def local(moment: datetime, municipality: Municipality | None) -> datetime:
    """A stored (UTC) moment in the municipality's timezone."""
    return moment.astimezone(zone_of(municipality))


DATE_FORMATS = ("%d.%m.%Y %H:%M", "%d.%m.%y %H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S")


def parse_local(text: str, municipality: Municipality | None) -> datetime:
    """'25.12.2026 15:00' (or ISO) read in the municipality's timezone → an aware UTC moment."""
    cleaned = " ".join(text.strip().replace(" в ", " ").split())
    for fmt in DATE_FORMATS:
        try:
            naive = datetime.strptime(cleaned, fmt)
        except ValueError:
            continue
        return naive.replace(tzinfo=zone_of(municipality)).astimezone(timezone.utc)
    raise ValueError(f"not a date and time: {text!r}")


def parse_clock(text: str) -> time:
    """'17:30' or '17.30' → a time of day."""
    match = re.fullmatch(r"\s*(\d{1,2})[:.](\d{2})\s*", text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"not a time of day: {text!r}")
    return time(int(match.group(1)), int(match.group(2)))


def when_text(event: Event) -> str:
    """'12 декабря 2026, 15:00–17:00' in the municipality's time (end date shown if another day)."""
    start, end = local(event.starts_at, event.municipality), local(event.ends_at, event.municipality)
    head = f"{start.day} {MONTHS[start.month - 1]} {start.year}, {start:%H:%M}"
    if end.date() == start.date():
        return f"{head}–{end:%H:%M}"
    return f"{head} – {end.day} {MONTHS[end.month - 1]}, {end:%H:%M}"


def where_text(event: Event) -> str:
    parts = []
    if event.place:
        parts.append(f"Место: {event.place}")
    if event.online_url:
        parts.append(f"Ссылка: {event.online_url}")
    return "\n".join(parts)


def plural(n: int, one: str, few: str, many: str) -> str:
    """The Russian plural form for n: (1) день, (2) дня, (5) дней."""
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def relative_when(event: Event, moment: datetime) -> str:
    """How the start looks from `moment`: 'сегодня в 15:00', 'завтра в 15:00', 'через 7 дней, 12 декабря в 15:00'."""
    start = local(event.starts_at, event.municipality)
    then = local(moment, event.municipality)
    days = (start.date() - then.date()).days
    if days <= 0:
        return f"сегодня в {start:%H:%M}"
    if days == 1:
        return f"завтра в {start:%H:%M}"
    return f"через {days} {plural(days, 'день', 'дня', 'дней')}, {start.day} {MONTHS[start.month - 1]} в {start:%H:%M}"


def _fill(template: str, event: Event, **extra: str) -> str:
    return template.format(
        title=event.title, when_full=when_text(event), where=where_text(event),
        type_name=event.event_type.name if event.event_type else "", **extra,
    ).strip()


def _quiet_due(moment: datetime, event: Event, quiet: Quiet | None) -> datetime:
    """`moment` moved out of the quiet hours, unless the morning would be too late for this event."""
    if quiet is None:
        return moment
    shifted = outbox.outside_quiet_hours(moment, zone_of(event.municipality).key, quiet)
    return moment if shifted >= event.starts_at else shifted


# ---- reading ---------------------------------------------------------------------------------


async def event_types(uow: UnitOfWork) -> list[EventType]:
    """The catalogue, in its order."""
    return list((await uow.session.execute(select(EventType).order_by(EventType.position, EventType.id))).scalars())


async def event_type_by_code(uow: UnitOfWork, code: str) -> EventType | None:
    return (await uow.session.execute(select(EventType).where(EventType.code == code))).scalar_one_or_none()


async def get_event(uow: UnitOfWork, event_id: int, *, lock: bool = False) -> Event:
    """An event by id (with a row lock on PostgreSQL when `lock`); NotFound if there is none."""
    statement = select(Event).where(Event.id == event_id)
    if lock:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    event = (await uow.session.execute(statement)).scalar_one_or_none()
    if event is None:
        raise NotFound("event")
    return event


def _fits(audience: str, role: str, preschool: bool) -> bool:
    if role in (Role.COORDINATOR, Role.ADMIN, Role.REGIONAL):
        return True
    if audience == Audience.BOTH:
        return role in (Role.TEACHER, Role.MENTOR)
    if audience == Audience.YOUNG_TEACHERS:
        return role == Role.TEACHER
    if audience == Audience.MENTORS:
        return role == Role.MENTOR
    if audience == Audience.PRESCHOOL:
        return preschool
    return False


def audience_fits(audience: str, member: Member) -> bool:
    """Whether an event for `audience` is meant for this member (coordinators see everything)."""
    preschool = audience == Audience.PRESCHOOL and (
        member.subject_area == "preschool"
        or (member.organisation is not None and member.organisation.kind == "preschool")
    )
    return _fits(audience, member.role, preschool)


async def upcoming_public(uow: UnitOfWork, municipality_id: int, now: datetime, *, limit: int = 50) -> list[Event]:
    """Active events of a municipality that have not ended, soonest first."""
    statement = (
        select(Event)
        .where(Event.municipality_id == municipality_id, Event.status == ACTIVE, Event.ends_at > now)
        .order_by(Event.starts_at, Event.id)
        .limit(limit)
    )
    return list((await uow.session.execute(statement)).scalars())


async def upcoming_events(uow: UnitOfWork, member: Member, now: datetime, *, limit: int = 50) -> list[Event]:
    """Upcoming events of the member's municipality meant for their role, soonest first."""
    if member.municipality_id is None:
        return []
    preschool = member.subject_area == "preschool"
    if not preschool and member.organisation_id is not None:
        organisation = await uow.reference.organisation(member.organisation_id)
        preschool = organisation is not None and organisation.kind == "preschool"
    audiences = [audience for audience in AUDIENCES if _fits(audience, member.role, preschool)]
    statement = (
        select(Event)
        .where(Event.municipality_id == member.municipality_id, Event.status == ACTIVE, Event.ends_at > now,
               Event.audience.in_(audiences))
        .order_by(Event.starts_at, Event.id)
        .limit(limit)
    )
    return list((await uow.session.execute(statement)).scalars())


DeficitSource = Callable[[UnitOfWork, Member], Awaitable[Iterable[str]]]


async def reported_deficit_groups(uow: UnitOfWork, member: Member) -> set[str]:
    """The deficit groups of the member's latest report that named any (empty without surveys)."""
    try:
        from storage.models_surveys import DeficitItem, DeficitReport
    except ImportError:  # the surveys feature is not installed
        return set()
    latest = (
        await uow.session.execute(
            select(DeficitReport.id)
            .join(DeficitItem, DeficitItem.report_id == DeficitReport.id)
            .where(DeficitReport.member_id == member.id, DeficitItem.kind == "deficit_group")
            .order_by(DeficitReport.created_on.desc(), DeficitReport.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if latest is None:
        return set()
    codes = await uow.session.execute(
        select(DeficitItem.code).where(DeficitItem.report_id == latest, DeficitItem.kind == "deficit_group")
    )
    return {code for (code,) in codes}


_deficit_source: DeficitSource = reported_deficit_groups


def use_deficit_source(source: DeficitSource | None) -> None:
    """Replace where «Для вас» reads a member's deficit groups (None restores the default)."""
    global _deficit_source
    _deficit_source = source or reported_deficit_groups


async def deficit_groups_of(uow: UnitOfWork, member: Member, source: DeficitSource | None = None) -> set[str]:
    return set(await (source or _deficit_source)(uow, member))


async def for_you(
    uow: UnitOfWork, member: Member, now: datetime, *, deficits: DeficitSource | None = None
) -> list[tuple[Event, list[str]]]:
    """Upcoming events with the deficit groups they address for this member; matching ones first."""
    groups = await deficit_groups_of(uow, member, deficits)
    events = await upcoming_events(uow, member, now)
    scored = [(event, [tag for tag in event.deficit_tags or [] if tag in groups]) for event in events]
    scored.sort(key=lambda pair: (-len(pair[1]), pair[0].starts_at, pair[0].id))
    return scored


async def registration_of(uow: UnitOfWork, event_id: int, member_id: int) -> Registration | None:
    return (
        await uow.session.execute(
            select(Registration).where(Registration.event_id == event_id, Registration.member_id == member_id)
        )
    ).scalar_one_or_none()


async def registrations_of(uow: UnitOfWork, member_id: int, event_ids: Sequence[int]) -> dict[int, Registration]:
    """The member's registrations for several events, by event id."""
    if not event_ids:
        return {}
    rows = await uow.session.execute(
        select(Registration).where(Registration.member_id == member_id, Registration.event_id.in_(list(event_ids)))
    )
    return {row.event_id: row for row in rows.scalars()}


@dataclass(frozen=True)
class Seats:
    """How full an event is."""

    going: int
    waitlist: int
    capacity: int | None

    @property
    def free(self) -> int | None:
        return None if self.capacity is None else max(0, self.capacity - self.going)

    @property
    def full(self) -> bool:
        return self.capacity is not None and self.going >= self.capacity


async def seats(uow: UnitOfWork, event: Event) -> Seats:
    rows = await uow.session.execute(
        select(Registration.state, func.count(Registration.id))
        .where(Registration.event_id == event.id, Registration.state.in_([GOING, WAITLIST]))
        .group_by(Registration.state)
    )
    counts = dict(rows.all())
    return Seats(going=counts.get(GOING, 0), waitlist=counts.get(WAITLIST, 0), capacity=event.capacity)


async def participants(uow: UnitOfWork, actor: Member, event_id: int) -> list[tuple[Member, Registration]]:
    """Who is going and who waits (in order), for the event's coordinator."""
    event = await get_event(uow, event_id)
    require_coordinator(actor, event.municipality_id)
    rows = await uow.session.execute(
        select(Member, Registration)
        .join(Registration, Registration.member_id == Member.id)
        .where(Registration.event_id == event_id, Registration.state.in_([GOING, WAITLIST]))
        .order_by(Registration.state, Registration.state_at, Registration.id)
    )
    return [(member, registration) for member, registration in rows.all()]


async def waitlist_position(uow: UnitOfWork, registration: Registration) -> int:
    """1 for the first in the waiting list."""
    ahead = await uow.session.execute(
        select(func.count(Registration.id)).where(
            Registration.event_id == registration.event_id,
            Registration.state == WAITLIST,
            or_(
                Registration.state_at < registration.state_at,
                and_(Registration.state_at == registration.state_at, Registration.id < registration.id),
            ),
        )
    )
    return ahead.scalar_one() + 1


# ---- validation ------------------------------------------------------------------------------


def _validate(event: Event, now: datetime, *, creating: bool) -> None:
    if not (event.title or "").strip():
        raise EventInvalid("title", "title is empty")
    if len(event.title) > 300:
        raise EventInvalid("title", "title is longer than 300 characters")
    if event.ends_at <= event.starts_at:
        raise EventInvalid("ends_at", "the end must be after the start")
    if event.ends_at - event.starts_at > timedelta(days=31):
        raise EventInvalid("ends_at", "an event lasts at most 31 days")
    if creating and event.starts_at <= now:
        raise EventInvalid("starts_at", "the start is in the past")
    if not (event.place or event.online_url):
        raise EventInvalid("place", "give a place or an online link")
    if event.online_url and not re.match(r"^https?://\S+$", event.online_url):
        raise EventInvalid("online_url", "an online link starts with http:// or https://")
    if event.audience not in AUDIENCES:
        raise EventInvalid("audience", f"audience must be one of {', '.join(AUDIENCES)}")
    if event.capacity is not None and event.capacity < 1:
        raise EventInvalid("capacity", "capacity must be a positive number (or none)")
    unknown = set(event.deficit_tags or []) - DEFICIT_CODES
    if unknown:
        raise EventInvalid("deficit_tags", f"unknown deficit groups: {', '.join(sorted(unknown))}")


# ---- coordinators: create, edit, cancel, copy -------------------------------------------------


async def create_event(
    uow: UnitOfWork,
    actor: Member | None,
    *,
    municipality_id: int,
    type_code: str,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    place: str | None = None,
    online_url: str | None = None,
    audience: str | None = None,
    capacity: int | None = None,
    deficit_tags: Iterable[str] = (),
    organiser_contact: str = "",
    description: str = "",
    source_uid: str | None = None,
    announce: bool = True,
    quiet: Quiet | None = QUIET_HOURS,
) -> Event:
    """Create an event (a coordinator of that municipality; `actor=None` is the import command)."""
    if actor is not None:
        require_coordinator(actor, municipality_id)
    event_type = await event_type_by_code(uow, type_code)
    if event_type is None:
        raise EventInvalid("type_code", f"unknown event type {type_code!r}")
    municipality = await uow.reference.municipality(municipality_id)
    if municipality is None:
        raise NotFound("municipality")
    event = Event(
        municipality_id=municipality_id, type_id=event_type.id, title=title.strip(), description=description or "",
        starts_at=starts_at, ends_at=ends_at, place=(place or None), online_url=(online_url or None),
        audience=audience or event_type.default_audience, capacity=capacity,
        deficit_tags=sorted(set(deficit_tags)), organiser_contact=organiser_contact or "",
        status=ACTIVE, version=1, source_uid=source_uid, created_by=actor.id if actor else None,
        created_at=now, updated_at=now,
    )
    event.event_type = event_type
    event.municipality = municipality
    _validate(event, now, creating=True)
    uow.session.add(event)
    await uow.flush()
    if announce:
        await announce_event(uow, event, now=now, quiet=quiet)
    return event


async def edit_event(
    uow: UnitOfWork, actor: Member, event_id: int, changes: dict[str, Any], *, now: datetime,
    quiet: Quiet | None = QUIET_HOURS,
) -> Event:
    """Change an event; a change of time or place tells everyone registered and moves the reminders."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    event = await get_event(uow, event_id, lock=True)
    require_coordinator(actor, event.municipality_id)
    if event.status != ACTIVE:
        raise Conflict("event cancelled")
    if event.ends_at <= now:
        raise Conflict("event is over")
    before = {name: getattr(event, name) for name in MATERIAL}
    old_capacity = event.capacity
    for name, value in changes.items():
        if name == "type_code":
            event_type = await event_type_by_code(uow, value)
            if event_type is None:
                raise EventInvalid("type_code", f"unknown event type {value!r}")
            event.type_id, event.event_type = event_type.id, event_type
        elif name == "deficit_tags":
            event.deficit_tags = sorted(set(value))
        elif name in ("place", "online_url"):
            setattr(event, name, value or None)
        else:
            setattr(event, name, value)
    _validate(event, now, creating="starts_at" in changes)
    event.updated_at = now
    material = any(getattr(event, name) != before[name] for name in MATERIAL)
    if material:
        event.version += 1
        await uow.flush()
        going = await _registered(uow, event.id, (GOING, WAITLIST))
        for registration in going:
            await outbox.enqueue(
                uow, key=f"ev:{event.id}:chg:{event.version}:{registration.member_id}", kind="event.changed",
                member_id=registration.member_id, text=_fill(CHANGED, event),
                due_at=_quiet_due(now, event, quiet), buttons=OPEN_EVENTS,
            )
        await outbox.cancel(uow, key_prefix=f"ev:{event.id}:rem:")
        for registration in going:
            if registration.state == GOING:
                await schedule_reminders(uow, event, registration, now=now, quiet=quiet)
    await uow.flush()
    if event.capacity is None or (old_capacity is not None and event.capacity > old_capacity):
        await promote_waitlist(uow, event, now=now, quiet=quiet)
    return event


async def cancel_event(
    uow: UnitOfWork, actor: Member, event_id: int, *, now: datetime, quiet: Quiet | None = QUIET_HOURS
) -> Event:
    """Cancel an event: everyone registered is told at once; pending reminders are dropped."""
    event = await get_event(uow, event_id, lock=True)
    require_coordinator(actor, event.municipality_id)
    if event.status == CANCELLED:
        return event
    event.status = CANCELLED
    event.version += 1
    event.updated_at = now
    await outbox.cancel(uow, key_prefix=f"ev:{event.id}:rem:")
    await outbox.cancel(uow, key_prefix=f"ev:{event.id}:ann:")
    await outbox.cancel(uow, key_prefix=f"ev:{event.id}:promo:")
    await outbox.cancel(uow, key_prefix=f"ev:{event.id}:chg:")
    if event.starts_at > now:
        for registration in await _registered(uow, event.id, (GOING, WAITLIST)):
            await outbox.enqueue(
                uow, key=f"ev:{event.id}:cancel:{registration.member_id}", kind="event.cancelled",
                member_id=registration.member_id, text=_fill(CANCELLED_NOTICE, event),
                due_at=_quiet_due(now, event, quiet), buttons=OPEN_EVENTS,
            )
    await uow.flush()
    return event


async def copy_event(
    uow: UnitOfWork, actor: Member, event_id: int, *, starts_at: datetime, now: datetime,
    quiet: Quiet | None = QUIET_HOURS,
) -> Event:
    """A new event like an existing one (same duration), at another start; no registrations copied."""
    source = await get_event(uow, event_id)
    require_coordinator(actor, source.municipality_id)
    return await create_event(
        uow, actor, municipality_id=source.municipality_id, type_code=source.event_type.code, title=source.title,
        starts_at=starts_at, ends_at=starts_at + (source.ends_at - source.starts_at), now=now, place=source.place,
        online_url=source.online_url, audience=source.audience, capacity=source.capacity,
        deficit_tags=source.deficit_tags or [], organiser_contact=source.organiser_contact,
        description=source.description, quiet=quiet,
    )


# ---- subscriptions and announcements ----------------------------------------------------------


async def subscriptions(uow: UnitOfWork, member_id: int) -> set[str]:
    """Codes of the event types the member is subscribed to."""
    rows = await uow.session.execute(
        select(EventType.code).join(Subscription, Subscription.type_id == EventType.id)
        .where(Subscription.member_id == member_id)
    )
    return {code for (code,) in rows}


async def set_subscriptions(uow: UnitOfWork, member: Member, codes: Iterable[str], *, now: datetime) -> set[str]:
    """Subscribe the member to exactly these event types."""
    wanted = set(codes)
    types = {event_type.code: event_type for event_type in await event_types(uow)}
    unknown = wanted - set(types)
    if unknown:
        raise ValueError(f"unknown event types: {sorted(unknown)}")
    existing = {
        subscription.type_id: subscription
        for subscription in (
            await uow.session.execute(select(Subscription).where(Subscription.member_id == member.id))
        ).scalars()
    }
    wanted_ids = {types[code].id for code in wanted}
    for type_id, subscription in existing.items():
        if type_id not in wanted_ids:
            await uow.session.delete(subscription)
    for type_id in wanted_ids - set(existing):
        uow.session.add(Subscription(member_id=member.id, type_id=type_id, created_at=now))
    await uow.flush()
    return wanted


async def announce_event(uow: UnitOfWork, event: Event, *, now: datetime, quiet: Quiet | None = QUIET_HOURS) -> int:
    """Tell the subscribers of the event's type (in its municipality, of its audience) about it."""
    rows = await uow.session.execute(
        select(Member).join(Subscription, Subscription.member_id == Member.id)
        .where(Subscription.type_id == event.type_id, Member.municipality_id == event.municipality_id)
        .order_by(Member.id)
    )
    count = 0
    for member in rows.scalars():
        if member.id == event.created_by or not audience_fits(event.audience, member):
            continue
        queued = await outbox.enqueue(
            uow, key=f"ev:{event.id}:ann:{member.id}", kind="event.announced", member_id=member.id,
            text=_fill(ANNOUNCEMENT, event), due_at=_quiet_due(now, event, quiet), buttons=OPEN_EVENTS,
        )
        count += queued is not None
    return count


# ---- members: register, withdraw, the waiting list --------------------------------------------


async def register(
    uow: UnitOfWork, member: Member, event_id: int, *, now: datetime, quiet: Quiet | None = QUIET_HOURS
) -> Registration:
    """«Иду»: a place if one is free, else the waiting list. Registering twice changes nothing."""
    event = await get_event(uow, event_id, lock=True)  # serialises the last free place
    if event.status != ACTIVE:
        raise Conflict("event cancelled")
    if event.starts_at <= now:
        raise Conflict("event has started")
    if member.municipality_id != event.municipality_id or not audience_fits(event.audience, member):
        raise Forbidden("not for this member")
    registration = await registration_of(uow, event.id, member.id)
    if registration is not None and registration.state in (GOING, WAITLIST):
        return registration
    if registration is None:
        registration = Registration(
            event_id=event.id, member_id=member.id, state=WITHDRAWN, seat_round=0, created_at=now, state_at=now
        )
        uow.session.add(registration)
    if (await seats(uow, event)).full:
        registration.state, registration.state_at = WAITLIST, now
        await uow.flush()
        return registration
    await _give_seat(uow, event, registration, now=now, quiet=quiet)
    return registration


async def withdraw(
    uow: UnitOfWork, member: Member, event_id: int, *, now: datetime, quiet: Quiet | None = QUIET_HOURS
) -> Registration | None:
    """«Не пойду»: leave the event or its waiting list; a freed place goes to the first who waits."""
    event = await get_event(uow, event_id, lock=True)
    registration = await registration_of(uow, event.id, member.id)
    if registration is None or registration.state == WITHDRAWN:
        return registration
    was_going = registration.state == GOING
    registration.state, registration.state_at = WITHDRAWN, now
    await outbox.cancel(uow, key_prefix=f"ev:{event.id}:rem:{member.id}:")
    await outbox.cancel(uow, key_prefix=f"ev:{event.id}:promo:{member.id}:")
    await uow.flush()
    if was_going and event.status == ACTIVE and event.starts_at > now:
        await promote_waitlist(uow, event, now=now, quiet=quiet)
    return registration


async def promote_waitlist(
    uow: UnitOfWork, event: Event, *, now: datetime, quiet: Quiet | None = QUIET_HOURS
) -> list[Registration]:
    """Give free places to the waiting list in order, and tell each promoted member."""
    promoted: list[Registration] = []
    if event.status != ACTIVE or event.starts_at <= now:
        return promoted
    free = (await seats(uow, event)).free
    waiting = (
        await uow.session.execute(
            select(Registration)
            .where(Registration.event_id == event.id, Registration.state == WAITLIST)
            .order_by(Registration.state_at, Registration.id)
        )
    ).scalars().all()
    for registration in waiting:
        if free is not None and free <= 0:
            break
        await _give_seat(uow, event, registration, now=now, quiet=quiet)
        await outbox.enqueue(
            uow, key=f"ev:{event.id}:promo:{registration.member_id}:{registration.seat_round}", kind="event.promoted",
            member_id=registration.member_id, text=_fill(PROMOTED, event), due_at=_quiet_due(now, event, quiet),
            buttons=OPEN_EVENTS,
        )
        promoted.append(registration)
        free = None if free is None else free - 1
    return promoted


async def _give_seat(
    uow: UnitOfWork, event: Event, registration: Registration, *, now: datetime, quiet: Quiet | None
) -> None:
    registration.state, registration.state_at = GOING, now
    registration.seat_round = (registration.seat_round or 0) + 1
    await uow.flush()
    await schedule_reminders(uow, event, registration, now=now, quiet=quiet)


async def _registered(uow: UnitOfWork, event_id: int, states: Sequence[str]) -> list[Registration]:
    rows = await uow.session.execute(
        select(Registration).where(Registration.event_id == event_id, Registration.state.in_(list(states)))
        .order_by(Registration.id)
    )
    return list(rows.scalars())


# ---- reminders -------------------------------------------------------------------------------


def reminder_times(event: Event, now: datetime, quiet: Quiet | None = QUIET_HOURS) -> list[tuple[int, datetime]]:
    """(minutes before, due moment) of each reminder still ahead, moved out of the quiet hours.

    A reminder whose moment has passed is skipped; one that the quiet hours would push past the
    start is skipped too; two that land on the same moment are sent once.
    """
    offsets = event.event_type.reminder_offsets if event.event_type else None
    result: list[tuple[int, datetime]] = []
    seen: set[datetime] = set()
    for minutes in sorted({int(m) for m in (offsets or [])}, reverse=True):
        due = event.starts_at - timedelta(minutes=minutes)
        if quiet is not None:
            due = outbox.outside_quiet_hours(due, zone_of(event.municipality).key, quiet)
        if due <= now or due >= event.starts_at or due in seen:
            continue
        seen.add(due)
        result.append((minutes, due))
    return result


def reminder_key(event: Event, member_id: int, seat_round: int, minutes: int) -> str:
    """The outbox key of one reminder (see the module docstring)."""
    return f"ev:{event.id}:rem:{member_id}:{event.version}.{seat_round}:{minutes}"


def reminder_text(event: Event, due: datetime) -> str:
    """What a reminder sent at `due` says."""
    return _fill(REMINDER, event, when=relative_when(event, due))


async def schedule_reminders(
    uow: UnitOfWork, event: Event, registration: Registration, *, now: datetime, quiet: Quiet | None = QUIET_HOURS
) -> int:
    """Queue the reminders of one participant; returns how many were queued."""
    count = 0
    for minutes, due in reminder_times(event, now, quiet):
        queued = await outbox.enqueue(
            uow, key=reminder_key(event, registration.member_id, registration.seat_round, minutes),
            kind="event.reminder", member_id=registration.member_id, text=reminder_text(event, due), due_at=due,
            buttons=OPEN_EVENTS,
        )
        count += queued is not None
    return count


# ---- after the event -------------------------------------------------------------------------


async def queue_followups(uow: UnitOfWork, *, now: datetime, quiet: Quiet | None = QUIET_HOURS) -> int:
    """For events that ended (recently), ask every participant «Вы были на мероприятии?»."""
    ended = (
        await uow.session.execute(
            select(Event).where(
                Event.status == ACTIVE, Event.ends_at <= now, Event.ends_at > now - FOLLOWUP_HORIZON,
                Event.followup_queued_at.is_(None),
            ).with_for_update(skip_locked=True)
        )
    ).scalars().all()
    count = 0
    for event in ended:
        due = now
        if quiet is not None:
            due = outbox.outside_quiet_hours(now, zone_of(event.municipality).key, quiet)
        for registration in await _registered(uow, event.id, (GOING,)):
            queued = await outbox.enqueue(
                uow, key=f"ev:{event.id}:after:{registration.member_id}", kind="event.after",
                member_id=registration.member_id, text=_fill(AFTER, event), due_at=due, buttons=OPEN_FEEDBACK,
            )
            count += queued is not None
        event.followup_queued_at = now
    await uow.flush()
    return count


async def pending_feedback(uow: UnitOfWork, member: Member, now: datetime) -> list[Event]:
    """Ended events the member was going to and has not answered about yet (came? feedback?), oldest first."""
    rows = await uow.session.execute(
        select(Event)
        .join(Registration, Registration.event_id == Event.id)
        .outerjoin(EventFeedback, and_(EventFeedback.event_id == Event.id, EventFeedback.member_id == member.id))
        .where(
            Registration.member_id == member.id, Registration.state == GOING,
            or_(Registration.attended.is_(None), and_(Registration.attended.is_(True), EventFeedback.id.is_(None))),
            Event.status == ACTIVE, Event.ends_at <= now, Event.ends_at > now - FEEDBACK_WINDOW,
        )
        .order_by(Event.ends_at, Event.id)
    )
    return list(rows.scalars())


async def record_attendance(
    uow: UnitOfWork, member: Member, event_id: int, attended: bool, *, now: datetime
) -> Registration:
    """The answer to «Вы были на мероприятии?»."""
    event = await get_event(uow, event_id)
    registration = await registration_of(uow, event_id, member.id)
    if registration is None or registration.state != GOING:
        raise NotFound("registration")
    if event.ends_at > now:
        raise Conflict("event not over")
    registration.attended = attended
    await uow.flush()
    return registration


async def feedback_deficit_groups(
    uow: UnitOfWork, member: Member, event: Event, *, deficits: DeficitSource | None = None
) -> list[str]:
    """The deficit groups the event addressed that this member had reported (asked about afterwards)."""
    groups = await deficit_groups_of(uow, member, deficits)
    return [tag for tag in event.deficit_tags or [] if tag in groups]


async def save_feedback(
    uow: UnitOfWork,
    member: Member,
    event_id: int,
    *,
    answers: dict[str, str],
    now: datetime,
    comment: str | None = None,
    deficit_groups: Sequence[str] = (),
    deficit_still_strong: str | None = None,
) -> EventFeedback:
    """Store the post-event feedback (once per participant; answering again replaces it)."""
    registration = await registration_of(uow, event_id, member.id)
    if registration is None or registration.attended is not True:
        raise Conflict("feedback only from those who came")
    asked = feedback_questions(await uow.session.get(Event, event_id))
    for question, option in answers.items():
        if question not in asked or option not in FEEDBACK_SCALE:
            raise ValueError(f"bad feedback answer {question}={option}")
    if deficit_still_strong is not None and deficit_still_strong not in DEFICIT_ANSWERS:
        raise ValueError(f"bad deficit answer {deficit_still_strong}")
    feedback = (
        await uow.session.execute(
            select(EventFeedback).where(EventFeedback.event_id == event_id, EventFeedback.member_id == member.id)
        )
    ).scalar_one_or_none()
    if feedback is None:
        feedback = EventFeedback(event_id=event_id, member_id=member.id, created_at=now)
        uow.session.add(feedback)
    feedback.answers = dict(answers)
    feedback.comment = (comment or "").strip() or None
    feedback.deficit_groups = list(deficit_groups)
    feedback.deficit_still_strong = deficit_still_strong
    await uow.flush()
    return feedback


@dataclass
class Attendance:
    """An event's numbers for the digest."""

    going: int = 0
    waitlist: int = 0
    attended: int = 0
    absent: int = 0
    unknown: int = 0
    feedback: int = 0
    answers: dict[str, dict[str, int]] = field(default_factory=dict)
    deficit: dict[str, int] = field(default_factory=dict)


async def attendance(uow: UnitOfWork, event_id: int) -> Attendance:
    """Registrations, attendance and feedback counts of one event (no names)."""
    result = Attendance()
    for registration in await _registered(uow, event_id, (GOING, WAITLIST)):
        if registration.state == WAITLIST:
            result.waitlist += 1
            continue
        result.going += 1
        if registration.attended is True:
            result.attended += 1
        elif registration.attended is False:
            result.absent += 1
        else:
            result.unknown += 1
    rows = await uow.session.execute(select(EventFeedback).where(EventFeedback.event_id == event_id))
    for feedback in rows.scalars():
        result.feedback += 1
        for question, option in (feedback.answers or {}).items():
            bucket = result.answers.setdefault(question, {})
            bucket[option] = bucket.get(option, 0) + 1
        if feedback.deficit_still_strong:
            result.deficit[feedback.deficit_still_strong] = result.deficit.get(feedback.deficit_still_strong, 0) + 1
    return result


# ---- iCalendar -------------------------------------------------------------------------------


def event_ics(event: Event, *, now: datetime) -> bytes:
    """An .ics file with the event, to add it to a calendar."""
    from icalendar import Calendar
    from icalendar import Event as IcsEvent

    calendar = Calendar()
    calendar.add("prodid", "-//MMS bot//events//RU")
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    entry = IcsEvent()
    entry.add("uid", f"event-{event.id}@mms-bot")
    entry.add("dtstamp", now.astimezone(timezone.utc))
    entry.add("dtstart", event.starts_at.astimezone(timezone.utc))
    entry.add("dtend", event.ends_at.astimezone(timezone.utc))
    entry.add("summary", event.title)
    entry.add("sequence", event.version - 1)
    entry.add("status", "CANCELLED" if event.status == CANCELLED else "CONFIRMED")
    if event.place:
        entry.add("location", event.place)
    elif event.online_url:
        entry.add("location", event.online_url)
    if event.online_url:
        entry.add("url", event.online_url)
    lines = [event.description] if event.description else []
    if event.organiser_contact:
        lines.append(f"Организатор: {event.organiser_contact}")
    if lines:
        entry.add("description", "\n".join(lines))
    calendar.add_component(entry)
    return calendar.to_ical()


def ics_filename(event: Event) -> str:
    return f"event-{event.id}.ics"


# ---- import from CSV or iCalendar -------------------------------------------------------------


@dataclass(frozen=True)
class ImportProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class EventImportError(ValueError):
    """The file has invalid rows: nothing was imported; `problems` lists each by line."""

    def __init__(self, problems: Sequence[ImportProblem]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = list(problems)


@dataclass
class EventImportReport:
    created: int = 0
    skipped: int = 0  # already imported (same uid) or cancelled in the source calendar


@dataclass
class _Row:
    line: int
    fields: dict[str, Any]


CSV_COLUMNS = {
    "type": "type", "тип": "type",
    "title": "title", "название": "title",
    "start": "start", "начало": "start",
    "end": "end", "окончание": "end", "конец": "end",
    "place": "place", "место": "place",
    "online_url": "online_url", "url": "online_url", "ссылка": "online_url",
    "audience": "audience", "аудитория": "audience",
    "capacity": "capacity", "мест": "capacity", "места": "capacity",
    "deficits": "deficits", "deficit_tags": "deficits", "дефициты": "deficits",
    "organiser": "organiser", "organizer": "organiser", "организатор": "organiser", "контакт": "organiser",
    "description": "description", "описание": "description",
    "uid": "uid",
}
AUDIENCE_WORDS = {
    "young_teachers": Audience.YOUNG_TEACHERS, "молодые педагоги": Audience.YOUNG_TEACHERS,
    "mentors": Audience.MENTORS, "наставники": Audience.MENTORS,
    "both": Audience.BOTH, "все": Audience.BOTH, "молодые педагоги и наставники": Audience.BOTH,
    "preschool": Audience.PRESCHOOL, "педагоги доу": Audience.PRESCHOOL,
}


async def import_events(
    uow: UnitOfWork, path: Path | str, municipality_code: str, now: datetime, *, quiet: Quiet | None = QUIET_HOURS
) -> EventImportReport:
    """Import events from a CSV or an .ics file into a municipality: all rows or none.

    CSV (comma or semicolon separated, a header row): type (code or name), title, start, end
    (local time 'DD.MM.YYYY HH:MM' or ISO; end may be just 'HH:MM'), place, online_url, audience,
    capacity, deficits (codes separated by commas), organiser, description, uid (optional).
    iCalendar: VEVENTs with SUMMARY, DTSTART, DTEND or DURATION, LOCATION, URL, DESCRIPTION,
    CATEGORIES or X-MMS-TYPE (type), X-MMS-AUDIENCE, X-MMS-CAPACITY, X-MMS-DEFICITS, ORGANIZER.
    Invalid rows raise EventImportError listing each by line; rows already imported are skipped.
    """
    path = Path(path)
    municipality = await uow.reference.municipality_by_code(municipality_code)
    if municipality is None:
        raise EventImportError([ImportProblem(0, f"unknown municipality {municipality_code!r}")])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1251")
    if path.suffix.lower() in (".ics", ".ical", ".ifb") or text.lstrip().startswith("BEGIN:VCALENDAR"):
        rows, problems = _read_ics(text, municipality)
    elif path.suffix.lower() in (".csv", ".txt"):
        rows, problems = _read_csv(text, municipality)
    else:
        raise EventImportError([ImportProblem(0, "expected a .csv or an .ics file")])

    types = {event_type.code: event_type for event_type in await event_types(uow)}
    names = {event_type.name.strip("«»").casefold(): event_type.code for event_type in types.values()}
    report = EventImportReport()
    ready: list[_Row] = []
    seen_uids: dict[str, int] = {}
    for row in rows:
        fields = row.fields
        if fields.get("skip"):
            report.skipped += 1
            continue
        type_code = _type_code(fields.get("type"), types, names, default=fields.get("default_type"))
        if type_code is None:
            problems.append(ImportProblem(row.line, f"unknown event type {fields.get('type')!r}"))
            continue
        fields["type_code"] = type_code
        fields["audience"] = fields.get("audience") or types[type_code].default_audience
        probe = Event(
            title=fields.get("title") or "", starts_at=fields["starts_at"], ends_at=fields["ends_at"],
            place=fields.get("place"), online_url=fields.get("online_url"), audience=fields["audience"],
            capacity=fields.get("capacity"), deficit_tags=fields.get("deficit_tags") or [],
        )
        try:
            _validate(probe, now, creating=True)
        except EventInvalid as error:
            problems.append(ImportProblem(row.line, str(error)))
            continue
        uid = fields.get("uid") or _row_uid(type_code, probe)
        fields["uid"] = uid
        if uid in seen_uids:
            problems.append(ImportProblem(row.line, f"the same event as line {seen_uids[uid]}"))
            continue
        seen_uids[uid] = row.line
        ready.append(row)
    if problems:
        raise EventImportError(sorted(problems, key=lambda problem: problem.line))

    existing = set()
    if seen_uids:
        found = await uow.session.execute(
            select(Event.source_uid).where(
                Event.municipality_id == municipality.id, Event.source_uid.in_(list(seen_uids))
            )
        )
        existing = {uid for (uid,) in found}
    for row in ready:
        fields = row.fields
        if fields["uid"] in existing:
            report.skipped += 1
            continue
        await create_event(
            uow, None, municipality_id=municipality.id, type_code=fields["type_code"], title=fields["title"],
            starts_at=fields["starts_at"], ends_at=fields["ends_at"], now=now, place=fields.get("place"),
            online_url=fields.get("online_url"), audience=fields["audience"], capacity=fields.get("capacity"),
            deficit_tags=fields.get("deficit_tags") or [], organiser_contact=fields.get("organiser") or "",
            description=fields.get("description") or "", source_uid=fields["uid"], quiet=quiet,
        )
        report.created += 1
    return report


def _type_code(value: str | None, types: dict, names: dict, *, default: str | None) -> str | None:
    for candidate in [value] if value else []:
        folded = candidate.strip().strip("«»").casefold()
        if folded in types:
            return folded
        if folded in names:
            return names[folded]
        for name, code in names.items():  # "Умные каникулы" matches «Умные каникулы»
            if folded and (folded in name or name in folded):
                return code
    return default if value is None or not value.strip() else None


def _row_uid(type_code: str, event: Event) -> str:
    digest = hashlib.sha1(f"{type_code}|{event.title.strip().casefold()}|{event.starts_at.isoformat()}".encode())
    return f"row-{digest.hexdigest()[:20]}"


def _cell_problems(line: int, fields: dict[str, Any], raw: dict[str, str], problems: list[ImportProblem]) -> bool:
    """Parse the text cells shared by CSV rows and ICS x-properties; False if something is wrong."""
    ok = True
    audience = (raw.get("audience") or "").strip().casefold()
    if audience:
        if audience not in AUDIENCE_WORDS:
            problems.append(ImportProblem(line, f"unknown audience {raw['audience']!r} "
                                                f"(use {', '.join(AUDIENCES)})"))
            ok = False
        else:
            fields["audience"] = AUDIENCE_WORDS[audience].value
    capacity = (raw.get("capacity") or "").strip()
    if capacity:
        if not capacity.isdigit() or int(capacity) < 1:
            problems.append(ImportProblem(line, f"capacity must be a positive whole number, not {capacity!r}"))
            ok = False
        else:
            fields["capacity"] = int(capacity)
    deficits = [code.strip() for code in re.split(r"[,;\s]+", raw.get("deficits") or "") if code.strip()]
    unknown = [code for code in deficits if code not in DEFICIT_CODES]
    if unknown:
        problems.append(ImportProblem(line, f"unknown deficit groups {', '.join(unknown)} "
                                            f"(use {', '.join(sorted(DEFICIT_CODES))})"))
        ok = False
    fields["deficit_tags"] = deficits
    return ok


def _read_csv(text: str, municipality: Municipality) -> tuple[list[_Row], list[ImportProblem]]:
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[_Row] = []
    problems: list[ImportProblem] = []
    try:
        header = next(reader)
    except StopIteration:
        return rows, [ImportProblem(1, "the file is empty")]
    columns = [CSV_COLUMNS.get(name.strip().casefold()) for name in header]
    unknown = [name for name, column in zip(header, columns) if column is None and name.strip()]
    if unknown:
        problems.append(ImportProblem(1, f"unknown columns {', '.join(unknown)}"))
    for required in ("title", "start", "end"):
        if required not in columns:
            problems.append(ImportProblem(1, f"no column {required!r}"))
    if problems:
        return rows, problems
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.append(ImportProblem(line, f"unreadable row: {error}"))
            break
        if not any(cell.strip() for cell in cells):
            continue
        raw = {column: cell.strip() for column, cell in zip(columns, cells) if column}
        fields: dict[str, Any] = {
            "type": raw.get("type") or "", "title": raw.get("title") or "", "place": raw.get("place") or None,
            "online_url": raw.get("online_url") or None, "organiser": raw.get("organiser") or "",
            "description": raw.get("description") or "", "uid": raw.get("uid") or None,
        }
        ok = _cell_problems(line, fields, raw, problems)
        if not fields["type"]:
            problems.append(ImportProblem(line, "no event type"))
            ok = False
        try:
            fields["starts_at"] = parse_local(raw.get("start") or "", municipality)
        except ValueError:
            problems.append(ImportProblem(line, f"start {raw.get('start')!r}: use DD.MM.YYYY HH:MM"))
            ok = False
        else:
            end = raw.get("end") or ""
            try:
                if re.fullmatch(r"\s*\d{1,2}[:.]\d{2}\s*", end):
                    day = local(fields["starts_at"], municipality).date()
                    moment = datetime.combine(day, parse_clock(end), tzinfo=zone_of(municipality))
                    fields["ends_at"] = moment.astimezone(timezone.utc)
                else:
                    fields["ends_at"] = parse_local(end, municipality)
            except ValueError:
                problems.append(ImportProblem(line, f"end {end!r}: use HH:MM or DD.MM.YYYY HH:MM"))
                ok = False
        if ok:
            rows.append(_Row(line, fields))
    return rows, problems


def _read_ics(text: str, municipality: Municipality) -> tuple[list[_Row], list[ImportProblem]]:
    from icalendar import Calendar

    lines = [number for number, line in enumerate(text.splitlines(), start=1) if line.strip().upper() == "BEGIN:VEVENT"]
    try:
        calendars = Calendar.from_ical(text, multiple=True)
    except ValueError as error:
        return [], [ImportProblem(1, f"not a valid iCalendar file: {error}")]
    components = [component for calendar in calendars for component in calendar.walk("VEVENT")]
    if len(components) != len(lines):  # nested or odd layout: fall back to counting events
        lines = list(range(1, len(components) + 1))
    rows: list[_Row] = []
    problems: list[ImportProblem] = []
    zone = zone_of(municipality)
    for line, component in zip(lines, components):
        status = str(component.get("status") or "").upper()
        if status == "CANCELLED":
            rows.append(_Row(line, {"skip": True}))
            continue
        location = str(component.get("location") or "").strip()
        url = str(component.get("url") or "").strip()
        if location.startswith(("http://", "https://")) and not url:
            location, url = "", location
        categories = component.get("categories")
        category_values: list[str] = []
        for item in categories if isinstance(categories, list) else [categories] if categories else []:
            category_values += [str(value) for value in getattr(item, "cats", [item])]
        organiser = str(component.get("organizer") or component.get("contact") or "").strip()
        organiser = re.sub(r"^mailto:", "", organiser, flags=re.IGNORECASE)
        fields: dict[str, Any] = {
            "type": str(component.get("x-mms-type") or (category_values[0] if category_values else "")),
            "default_type": "seminar",
            "title": str(component.get("summary") or "").strip(),
            "place": location or None, "online_url": url or None,
            "description": str(component.get("description") or "").strip(), "organiser": organiser,
            "uid": str(component.get("uid") or "").strip() or None,
        }
        raw = {
            "audience": str(component.get("x-mms-audience") or ""),
            "capacity": str(component.get("x-mms-capacity") or ""),
            "deficits": str(component.get("x-mms-deficits") or ""),
        }
        ok = _cell_problems(line, fields, raw, problems)
        start = component.get("dtstart")
        end = component.get("dtend")
        duration = component.get("duration")
        start_value = start.dt if start is not None else None
        if not isinstance(start_value, datetime):
            problems.append(ImportProblem(line, "DTSTART needs a date and a time (all-day events are not supported)"))
            continue
        fields["starts_at"] = _aware(start_value, zone)
        if end is not None and isinstance(end.dt, datetime):
            fields["ends_at"] = _aware(end.dt, zone)
        elif duration is not None:
            fields["ends_at"] = fields["starts_at"] + duration.dt
        else:
            problems.append(ImportProblem(line, "DTEND (a date and a time) or DURATION is required"))
            ok = False
        if ok:
            rows.append(_Row(line, fields))
    return rows, problems


def _aware(moment: datetime, zone: ZoneInfo) -> datetime:
    """A floating (naive) iCalendar time is the municipality's local time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(timezone.utc)
