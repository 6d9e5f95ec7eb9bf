"""Mentoring use cases: profiles, requests, matching, proposals, pairs, meetings, nudges.

Every action that changes who is paired with whom first locks the municipality row and then
the mentee's and mentor's member rows (`SELECT ... FOR UPDATE` on PostgreSQL, in that order, so
two coordinators and a mentor acting at once queue instead of deadlocking; SQLite serialises
writers with BEGIN IMMEDIATE). After the locks the proposal or pair is read again, so a stale
action gets a `Conflict` whose message is one of the reason codes below, and the stored pairs
stay consistent: never a mentee with two active mentors, never a mentor over capacity.

Services never commit. Checks come before changes, so a `Conflict` leaves nothing half done.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from storage.models import AuditRecord, Member, Municipality, Role
from storage.models_mentoring import (
    MentorExclusion,
    MentorMeeting,
    MentorPair,
    MentorProfile,
    MentorProposal,
    MentorRequest,
)
from storage.models_surveys import DeficitItem, DeficitReport
from storage.services import matching
from storage.services.errors import Conflict, Forbidden, NotFound
from storage.services.members import require_coordinator
from storage.services.outbox import enqueue, outside_quiet_hours, parse_quiet_hours
from storage.taxonomy import DeficitGroup, HelpDirection
from storage.unit_of_work import UnitOfWork

# ---- vocabularies (codes; the dialogs hold the Russian labels) ------------------------------

CATEGORIES = ("highest", "first", "none")
FORMATS = ("in_school", "away", "online")
ACTIVITIES = (
    "consultation", "lesson_visit", "open_lesson", "joint_planning", "master_class", "contest_prep", "iom", "other",
)
END_REASONS = ("goals_met", "participants", "reassigned", "other")
MAX_CAPACITY = 10
MIN_DURATION, MAX_DURATION = 5, 600
MAX_NOTE = 1000
MAX_MESSAGE = 1000

EDIT_WINDOW = timedelta(days=7)
UNMATCHED_DAYS = 7
MENTEE_NUDGE_DELAY_DAYS = 3
DEFAULT_QUIET_HOURS = "22:00-08:00"

# Proposal states.
PROPOSED, APPROVED, REJECTED = "proposed", "approved", "rejected"
ACCEPTED, DECLINED, WITHDRAWN = "accepted", "declined", "withdrawn"
LIVE = (PROPOSED, APPROVED)

# Request states.
OPEN, MATCHED, CANCELLED = "open", "matched", "cancelled"

# Meeting confirmation.
PENDING, YES, NO = "pending", "yes", "no"

# Conflict reason codes (the message of every `Conflict` raised here).
MENTOR_FULL = "mentor_full"
MENTEE_PAIRED = "mentee_paired"
PROPOSAL_WITHDRAWN = "proposal_withdrawn"
PROPOSAL_ANSWERED = "proposal_answered"
PROPOSAL_NOT_PENDING = "proposal_not_pending"
PROPOSAL_NOT_APPROVED = "proposal_not_approved"
PAIR_ENDED = "pair_ended"
NO_ACTIVE_PAIR = "no_active_pair"
SAME_MENTOR = "same_mentor"
EXCLUDED = "excluded"
NO_NETWORK = "mentor_no_network"
NOT_A_MENTEE = "not_a_mentee"
NOT_A_MENTOR = "not_a_mentor"
MEETING_IN_FUTURE = "meeting_in_future"
MEETING_BEFORE_PAIR = "meeting_before_pair"
EDIT_WINDOW_PASSED = "edit_window_passed"
ALREADY_CONFIRMED = "already_confirmed"

# Outbox texts. They are the only user-facing words in this module: notifications are queued
# here, inside the same transaction as the change they announce.
NOTICE_PROPOSAL = (
    "Координатор предлагает вам наставляемого: {mentee}{org}. "
    "Откройте предложение, чтобы принять его или отказаться."
)
NOTICE_NEXT = (
    "Наставник отказался от наставляемого ({mentee}). Бот предложил следующего наставника: {mentor}. "
    "Одобрите или измените предложение."
)
NOTICE_NO_NEXT = (
    "Наставник отказался от наставляемого ({mentee}), а подходящих свободных наставников больше нет. "
    "Подберите пару вручную."
)
NOTICE_PAIR_MENTOR = "Пара создана: ваш наставляемый — {other}{org}.\n{contacts}\n\n{first}"
NOTICE_PAIR_MENTEE = "У вас есть наставник: {other}{org}.\n{contacts}\n\n{first}"
NOTICE_FIRST_MEETING = (
    "Предлагаем встретиться в ближайшие 7 дней: познакомиться, обсудить, с чем нужна помощь, "
    "и наметить план (ИОМ). Через бота можно отправить первое сообщение."
)
NOTICE_NO_CONTACTS = "Контакты не указаны: напишите через бота."
NOTICE_PAIR_ENDED = "Координатор завершил пару наставничества ({other})."
NOTICE_CONFIRM = "Наставник записал встречу {day}. Подтвердите, пожалуйста, что она состоялась."
NOTICE_DENIED = "{mentee} отметил(а), что встречи {day} не было. Проверьте запись."
NOTICE_IDLE_MENTOR = "Наставляемый {other}: встреч не было уже {days} дн. Договоритесь о встрече и запишите её в боте."
NOTICE_IDLE_MENTEE = (
    "Встреч с наставником ({other}) не было уже {days} дн. Напишите наставнику, чтобы договориться о встрече."
)
NOTICE_UNMATCHED = "{mentee} ждёт наставника с {day}. Запустите подбор или создайте пару вручную."
NOTICE_MESSAGE = "Сообщение от {sender} (наставничество):\n\n{text}"
LABEL_PROPOSALS = "Открыть предложение"
LABEL_MATCHING = "🧩 Подбор наставников"
LABEL_LOG = "🗓 Записать встречу"
LABEL_MENTEE = "🤝 Наставник"
LABEL_MENTOR = "👥 Мои наставляемые"


# ---- small helpers --------------------------------------------------------------------------


def _zone(municipality: Municipality | None) -> ZoneInfo:
    return ZoneInfo(municipality.timezone if municipality else "Europe/Moscow")


def local_date(moment: datetime, municipality: Municipality | None) -> date:
    """The calendar date of a moment in the municipality's time zone."""
    return moment.astimezone(_zone(municipality)).date()


def _audit(uow: UnitOfWork, now: datetime, action: str, actor: Member | None, subject: str, **details) -> None:
    uow.session.add(
        AuditRecord(at=now, action=action, actor=f"member:{actor.id}" if actor else "system", subject=subject,
                    details=details)
    )


def _org(member: Member) -> str:
    return f", {member.organisation.name}" if member.organisation else ""


async def _member(uow: UnitOfWork, member_id: int) -> Member:
    member = await uow.members.get(member_id)
    if member is None:
        raise NotFound("member")
    return member


async def _members(uow: UnitOfWork, ids: Sequence[int]) -> list[Member]:
    """Members by id, in the order given (missing ones skipped), in one query."""
    if not ids:
        return []
    found = {m.id: m for m in (await uow.session.execute(select(Member).where(Member.id.in_(list(ids))))).scalars()}
    return [found[i] for i in ids if i in found]


async def _lock(uow: UnitOfWork, municipality_id: int | None, member_ids: Iterable[int] = ()) -> None:
    """Row locks in a fixed order: the municipality, then members by id (no-ops on SQLite)."""
    if municipality_id is not None:
        await uow.session.execute(
            select(Municipality.id).where(Municipality.id == municipality_id).with_for_update()
        )
    ids = sorted(set(member_ids))
    if ids:
        await uow.session.execute(select(Member.id).where(Member.id.in_(ids)).order_by(Member.id).with_for_update())


async def _fresh_proposal(uow: UnitOfWork, proposal_id: int) -> MentorProposal:
    proposal = await uow.session.get(MentorProposal, proposal_id, with_for_update=True, populate_existing=True)
    if proposal is None:
        raise NotFound("proposal")
    return proposal


