"""Registration and profiles of members, and the coordinator's confirmation of mentors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage.models import AuditRecord, Member, Role
from storage.services.errors import Conflict, Forbidden, NotFound
from storage.unit_of_work import UnitOfWork

PROFILE_FIELDS = frozenset(
    {"full_name", "organisation_id", "position", "subject_area", "teaching_start_year", "birth_year", "phone"}
)
COORDINATING = frozenset({Role.COORDINATOR, Role.ADMIN})


async def register_member(
    uow: UnitOfWork,
    who,
    *,
    role: str,
    full_name: str,
    municipality_id: int | None,
    now: datetime,
    organisation_id: int | None = None,
    position: str | None = None,
    subject_area: str | None = None,
    teaching_start_year: int | None = None,
    birth_year: int | None = None,
) -> Member:
    """Create the member behind this account; registering twice returns the existing member."""
    account = await uow.accounts.get_or_create(who)
    if account.member_id is not None:
        existing = await uow.members.get(account.member_id)
        if existing is not None:
            return existing
    if role not in (Role.TEACHER, Role.MENTOR) and role not in (Role.COORDINATOR, Role.REGIONAL, Role.ADMIN):
        raise ValueError(f"unknown role {role}")
    if organisation_id is not None:
        organisation = await uow.reference.organisation(organisation_id)
        if organisation is None or organisation.municipality_id != municipality_id:
            raise Conflict("organisation is not in the municipality")
    member = Member(
        role=role,
        full_name=full_name,
        municipality_id=municipality_id,
        organisation_id=organisation_id,
        position=position,
        subject_area=subject_area,
        teaching_start_year=teaching_start_year,
        birth_year=birth_year,
        mentor_confirmed=False,
        preferred_transport=who.transport,
        created_at=now,
        updated_at=now,
        last_seen_at=now,
    )
    uow.members.add(member)
    await uow.flush()
    account.member_id = member.id
    uow.session.add(AuditRecord(at=now, action="member.registered", actor=f"member:{member.id}", subject=f"member:{member.id}", details={"role": role}))
    await uow.flush()
    return member


async def update_profile(uow: UnitOfWork, member: Member, changes: dict[str, Any], *, now: datetime) -> Member:
    """Change a member's own profile fields."""
    unknown = set(changes) - PROFILE_FIELDS
    if unknown:
        raise ValueError(f"not profile fields: {sorted(unknown)}")
    if "organisation_id" in changes and changes["organisation_id"] is not None:
        organisation = await uow.reference.organisation(int(changes["organisation_id"]))
        if organisation is None or organisation.municipality_id != member.municipality_id:
            raise Conflict("organisation is not in the municipality")
    for name, value in changes.items():
        setattr(member, name, value)
    member.updated_at = now
    await uow.flush()
    return member


def require_coordinator(actor: Member | None, municipality_id: int | None) -> Member:
    """The actor must coordinate this municipality (an admin coordinates every one)."""
    if actor is None or actor.role not in COORDINATING:
        raise Forbidden("coordinator role required")
    if actor.role == Role.COORDINATOR and actor.municipality_id != municipality_id:
        raise Forbidden("another municipality")
    return actor


async def pending_mentors(uow: UnitOfWork, actor: Member) -> list[Member]:
    """Mentors waiting for the actor's confirmation."""
    require_coordinator(actor, actor.municipality_id)
    if actor.municipality_id is None:
        return []
    return await uow.members.pending_mentors(actor.municipality_id)


async def decide_mentor(uow: UnitOfWork, actor: Member, mentor_id: int, *, approve: bool, now: datetime) -> Member:
    """Confirm a mentor, or turn the registration into a teacher one."""
    mentor = await uow.members.get(mentor_id)
    if mentor is None:
        raise NotFound("member")
    require_coordinator(actor, mentor.municipality_id)
    if mentor.role != Role.MENTOR or mentor.mentor_confirmed:
        raise Conflict("not a pending mentor")
    if approve:
        mentor.mentor_confirmed = True
    else:
        mentor.role = Role.TEACHER
    mentor.updated_at = now
    uow.session.add(
        AuditRecord(
            at=now,
            action="mentor.confirmed" if approve else "mentor.rejected",
            actor=f"member:{actor.id}",
            subject=f"member:{mentor.id}",
        )
    )
    await uow.flush()
    return mentor