async def _fresh_pair(uow: UnitOfWork, pair_id: int) -> MentorPair:
    pair = await uow.session.get(MentorPair, pair_id, with_for_update=True, populate_existing=True)
    if pair is None:
        raise NotFound("pair")
    return pair


def _is_mentee(member: Member) -> bool:
    return member.role == Role.TEACHER


def _is_mentor(member: Member) -> bool:
    return member.role == Role.MENTOR and member.mentor_confirmed


async def _coordinators(uow: UnitOfWork, municipality_id: int) -> list[Member]:
    return await uow.members.in_municipality(municipality_id, role=Role.COORDINATOR)


async def _due(uow: UnitOfWork, now: datetime, municipality_id: int | None, quiet: str = DEFAULT_QUIET_HOURS):
    municipality = await uow.reference.municipality(municipality_id) if municipality_id else None
    return outside_quiet_hours(now, municipality.timezone if municipality else "Europe/Moscow",
                               parse_quiet_hours(quiet))


# ---- mentor profiles ------------------------------------------------------------------------


async def mentor_profile(uow: UnitOfWork, member_id: int) -> MentorProfile | None:
    """A mentor's profile, if they filled it."""
    return await uow.session.get(MentorProfile, member_id)


def _clean_phone(phone: str | None) -> str | None:
    if phone is None:
        return None
    phone = phone.strip()
    return phone[:32] or None


async def save_mentor_profile(
    uow: UnitOfWork,
    mentor: Member,
    *,
    category: str,
    strengths: Iterable[str],
    help_directions: Iterable[str],
    capacity: int,
    accepts_network: bool,
    share_link: bool,
    contact_phone: str | None,
    now: datetime,
) -> MentorProfile:
    """Create or replace the mentor's profile (a mentor awaiting confirmation may fill it too)."""
    if mentor.role != Role.MENTOR:
        raise Forbidden("mentor role required")
    strengths = sorted(set(strengths))
    help_directions = sorted(set(help_directions))
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category}")
    if not set(strengths) <= {g.value for g in DeficitGroup}:
        raise ValueError("unknown deficit group")
    if not set(help_directions) <= {h.value for h in HelpDirection}:
        raise ValueError("unknown help direction")
    if not 0 <= capacity <= MAX_CAPACITY:
        raise ValueError("capacity out of range")
    profile = await mentor_profile(uow, mentor.id)
    if profile is None:
        profile = MentorProfile(member_id=mentor.id, created_at=now)
        uow.session.add(profile)
    profile.category = category
    profile.strengths = strengths
    profile.help_directions = help_directions
    profile.capacity = capacity
    profile.accepts_network = accepts_network
    profile.share_link = share_link
    profile.contact_phone = _clean_phone(contact_phone)
    profile.updated_at = now
    await uow.flush()
    return profile


# ---- mentee requests ------------------------------------------------------------------------


async def open_request(uow: UnitOfWork, mentee_id: int) -> MentorRequest | None:
    """The mentee's open request for a mentor, if any."""
    return (
        await uow.session.execute(
            select(MentorRequest)
            .where(MentorRequest.mentee_id == mentee_id, MentorRequest.state == OPEN)
            .order_by(MentorRequest.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def latest_request(uow: UnitOfWork, mentee_id: int) -> MentorRequest | None:
    """The mentee's most recent request in any state (it holds what they agreed to share)."""
    return (
        await uow.session.execute(
            select(MentorRequest).where(MentorRequest.mentee_id == mentee_id).order_by(MentorRequest.id.desc()).limit(1)
        )
    ).scalar_one_or_none()


async def ask_for_mentor(
    uow: UnitOfWork,
    mentee: Member,
    *,
    deficit_groups: Iterable[str],
    share_link: bool,
    contact_phone: str | None,
    now: datetime,
) -> MentorRequest:
    """Ask for a mentor (or update the open request); refused when the mentee already has one."""
    if not _is_mentee(mentee) or mentee.municipality_id is None:
        raise Forbidden("only a teacher can ask for a mentor")
    groups = sorted(set(deficit_groups))
    if not set(groups) <= {g.value for g in DeficitGroup}:
        raise ValueError("unknown deficit group")
    if await active_pair_of_mentee(uow, mentee.id) is not None:
        raise Conflict(MENTEE_PAIRED)
    request = await open_request(uow, mentee.id)
    if request is None:
        request = MentorRequest(mentee_id=mentee.id, municipality_id=mentee.municipality_id, state=OPEN,
                                created_at=now)
        uow.session.add(request)
    request.deficit_groups = groups
    request.share_link = share_link
    request.contact_phone = _clean_phone(contact_phone)
    await uow.flush()
    return request


async def cancel_request(uow: UnitOfWork, mentee: Member, *, now: datetime) -> bool:
    """Withdraw the open request and any live proposals for the mentee; False if there was none."""
    request = await open_request(uow, mentee.id)
    if request is None:
        return False
    await _lock(uow, request.municipality_id, [mentee.id])
    request.state = CANCELLED
    request.closed_at = now
    await _withdraw_live(uow, mentee_id=mentee.id, reason="request_cancelled")
    await uow.flush()
    return True


async def mentee_deficit_groups(uow: UnitOfWork, mentee_ids: Sequence[int]) -> dict[int, frozenset[str]]:
    """Deficit groups of each mentee, as used for matching.

    The groups the mentee stated when asking for a mentor (their newest request) together with
    those of their newest deficit report (storage/models_surveys.py: items of kind "deficit_group").
    """
    if not mentee_ids:
        return {}
    ids = list(mentee_ids)
    groups: dict[int, set[str]] = {mentee_id: set() for mentee_id in ids}
    stated = (
        await uow.session.execute(
            select(MentorRequest.mentee_id, MentorRequest.deficit_groups)
            .where(MentorRequest.mentee_id.in_(ids))
            .order_by(MentorRequest.id)
        )
    ).all()
    for mentee_id, codes in stated:
        groups[mentee_id] = set(codes or ())
    latest: dict[int, int] = {}
    for member_id, report_id in (
        await uow.session.execute(
            select(DeficitReport.member_id, DeficitReport.id)
            .where(DeficitReport.member_id.in_(ids))
            .order_by(DeficitReport.created_on, DeficitReport.id)
        )
    ).all():
        latest[member_id] = report_id
    if latest:
        member_of = {report_id: member_id for member_id, report_id in latest.items()}
        for report_id, code in (
            await uow.session.execute(
                select(DeficitItem.report_id, DeficitItem.code).where(
                    DeficitItem.report_id.in_(list(member_of)), DeficitItem.kind == "deficit_group"
                )
            )
        ).all():
            groups[member_of[report_id]].add(code)
    return {mentee_id: frozenset(codes) for mentee_id, codes in groups.items()}


# ---- reading pairs, proposals, loads --------------------------------------------------------


async def active_pair_of_mentee(uow: UnitOfWork, mentee_id: int) -> MentorPair | None:
    """The mentee's current pair, if any."""
    return (
        await uow.session.execute(
            select(MentorPair)
            .where(MentorPair.mentee_id == mentee_id, MentorPair.ended_at.is_(None))
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def pairs_of(uow: UnitOfWork, member: Member, *, active_only: bool = False) -> list[MentorPair]:
    """Pairs the member is in (as mentor or mentee), active first, newest first."""
    query = select(MentorPair).where(or_(MentorPair.mentor_id == member.id, MentorPair.mentee_id == member.id))
    if active_only:
        query = query.where(MentorPair.ended_at.is_(None))
    query = query.order_by(MentorPair.started_at.desc(), MentorPair.id.desc())
    rows = list((await uow.session.execute(query)).scalars())
    return sorted(rows, key=lambda pair: pair.ended_at is not None)


async def get_pair(uow: UnitOfWork, member: Member, pair_id: int) -> MentorPair:
    """A pair seen by one of its members or a coordinator of its municipality."""
    pair = await uow.session.get(MentorPair, pair_id)
    if pair is None:
        raise NotFound("pair")
    if member.id not in (pair.mentor_id, pair.mentee_id):
        require_coordinator(member, pair.municipality_id)
    return pair


async def _active_count(uow: UnitOfWork, mentor_id: int) -> int:
    return (
        await uow.session.execute(
            select(func.count(MentorPair.id)).where(MentorPair.mentor_id == mentor_id, MentorPair.ended_at.is_(None))
        )
    ).scalar_one()


async def _capacity(uow: UnitOfWork, mentor_id: int) -> int:
    profile = await mentor_profile(uow, mentor_id)
    return profile.capacity if profile is not None else 1


async def _approved_waiting(uow: UnitOfWork, mentor_id: int, *, besides: int | None = None) -> int:
    query = select(func.count(MentorProposal.id)).where(
        MentorProposal.mentor_id == mentor_id, MentorProposal.state == APPROVED
    )
    if besides is not None:
        query = query.where(MentorProposal.id != besides)
    return (await uow.session.execute(query)).scalar_one()


async def _excluded(uow: UnitOfWork, a: int, b: int) -> bool:
    row = (
        await uow.session.execute(
            select(MentorExclusion.id).where(
                or_(
                    (MentorExclusion.member_id == a) & (MentorExclusion.excluded_id == b),
                    (MentorExclusion.member_id == b) & (MentorExclusion.excluded_id == a),
                )
            ).limit(1)
        )
    ).first()
    return row is not None


async def _withdraw_live(
    uow: UnitOfWork, *, mentee_id: int | None = None, mentor_id: int | None = None, reason: str,
    besides: int | None = None,
) -> list[MentorProposal]:
    query = select(MentorProposal).where(MentorProposal.state.in_(LIVE))
    if mentee_id is not None:
        query = query.where(MentorProposal.mentee_id == mentee_id)
    if mentor_id is not None:
        query = query.where(MentorProposal.mentor_id == mentor_id)
    if besides is not None:
        query = query.where(MentorProposal.id != besides)
    rows = list((await uow.session.execute(query.execution_options(populate_existing=True))).scalars())
    for proposal in rows:
        proposal.state = WITHDRAWN
        proposal.close_reason = reason
    return rows


async def proposals_in(uow: UnitOfWork, actor: Member, municipality_id: int, *, states: Sequence[str] = LIVE
                       ) -> list[MentorProposal]:
    """Proposals of a municipality in the given states, for its coordinator."""
    require_coordinator(actor, municipality_id)
    return list(
        (
            await uow.session.execute(
                select(MentorProposal)
                .where(MentorProposal.municipality_id == municipality_id, MentorProposal.state.in_(list(states)))
                .order_by(MentorProposal.id)
            )
        ).scalars()
    )


async def get_proposal(uow: UnitOfWork, actor: Member, proposal_id: int) -> MentorProposal:
    """A proposal seen by its mentor, its mentee or a coordinator of its municipality."""
    proposal = await uow.session.get(MentorProposal, proposal_id)
    if proposal is None:
        raise NotFound("proposal")
    if actor.id not in (proposal.mentor_id, proposal.mentee_id):
        require_coordinator(actor, proposal.municipality_id)
    return proposal


async def proposals_for_mentor(uow: UnitOfWork, mentor: Member) -> list[MentorProposal]:
    """Approved proposals waiting for this mentor's answer."""
    return list(
        (
            await uow.session.execute(
                select(MentorProposal)
                .where(MentorProposal.mentor_id == mentor.id, MentorProposal.state == APPROVED)
                .order_by(MentorProposal.id)
            )
        ).scalars()
    )


@dataclass(frozen=True)
class Summary:
    """The coordinator's overview of mentoring in the municipality."""

    waiting: int
    waiting_long: int
    mentors_free: int
    proposed: int
    approved: int
    active_pairs: int


async def summary(uow: UnitOfWork, actor: Member, municipality_id: int, *, now: datetime) -> Summary:
    """Counts for the coordinator's screen."""
    require_coordinator(actor, municipality_id)
    waiting = await waiting_mentees(uow, municipality_id, now=now, days=0)
    waiting_long = await waiting_mentees(uow, municipality_id, now=now, days=UNMATCHED_DAYS)
    mentors = await _offers(uow, municipality_id)
    states = dict(
        (
            await uow.session.execute(
                select(MentorProposal.state, func.count(MentorProposal.id))
                .where(MentorProposal.municipality_id == municipality_id, MentorProposal.state.in_(LIVE))
                .group_by(MentorProposal.state)
            )
        ).all()
    )
    active = (
        await uow.session.execute(
            select(func.count(MentorPair.id)).where(
                MentorPair.municipality_id == municipality_id, MentorPair.ended_at.is_(None)
            )
        )
    ).scalar_one()
    return Summary(
        waiting=len(waiting), waiting_long=len(waiting_long),
        mentors_free=sum(1 for offer in mentors.values() if offer.free_slots > 0),
        proposed=states.get(PROPOSED, 0), approved=states.get(APPROVED, 0), active_pairs=active,
    )


async def active_pairs_in(uow: UnitOfWork, actor: Member, municipality_id: int) -> list[MentorPair]:
    """Active pairs of a municipality, for its coordinator."""
    require_coordinator(actor, municipality_id)
    return list(
        (
            await uow.session.execute(
                select(MentorPair)
                .where(MentorPair.municipality_id == municipality_id, MentorPair.ended_at.is_(None))
                .order_by(MentorPair.id)
            )
        ).scalars()
    )


# ---- matching -------------------------------------------------------------------------------


async def waiting_mentees(uow: UnitOfWork, municipality_id: int, *, now: datetime, days: int = UNMATCHED_DAYS
                          ) -> list[MentorRequest]:
    """Open requests at least `days` old whose mentee has no active pair (for nudges and the digest)."""
    active = select(MentorPair.mentee_id).where(MentorPair.ended_at.is_(None))
    return list(
        (
            await uow.session.execute(
                select(MentorRequest)
                .where(
                    MentorRequest.municipality_id == municipality_id,
                    MentorRequest.state == OPEN,
                    MentorRequest.created_at <= now - timedelta(days=days),
                    MentorRequest.mentee_id.not_in(active),
                )
                .order_by(MentorRequest.created_at)
            )
        ).scalars()
    )


async def _needs(uow: UnitOfWork, members: Sequence[Member]) -> dict[int, matching.MenteeNeed]:
    groups = await mentee_deficit_groups(uow, [member.id for member in members])
    return {
        member.id: matching.MenteeNeed(
            id=member.id,
            organisation_id=member.organisation_id,
            org_kind=member.organisation.kind if member.organisation else None,
            subject_area=member.subject_area,
            deficit_groups=groups.get(member.id, frozenset()),
        )
        for member in members
    }


async def _offers(uow: UnitOfWork, municipality_id: int, *, with_live: bool = True) -> dict[int, matching.MentorOffer]:
    """Confirmed mentors with a profile; their load counts active pairs and (optionally) live proposals."""
    rows = (
        await uow.session.execute(
            select(Member, MentorProfile)
            .join(MentorProfile, MentorProfile.member_id == Member.id)
            .where(
                Member.municipality_id == municipality_id, Member.role == Role.MENTOR,
                Member.mentor_confirmed.is_(True),
            )
            .order_by(Member.id)
        )
    ).all()
    if not rows:
        return {}
    ids = [member.id for member, _ in rows]
    load: dict[int, int] = defaultdict(int)
    for mentor_id, count in (
        await uow.session.execute(
            select(MentorPair.mentor_id, func.count(MentorPair.id))
            .where(MentorPair.mentor_id.in_(ids), MentorPair.ended_at.is_(None))
            .group_by(MentorPair.mentor_id)
        )
    ).all():
        load[mentor_id] += count
    if with_live:
        for mentor_id, count in (
            await uow.session.execute(
                select(MentorProposal.mentor_id, func.count(MentorProposal.id))
                .where(MentorProposal.mentor_id.in_(ids), MentorProposal.state.in_(LIVE))
                .group_by(MentorProposal.mentor_id)
            )
        ).all():
            load[mentor_id] += count
    return {
        member.id: matching.MentorOffer(
            id=member.id,
            organisation_id=member.organisation_id,
            org_kind=member.organisation.kind if member.organisation else None,
            subject_area=member.subject_area,
            strengths=frozenset(profile.strengths or ()),
            capacity=profile.capacity,
            current_mentees=load[member.id],
            accepts_network=profile.accepts_network,
        )
        for member, profile in rows
    }


async def _forbidden(uow: UnitOfWork, mentee_ids: Sequence[int]) -> frozenset[tuple[int, int]]:
    """Pairs never to propose: ever proposed (any state), ever paired, or excluded either way."""
    if not mentee_ids:
        return frozenset()
    ids = list(mentee_ids)
    pairs: set[tuple[int, int]] = set()
    for model in (MentorProposal, MentorPair):
        pairs.update(
            (mentee, mentor)
            for mentee, mentor in (
                await uow.session.execute(select(model.mentee_id, model.mentor_id).where(model.mentee_id.in_(ids)))
            ).all()
        )
    return frozenset(pairs | await _forbidden_exclusions(uow, ids))


async def _forbidden_exclusions(uow: UnitOfWork, ids: Sequence[int]) -> set[tuple[int, int]]:
    """Exclusions touching these members, in both directions."""
    pairs: set[tuple[int, int]] = set()
    for who, whom in (
        await uow.session.execute(
            select(MentorExclusion.member_id, MentorExclusion.excluded_id).where(
                or_(MentorExclusion.member_id.in_(list(ids)), MentorExclusion.excluded_id.in_(list(ids)))
            )
        )
    ).all():
        pairs.add((who, whom))
        pairs.add((whom, who))
    return pairs


async def run_matching(
    uow: UnitOfWork,
    actor: Member,
    municipality_id: int,
    *,
    now: datetime,
    weights: matching.MatchWeights = matching.DEFAULT_WEIGHTS,
) -> list[MentorProposal]:
    """Propose pairs for every waiting mentee of the municipality (optimal total score)."""
    require_coordinator(actor, municipality_id)
    await _lock(uow, municipality_id)
    live = select(MentorProposal.mentee_id).where(MentorProposal.state.in_(LIVE))
    requests = await waiting_mentees(uow, municipality_id, now=now, days=0)
    pending = set(
        (await uow.session.execute(live.where(MentorProposal.mentee_id.in_([r.mentee_id for r in requests])))).scalars()
    ) if requests else set()
    ids = [r.mentee_id for r in requests if r.mentee_id not in pending]
    mentees = await _members(uow, ids)
    mentees = [member for member in mentees if _is_mentee(member)]
    needs = await _needs(uow, mentees)
    offers = await _offers(uow, municipality_id)
    forbidden = await _forbidden(uow, list(needs))
    chosen = matching.optimal_assignment(list(needs.values()), list(offers.values()), weights, forbidden)
    rows = [
        MentorProposal(
            municipality_id=municipality_id, mentee_id=p.mentee_id, mentor_id=p.mentor_id, score=p.score,
            reasons=list(p.reasons), source="matching", state=PROPOSED, created_at=now, created_by=actor.id,
        )
        for p in chosen
    ]
    uow.session.add_all(rows)
    _audit(uow, now, "mentoring.matching_run", actor, f"municipality:{municipality_id}",
           mentees=len(needs), mentors=len(offers), proposed=len(rows))
    await uow.flush()
    return rows


@dataclass(frozen=True)
class MentorOption:
    """A mentor the coordinator may choose for a mentee, with the pair's score if eligible."""

    mentor: Member
    score: int | None
    reasons: tuple[str, ...]
    free_slots: int


async def mentor_options(uow: UnitOfWork, actor: Member, mentee_id: int) -> list[MentorOption]:
    """Mentors with room for one more mentee, best score first (for "change" and manual pairing)."""
    mentee = await _member(uow, mentee_id)
    require_coordinator(actor, mentee.municipality_id)
    need = (await _needs(uow, [mentee]))[mentee.id]
    offers = await _offers(uow, mentee.municipality_id, with_live=False)
    if not offers:
        return []
    waiting = dict(
        (
            await uow.session.execute(
                select(MentorProposal.mentor_id, func.count(MentorProposal.id))
                .where(MentorProposal.mentor_id.in_(list(offers)), MentorProposal.state == APPROVED)
                .group_by(MentorProposal.mentor_id)
            )
        ).all()
    )
    excluded = {
        other
        for pair in (await _forbidden_exclusions(uow, [mentee.id]))
        for other in pair
        if other != mentee.id
    }
    mentors = {m.id: m for m in await _members(uow, list(offers))}
    options = []
    for offer in offers.values():
        free = offer.free_slots - waiting.get(offer.id, 0)
        if free <= 0 or offer.id in excluded:
            continue
        scored = matching.score_pair(need, offer)
        options.append(MentorOption(mentors[offer.id], scored[0] if scored else None,
                                    scored[1] if scored else (), free))
    return sorted(options, key=lambda o: (o.score is None, -(o.score or 0), o.mentor.full_name))


async def unpaired_teachers(uow: UnitOfWork, actor: Member, municipality_id: int, query: str | None = None
                            ) -> list[Member]:
    """Teachers of the municipality without an active mentor, optionally matching part of a name."""
    require_coordinator(actor, municipality_id)
    active = select(MentorPair.mentee_id).where(MentorPair.ended_at.is_(None))
    rows = list(
        (
            await uow.session.execute(
                select(Member)
                .where(Member.municipality_id == municipality_id, Member.role == Role.TEACHER,
                       Member.id.not_in(active))
                .order_by(Member.full_name)
            )
        ).scalars()
    )
    if query:
        needle = query.casefold().replace("ё", "е")
        rows = [member for member in rows if needle in member.full_name.casefold().replace("ё", "е")]
    return rows


# ---- coordinator decisions ------------------------------------------------------------------


def _state_conflict(proposal: MentorProposal) -> Conflict:
    """The clearest reason a proposal can no longer be acted on."""
    if proposal.state == WITHDRAWN and proposal.close_reason == "mentor_full":
        return Conflict(MENTOR_FULL)
    if proposal.state == WITHDRAWN and proposal.close_reason in ("other_accepted", "paired_by_hand", "reassigned"):
        return Conflict(MENTEE_PAIRED)
    if proposal.state in (WITHDRAWN, REJECTED):
        return Conflict(PROPOSAL_WITHDRAWN)
    if proposal.state in (ACCEPTED, DECLINED):
        return Conflict(PROPOSAL_ANSWERED)
    if proposal.state == PROPOSED:
        return Conflict(PROPOSAL_NOT_APPROVED)
    return Conflict(PROPOSAL_NOT_PENDING)


async def _check_mentor_room(uow: UnitOfWork, mentor_id: int, *, besides: int | None = None) -> None:
    taken = await _active_count(uow, mentor_id) + await _approved_waiting(uow, mentor_id, besides=besides)
    if taken >= await _capacity(uow, mentor_id):
        raise Conflict(MENTOR_FULL)


async def _notify_proposal(uow: UnitOfWork, proposal: MentorProposal, now: datetime) -> None:
    mentee = await _member(uow, proposal.mentee_id)
    await enqueue(
        uow, key=f"mentoring:proposal:{proposal.id}:mentor", kind="mentoring.proposal", member_id=proposal.mentor_id,
        text=NOTICE_PROPOSAL.format(mentee=mentee.full_name, org=_org(mentee)),
        due_at=await _due(uow, now, proposal.municipality_id), buttons=[[LABEL_PROPOSALS, "flow:mentor_proposals"]],
    )


async def _proposal_to_decide(uow: UnitOfWork, actor: Member, proposal_id: int) -> MentorProposal:
    """A proposal the coordinator `actor` decides on, re-read under the locks of both people."""
    proposal = await get_proposal(uow, actor, proposal_id)
    require_coordinator(actor, proposal.municipality_id)
    await _lock(uow, proposal.municipality_id, [proposal.mentee_id, proposal.mentor_id])
    return await _fresh_proposal(uow, proposal_id)


async def _decide(
    uow: UnitOfWork, proposal: MentorProposal, state: str, actor: Member, now: datetime, audit: str
) -> MentorProposal:
    """Record a coordinator's decision on a proposal, with its audit line."""
    proposal.state = state
    proposal.decided_at = now
    proposal.decided_by = actor.id
    _audit(uow, now, audit, actor, f"proposal:{proposal.id}")
    await uow.flush()
    return proposal


async def approve_proposal(uow: UnitOfWork, actor: Member, proposal_id: int, *, now: datetime) -> MentorProposal:
    """Approve a proposed pair: the mentor is then asked to accept or decline."""
    proposal = await _proposal_to_decide(uow, actor, proposal_id)
    if proposal.state != PROPOSED:
        raise Conflict(PROPOSAL_NOT_PENDING) if proposal.state == APPROVED else _state_conflict(proposal)
    if await active_pair_of_mentee(uow, proposal.mentee_id) is not None:
        raise Conflict(MENTEE_PAIRED)
    await _check_mentor_room(uow, proposal.mentor_id, besides=proposal.id)
    await _notify_proposal(uow, proposal, now)
    return await _decide(uow, proposal, APPROVED, actor, now, "mentoring.proposal_approved")


async def reject_proposal(uow: UnitOfWork, actor: Member, proposal_id: int, *, now: datetime) -> MentorProposal:
    """Reject a proposed pair (it is never proposed again); the mentee waits for the next run."""
    proposal = await _proposal_to_decide(uow, actor, proposal_id)
    if proposal.state != PROPOSED:
        raise Conflict(PROPOSAL_NOT_PENDING) if proposal.state == APPROVED else _state_conflict(proposal)
    return await _decide(uow, proposal, REJECTED, actor, now, "mentoring.proposal_rejected")


async def withdraw_proposal(uow: UnitOfWork, actor: Member, proposal_id: int, *, now: datetime) -> MentorProposal:
    """Withdraw a proposed or approved pair before the mentor answers."""
    proposal = await _proposal_to_decide(uow, actor, proposal_id)
    if proposal.state not in LIVE:
        raise _state_conflict(proposal)
    proposal.close_reason = "coordinator"
    return await _decide(uow, proposal, WITHDRAWN, actor, now, "mentoring.proposal_withdrawn")


async def _check_pairable(uow: UnitOfWork, mentee: Member, mentor: Member, *, network_rule: bool) -> None:
    if not _is_mentee(mentee):
        raise Conflict(NOT_A_MENTEE)
    if not _is_mentor(mentor) or mentor.municipality_id != mentee.municipality_id:
        raise Conflict(NOT_A_MENTOR)
    if await _excluded(uow, mentee.id, mentor.id):
        raise Conflict(EXCLUDED)
    if network_rule:
        profile = await mentor_profile(uow, mentor.id)
        same_org = mentee.organisation_id is not None and mentee.organisation_id == mentor.organisation_id
        if not same_org and not (profile and profile.accepts_network):
            raise Conflict(NO_NETWORK)


async def change_proposal(
    uow: UnitOfWork, actor: Member, proposal_id: int, mentor_id: int, *, now: datetime
) -> MentorProposal:
    """Replace a live proposal's mentor: the old one is withdrawn, the new one approved at once."""
    proposal = await get_proposal(uow, actor, proposal_id)
    require_coordinator(actor, proposal.municipality_id)
    mentee = await _member(uow, proposal.mentee_id)
    mentor = await _member(uow, mentor_id)
    await _lock(uow, proposal.municipality_id, [mentee.id, mentor.id, proposal.mentor_id])
    proposal = await _fresh_proposal(uow, proposal_id)
    if proposal.state not in LIVE:
        raise _state_conflict(proposal)
    if mentor.id == proposal.mentor_id:
        raise Conflict(SAME_MENTOR)
    if await active_pair_of_mentee(uow, mentee.id) is not None:
        raise Conflict(MENTEE_PAIRED)
    await _check_pairable(uow, mentee, mentor, network_rule=True)
    await _check_mentor_room(uow, mentor.id)
    need = (await _needs(uow, [mentee]))[mentee.id]
    offer = (await _offers(uow, proposal.municipality_id, with_live=False)).get(mentor.id)
    scored = matching.score_pair(need, offer) if offer is not None else None
    proposal.state = WITHDRAWN
    proposal.close_reason = "changed"
    proposal.decided_at = now
    proposal.decided_by = actor.id
    new = MentorProposal(
        municipality_id=proposal.municipality_id, mentee_id=mentee.id, mentor_id=mentor.id,
        score=scored[0] if scored else 0, reasons=list(scored[1]) if scored else [], source="coordinator",
        state=APPROVED, created_at=now, created_by=actor.id, decided_at=now, decided_by=actor.id,
    )
    uow.session.add(new)
    await uow.flush()
    await _notify_proposal(uow, new, now)
    _audit(uow, now, "mentoring.proposal_changed", actor, f"proposal:{proposal.id}", new=new.id)
    await uow.flush()
    return new


# ---- pairs ----------------------------------------------------------------------------------


async def _contact_lines(uow: UnitOfWork, member: Member, *, share_link: bool, phone: str | None) -> list[str]:
    lines = []
    if share_link:
        for account in await uow.accounts.of_member(member.id):
            if account.transport == "telegram":
                lines.append(f"Telegram: tg://user?id={account.external_id}")
            elif account.transport == "vk":
                lines.append(f"ВКонтакте: https://vk.com/id{account.external_id}")
    if phone:
        lines.append(f"Телефон: {phone}")
    return lines


async def _notify_pair_started(uow: UnitOfWork, pair: MentorPair, now: datetime) -> None:
    mentor = await _member(uow, pair.mentor_id)
    mentee = await _member(uow, pair.mentee_id)
    profile = await mentor_profile(uow, mentor.id)
    request = await latest_request(uow, mentee.id)
    mentor_contacts = await _contact_lines(
        uow, mentor, share_link=bool(profile and profile.share_link), phone=profile.contact_phone if profile else None
    )
    mentee_contacts = await _contact_lines(
        uow, mentee, share_link=bool(request and request.share_link), phone=request.contact_phone if request else None
    )
    due = await _due(uow, now, pair.municipality_id)
    await enqueue(
        uow, key=f"mentoring:pair:{pair.id}:mentor", kind="mentoring.pair", member_id=mentor.id,
        text=NOTICE_PAIR_MENTOR.format(other=mentee.full_name, org=_org(mentee),
                                       contacts="\n".join(mentee_contacts) or NOTICE_NO_CONTACTS,
                                       first=NOTICE_FIRST_MEETING),
        due_at=due, buttons=[[LABEL_MENTOR, "flow:mentoring"]],
    )
    await enqueue(
        uow, key=f"mentoring:pair:{pair.id}:mentee", kind="mentoring.pair", member_id=mentee.id,
        text=NOTICE_PAIR_MENTEE.format(other=mentor.full_name, org=_org(mentor),
                                       contacts="\n".join(mentor_contacts) or NOTICE_NO_CONTACTS,
                                       first=NOTICE_FIRST_MEETING),
        due_at=due, buttons=[[LABEL_MENTEE, "flow:mentee"]],
    )


async def _create_pair(
    uow: UnitOfWork, *, mentee: Member, mentor: Member, now: datetime, actor: Member | None,
    proposal: MentorProposal | None, reason: str,
) -> MentorPair:
    """Checks done, locks held: insert the pair and tidy proposals and requests around it."""
    pair = MentorPair(
        municipality_id=mentee.municipality_id, mentor_id=mentor.id, mentee_id=mentee.id,
        proposal_id=proposal.id if proposal else None, started_at=now, created_by=actor.id if actor else None,
    )
    try:
        async with uow.session.begin_nested():
            uow.session.add(pair)
    except IntegrityError:  # the partial unique index: the mentee got a mentor meanwhile
        raise Conflict(MENTEE_PAIRED) from None
    await _withdraw_live(uow, mentee_id=mentee.id, reason=reason, besides=proposal.id if proposal else None)
    if await _active_count(uow, mentor.id) >= await _capacity(uow, mentor.id):
        await _withdraw_live(uow, mentor_id=mentor.id, reason="mentor_full",
                             besides=proposal.id if proposal else None)
    request = await open_request(uow, mentee.id)
    if request is not None:
        request.state = MATCHED
        request.closed_at = now
    await uow.flush()
    await _notify_pair_started(uow, pair, now)
    _audit(uow, now, "mentoring.pair_started", actor, f"pair:{pair.id}", mentor=mentor.id, mentee=mentee.id)
    await uow.flush()
    return pair


async def accept_proposal(uow: UnitOfWork, mentor: Member, proposal_id: int, *, now: datetime) -> MentorPair:
    """The mentor accepts: the pair starts, other pending proposals for the mentee are withdrawn."""
    proposal = await uow.session.get(MentorProposal, proposal_id)
    if proposal is None or proposal.mentor_id != mentor.id:
        raise NotFound("proposal")
    await _lock(uow, proposal.municipality_id, [proposal.mentee_id, mentor.id])
    proposal = await _fresh_proposal(uow, proposal_id)
    if proposal.state != APPROVED:
        raise _state_conflict(proposal)
    mentee = await _member(uow, proposal.mentee_id)
    if await active_pair_of_mentee(uow, mentee.id) is not None:
        raise Conflict(MENTEE_PAIRED)
    if await _active_count(uow, mentor.id) >= await _capacity(uow, mentor.id):
        raise Conflict(MENTOR_FULL)
    pair = await _create_pair(uow, mentee=mentee, mentor=mentor, now=now, actor=mentor, proposal=proposal,
                              reason="other_accepted")
    proposal.state = ACCEPTED
    proposal.answered_at = now
    await uow.flush()
    return pair


async def decline_proposal(uow: UnitOfWork, mentor: Member, proposal_id: int, *, now: datetime,
                           weights: matching.MatchWeights = matching.DEFAULT_WEIGHTS) -> MentorProposal | None:
    """The mentor declines; the next best mentor is proposed to the coordinator (returned, or None)."""
    proposal = await uow.session.get(MentorProposal, proposal_id)
    if proposal is None or proposal.mentor_id != mentor.id:
        raise NotFound("proposal")
    await _lock(uow, proposal.municipality_id, [proposal.mentee_id, mentor.id])
    proposal = await _fresh_proposal(uow, proposal_id)
    if proposal.state != APPROVED:
        raise _state_conflict(proposal)
    proposal.state = DECLINED
    proposal.answered_at = now
    await uow.flush()
    _audit(uow, now, "mentoring.proposal_declined", mentor, f"proposal:{proposal.id}")
    mentee = await _member(uow, proposal.mentee_id)
    if await active_pair_of_mentee(uow, mentee.id) is not None or await _has_live(uow, mentee.id):
        return None
    need = (await _needs(uow, [mentee]))[mentee.id]
    offers = await _offers(uow, proposal.municipality_id)
    best = matching.next_best_mentor(need, list(offers.values()), weights, await _forbidden(uow, [mentee.id]))
    coordinators = await _coordinators(uow, proposal.municipality_id)
    due = await _due(uow, now, proposal.municipality_id)
    if best is None:
        for coordinator in coordinators:
            await enqueue(
                uow, key=f"mentoring:declined:{proposal.id}:{coordinator.id}", kind="mentoring.declined",
                member_id=coordinator.id, text=NOTICE_NO_NEXT.format(mentee=mentee.full_name), due_at=due,
                buttons=[[LABEL_MATCHING, "flow:matching"]],
            )
        return None
    new = MentorProposal(
        municipality_id=proposal.municipality_id, mentee_id=mentee.id, mentor_id=best.mentor_id, score=best.score,
        reasons=list(best.reasons), source="next_best", state=PROPOSED, created_at=now,
    )
    uow.session.add(new)
    await uow.flush()
    next_mentor = await _member(uow, best.mentor_id)
    for coordinator in coordinators:
        await enqueue(
            uow, key=f"mentoring:declined:{proposal.id}:{coordinator.id}", kind="mentoring.declined",
            member_id=coordinator.id, text=NOTICE_NEXT.format(mentee=mentee.full_name, mentor=next_mentor.full_name),
            due_at=due, buttons=[[LABEL_MATCHING, "flow:matching"]],
        )
    return new


async def _has_live(uow: UnitOfWork, mentee_id: int) -> bool:
    row = (
        await uow.session.execute(
            select(MentorProposal.id).where(MentorProposal.mentee_id == mentee_id, MentorProposal.state.in_(LIVE))
            .limit(1)
        )
    ).first()
    return row is not None


async def pair_by_hand(uow: UnitOfWork, actor: Member, mentee_id: int, mentor_id: int, *, now: datetime
                       ) -> MentorPair:
    """A coordinator pairs two people directly (pending proposals for the mentee are withdrawn)."""
    mentee = await _member(uow, mentee_id)
    mentor = await _member(uow, mentor_id)
    require_coordinator(actor, mentee.municipality_id)
    await _lock(uow, mentee.municipality_id, [mentee.id, mentor.id])
    await _check_pairable(uow, mentee, mentor, network_rule=False)
    if await active_pair_of_mentee(uow, mentee.id) is not None:
        raise Conflict(MENTEE_PAIRED)
    await _check_mentor_room(uow, mentor.id)
    return await _create_pair(uow, mentee=mentee, mentor=mentor, now=now, actor=actor, proposal=None,
                              reason="paired_by_hand")


async def _end(uow: UnitOfWork, pair: MentorPair, *, actor: Member, reason: str, now: datetime) -> None:
    pair.ended_at = now
    pair.end_reason = reason
    pair.ended_by = actor.id
    await uow.flush()
    _audit(uow, now, "mentoring.pair_ended", actor, f"pair:{pair.id}", reason=reason)


async def end_pair(uow: UnitOfWork, actor: Member, pair_id: int, *, reason: str, now: datetime) -> MentorPair:
    """A coordinator ends a pair; both members are told."""
    if reason not in END_REASONS:
        raise ValueError(f"unknown end reason {reason}")
    pair = await uow.session.get(MentorPair, pair_id)
    if pair is None:
        raise NotFound("pair")
    require_coordinator(actor, pair.municipality_id)
    await _lock(uow, pair.municipality_id, [pair.mentee_id, pair.mentor_id])
    pair = await _fresh_pair(uow, pair_id)
    if pair.ended_at is not None:
        raise Conflict(PAIR_ENDED)
    await _end(uow, pair, actor=actor, reason=reason, now=now)
    mentor, mentee = await _member(uow, pair.mentor_id), await _member(uow, pair.mentee_id)
    due = await _due(uow, now, pair.municipality_id)
    for member, other in ((mentor, mentee), (mentee, mentor)):
        await enqueue(uow, key=f"mentoring:pair:{pair.id}:ended:{member.id}", kind="mentoring.ended",
                      member_id=member.id, text=NOTICE_PAIR_ENDED.format(other=other.full_name), due_at=due)
    return pair


async def reassign(uow: UnitOfWork, actor: Member, mentee_id: int, mentor_id: int, *, now: datetime) -> MentorPair:
    """End the mentee's current pair and start one with another mentor, in one step."""
    mentee = await _member(uow, mentee_id)
    mentor = await _member(uow, mentor_id)
    require_coordinator(actor, mentee.municipality_id)
    current = await active_pair_of_mentee(uow, mentee.id)
    old_mentor = current.mentor_id if current else None
    await _lock(uow, mentee.municipality_id, [mentee.id, mentor.id, *([old_mentor] if old_mentor else [])])
    current = await active_pair_of_mentee(uow, mentee.id)
    if current is None:
        raise Conflict(NO_ACTIVE_PAIR)
    if current.mentor_id == mentor.id:
        raise Conflict(SAME_MENTOR)
    await _check_pairable(uow, mentee, mentor, network_rule=False)
    await _check_mentor_room(uow, mentor.id)
    await _end(uow, current, actor=actor, reason="reassigned", now=now)
    return await _create_pair(uow, mentee=mentee, mentor=mentor, now=now, actor=actor, proposal=None,
                              reason="reassigned")


# ---- exclusions -----------------------------------------------------------------------------


async def exclusions_of(uow: UnitOfWork, member: Member) -> list[Member]:
    """The people this member asked never to be paired with (visible only to the member)."""
    ids = (
        await uow.session.execute(
            select(MentorExclusion.excluded_id).where(MentorExclusion.member_id == member.id)
            .order_by(MentorExclusion.id)
        )
    ).scalars()
    return [await _member(uow, member_id) for member_id in ids]


async def exclusion_candidates(uow: UnitOfWork, member: Member, query: str | None) -> list[Member]:
    """People of the other side in the member's municipality whose name contains `query` (3+ letters)."""
    if not query or len(query.strip()) < 3 or member.municipality_id is None:
        return []
    role = Role.MENTOR if member.role == Role.TEACHER else Role.TEACHER
    needle = query.strip().casefold().replace("ё", "е")
    rows = await uow.members.in_municipality(member.municipality_id, role=role)
    return [
        row for row in rows
        if needle in row.full_name.casefold().replace("ё", "е") and (role != Role.MENTOR or row.mentor_confirmed)
    ]


async def add_exclusion(uow: UnitOfWork, member: Member, other_id: int, *, now: datetime) -> None:
    """Never propose a pair of these two; a live proposal between them is withdrawn."""
    other = await _member(uow, other_id)
    if other.id == member.id or other.municipality_id != member.municipality_id:
        raise Forbidden("not someone to exclude")
    if member.role not in (Role.TEACHER, Role.MENTOR):
        raise Forbidden("only mentees and mentors keep exclusions")
    exists = (
        await uow.session.execute(
            select(MentorExclusion.id).where(MentorExclusion.member_id == member.id,
                                             MentorExclusion.excluded_id == other.id)
        )
    ).first()
    if exists is None:
        uow.session.add(MentorExclusion(member_id=member.id, excluded_id=other.id, created_at=now))
    mentee_id, mentor_id = (member.id, other.id) if member.role == Role.TEACHER else (other.id, member.id)
    await _withdraw_live(uow, mentee_id=mentee_id, mentor_id=mentor_id, reason="excluded")
    await uow.flush()


async def remove_exclusion(uow: UnitOfWork, member: Member, other_id: int) -> None:
    """Drop an exclusion (future matching may pair them again)."""
    row = (
        await uow.session.execute(
            select(MentorExclusion).where(MentorExclusion.member_id == member.id,
                                          MentorExclusion.excluded_id == other_id)
        )
    ).scalar_one_or_none()
    if row is not None:
        await uow.session.delete(row)
        await uow.flush()


# ---- meetings -------------------------------------------------------------------------------


def _check_meeting_fields(duration_min: int, format: str, activity: str, deficits: Iterable[str],
                          note: str | None) -> None:
    if not MIN_DURATION <= duration_min <= MAX_DURATION:
        raise ValueError("duration out of range")
    if format not in FORMATS:
        raise ValueError(f"unknown format {format}")
    if activity not in ACTIVITIES:
        raise ValueError(f"unknown activity {activity}")
    if not set(deficits) <= {g.value for g in DeficitGroup}:
        raise ValueError("unknown deficit group")
    if note is not None and len(note) > MAX_NOTE:
        raise ValueError("note too long")


async def _check_date(uow: UnitOfWork, pair: MentorPair, held_on: date, now: datetime) -> None:
    municipality = await uow.reference.municipality(pair.municipality_id)
    if held_on > local_date(now, municipality):
        raise Conflict(MEETING_IN_FUTURE)
    if held_on < local_date(pair.started_at, municipality):
        raise Conflict(MEETING_BEFORE_PAIR)


async def _ask_confirmation(uow: UnitOfWork, meeting: MentorMeeting, pair: MentorPair, now: datetime) -> None:
    await enqueue(
        uow, key=f"mentoring:meeting:{meeting.id}:confirm:{meeting.updated_at.isoformat()}",
        kind="mentoring.confirm", member_id=pair.mentee_id,
        text=NOTICE_CONFIRM.format(day=meeting.held_on.strftime("%d.%m.%Y")),
        due_at=await _due(uow, now, pair.municipality_id), buttons=[[LABEL_MENTEE, "flow:mentee"]],
    )


async def log_meeting(
    uow: UnitOfWork,
    mentor: Member,
    pair_id: int,
    *,
    held_on: date,
    duration_min: int,
    format: str,
    activity: str,
    deficits: Iterable[str] = (),
    note: str | None = None,
    now: datetime,
) -> MentorMeeting:
    """The mentor logs a meeting of an active pair; the mentee is asked to confirm it."""
    deficits = sorted(set(deficits))
    _check_meeting_fields(duration_min, format, activity, deficits, note)
    pair = await _fresh_pair(uow, pair_id)
    if pair.mentor_id != mentor.id:
        raise NotFound("pair")
    if pair.ended_at is not None:
        raise Conflict(PAIR_ENDED)
    await _check_date(uow, pair, held_on, now)
    meeting = MentorMeeting(
        pair_id=pair.id, held_on=held_on, duration_min=duration_min, format=format, activity=activity,
        deficits=deficits, note=(note or None), logged_by=mentor.id, confirmed=PENDING, created_at=now,
        updated_at=now,
    )
    uow.session.add(meeting)
    await uow.flush()
    await _ask_confirmation(uow, meeting, pair, now)
    return meeting


async def _own_meeting(uow: UnitOfWork, mentor: Member, meeting_id: int, now: datetime
                       ) -> tuple[MentorMeeting, MentorPair]:
    meeting = await uow.session.get(MentorMeeting, meeting_id)
    if meeting is None or meeting.logged_by != mentor.id:
        raise NotFound("meeting")
    pair = await _fresh_pair(uow, meeting.pair_id)
    if pair.ended_at is not None:
        raise Conflict(PAIR_ENDED)
    if now - meeting.created_at > EDIT_WINDOW:
        raise Conflict(EDIT_WINDOW_PASSED)
    return meeting, pair


async def correct_meeting(uow: UnitOfWork, mentor: Member, meeting_id: int, *, now: datetime, **changes
                          ) -> MentorMeeting:
    """The mentor corrects their own entry within 7 days; the mentee is asked to confirm again."""
    allowed = {"held_on", "duration_min", "format", "activity", "deficits", "note"}
    if set(changes) - allowed:
        raise ValueError(f"not meeting fields: {sorted(set(changes) - allowed)}")
    meeting, pair = await _own_meeting(uow, mentor, meeting_id, now)
    merged = {name: getattr(meeting, name) for name in allowed} | changes
    merged["deficits"] = sorted(set(merged["deficits"] or ()))
    _check_meeting_fields(merged["duration_min"], merged["format"], merged["activity"], merged["deficits"],
                          merged["note"])
    await _check_date(uow, pair, merged["held_on"], now)
    for name, value in merged.items():
        setattr(meeting, name, value)
    meeting.note = meeting.note or None
    meeting.confirmed = PENDING
    meeting.confirmed_at = None
    meeting.updated_at = now
    await uow.flush()
    await _ask_confirmation(uow, meeting, pair, now)
    return meeting


async def delete_meeting(uow: UnitOfWork, mentor: Member, meeting_id: int, *, now: datetime) -> None:
    """The mentor deletes their own entry within 7 days."""
    meeting, _pair = await _own_meeting(uow, mentor, meeting_id, now)
    await uow.session.delete(meeting)
    await uow.flush()


async def confirm_meeting(uow: UnitOfWork, mentee: Member, meeting_id: int, *, happened: bool, now: datetime
                          ) -> MentorMeeting:
    """The mentee says whether the meeting happened (once per version of the entry)."""
    meeting = await uow.session.get(MentorMeeting, meeting_id, populate_existing=True)
    pair = await uow.session.get(MentorPair, meeting.pair_id) if meeting else None
    if meeting is None or pair is None or pair.mentee_id != mentee.id:
        raise NotFound("meeting")
    if meeting.confirmed != PENDING:
        raise Conflict(ALREADY_CONFIRMED)
    meeting.confirmed = YES if happened else NO
    meeting.confirmed_at = now
    await uow.flush()
    if not happened:
        await enqueue(
            uow, key=f"mentoring:meeting:{meeting.id}:denied:{meeting.updated_at.isoformat()}",
            kind="mentoring.denied", member_id=pair.mentor_id,
            text=NOTICE_DENIED.format(mentee=mentee.full_name, day=meeting.held_on.strftime("%d.%m.%Y")),
            due_at=await _due(uow, now, pair.municipality_id), buttons=[[LABEL_MENTOR, "flow:mentoring"]],
        )
    return meeting


async def pair_history(uow: UnitOfWork, member: Member, pair_id: int) -> list[MentorMeeting]:
    """The pair's meetings, newest first, for its members and the coordinator."""
    pair = await get_pair(uow, member, pair_id)
    return list(
        (
            await uow.session.execute(
                select(MentorMeeting).where(MentorMeeting.pair_id == pair.id)
                .order_by(MentorMeeting.held_on.desc(), MentorMeeting.id.desc())
            )
        ).scalars()
    )


async def editable_meetings(uow: UnitOfWork, mentor: Member, *, now: datetime) -> list[MentorMeeting]:
    """The mentor's own entries still inside the 7-day window, on active pairs."""
    rows = (
        await uow.session.execute(
            select(MentorMeeting)
            .join(MentorPair, MentorPair.id == MentorMeeting.pair_id)
            .where(MentorMeeting.logged_by == mentor.id, MentorPair.ended_at.is_(None),
                   MentorMeeting.created_at >= now - EDIT_WINDOW)
            .order_by(MentorMeeting.held_on.desc(), MentorMeeting.id.desc())
        )
    ).scalars()
    return list(rows)


async def unconfirmed_meetings(uow: UnitOfWork, mentee: Member) -> list[MentorMeeting]:
    """Meetings waiting for the mentee's confirmation."""
    rows = (
        await uow.session.execute(
            select(MentorMeeting)
            .join(MentorPair, MentorPair.id == MentorMeeting.pair_id)
            .where(MentorPair.mentee_id == mentee.id, MentorMeeting.confirmed == PENDING)
            .order_by(MentorMeeting.held_on, MentorMeeting.id)
        )
    ).scalars()
    return list(rows)


async def send_pair_message(uow: UnitOfWork, sender: Member, pair_id: int, text: str, *, now: datetime) -> None:
    """Pass a message to the other member of an active pair (e.g. the first "hello")."""
    pair = await uow.session.get(MentorPair, pair_id)
    if pair is None or sender.id not in (pair.mentor_id, pair.mentee_id):
        raise NotFound("pair")
    if pair.ended_at is not None:
        raise Conflict(PAIR_ENDED)
    text = text.strip()
    if not text or len(text) > MAX_MESSAGE:
        raise ValueError("message empty or too long")
    other = pair.mentee_id if sender.id == pair.mentor_id else pair.mentor_id
    stamp = int(now.timestamp() * 1000)
    await enqueue(
        uow, key=f"mentoring:message:{pair.id}:{sender.id}:{stamp}", kind="mentoring.message", member_id=other,
        text=NOTICE_MESSAGE.format(sender=sender.full_name, text=text), due_at=now,
        buttons=[[LABEL_MENTOR, "flow:mentoring"]] if other == pair.mentor_id else [[LABEL_MENTEE, "flow:mentee"]],
    )


# ---- nudges ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdlePair:
    """An active pair and how long it has gone without a meeting."""

    pair: MentorPair
    since: date
    idle_days: int


async def idle_pairs(uow: UnitOfWork, *, now: datetime, idle_days: int, municipality_id: int | None = None
                     ) -> list[IdlePair]:
    """Active pairs whose last meeting (not denied by the mentee), or start, is `idle_days` or more ago."""
    query = select(MentorPair).where(MentorPair.ended_at.is_(None))
    if municipality_id is not None:
        query = query.where(MentorPair.municipality_id == municipality_id)
    pairs = list((await uow.session.execute(query.order_by(MentorPair.id))).scalars())
    if not pairs:
        return []
    last = dict(
        (
            await uow.session.execute(
                select(MentorMeeting.pair_id, func.max(MentorMeeting.held_on))
                .where(MentorMeeting.pair_id.in_([p.id for p in pairs]), MentorMeeting.confirmed != NO)
                .group_by(MentorMeeting.pair_id)
            )
        ).all()
    )
    municipalities: dict[int, Municipality | None] = {}
    result = []
    for pair in pairs:
        if pair.municipality_id not in municipalities:
            municipalities[pair.municipality_id] = await uow.reference.municipality(pair.municipality_id)
        municipality = municipalities[pair.municipality_id]
        since = local_date(pair.started_at, municipality)
        if last.get(pair.id) is not None:
            since = max(since, last[pair.id])
        idle = (local_date(now, municipality) - since).days
        if idle >= idle_days:
            result.append(IdlePair(pair, since, idle))
    return result


async def due_nudges(uow: UnitOfWork, now: datetime, idle_days: int = 14, *,
                     quiet_hours: str = DEFAULT_QUIET_HOURS) -> int:
    """Queue reminders: idle pairs (mentor first, the mentee a few days later) and long-waiting mentees.

    Idempotent: keys name the pair, the date the idleness began and the round, so running the job
    again the same day queues nothing new, and a meeting logged meanwhile starts a new count.
    """
    queued = 0
    for idle in await idle_pairs(uow, now=now, idle_days=idle_days):
        pair = idle.pair
        mentor, mentee = await _member(uow, pair.mentor_id), await _member(uow, pair.mentee_id)
        due = await _due(uow, now, pair.municipality_id, quiet_hours)
        round_ = idle.idle_days // idle_days
        if await enqueue(
            uow, key=f"nudge:pair:{pair.id}:mentor:{idle.since.isoformat()}:{round_}", kind="mentoring.nudge",
            member_id=mentor.id, text=NOTICE_IDLE_MENTOR.format(other=mentee.full_name, days=idle.idle_days),
            due_at=due, buttons=[[LABEL_LOG, "flow:meeting_log"]],
        ):
            queued += 1
        late = idle.idle_days - MENTEE_NUDGE_DELAY_DAYS
        if late >= idle_days and await enqueue(
            uow, key=f"nudge:pair:{pair.id}:mentee:{idle.since.isoformat()}:{late // idle_days}",
            kind="mentoring.nudge", member_id=mentee.id,
            text=NOTICE_IDLE_MENTEE.format(other=mentor.full_name, days=idle.idle_days), due_at=due,
            buttons=[[LABEL_MENTEE, "flow:mentee"]],
        ):
            queued += 1
    municipality_ids = (
        await uow.session.execute(select(MentorRequest.municipality_id).where(MentorRequest.state == OPEN).distinct())
    ).scalars()
    for municipality_id in list(municipality_ids):
        coordinators = await _coordinators(uow, municipality_id)
        if not coordinators:
            continue
        due = await _due(uow, now, municipality_id, quiet_hours)
        municipality = await uow.reference.municipality(municipality_id)
        for request in await waiting_mentees(uow, municipality_id, now=now, days=UNMATCHED_DAYS):
            if request.created_at == now - timedelta(days=UNMATCHED_DAYS):
                continue  # "more than 7 days"
            mentee = await _member(uow, request.mentee_id)
            for coordinator in coordinators:
                if await enqueue(
                    uow, key=f"nudge:unmatched:{request.id}:{coordinator.id}", kind="mentoring.unmatched",
                    member_id=coordinator.id,
                    text=NOTICE_UNMATCHED.format(
                        mentee=mentee.full_name,
                        day=local_date(request.created_at, municipality).strftime("%d.%m.%Y")),
                    due_at=due, buttons=[[LABEL_MATCHING, "flow:matching"]],
                ):
                    queued += 1
    return queued

