"""People registered directly in storage, for end-to-end tests whose subject starts after registration.

Registration itself has its own end-to-end tests in both channels; these helpers put a member
behind a channel identity (Telegram chat or VK user) so that a scenario can start where it matters.
All names are synthetic.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from dialogs.model import ExternalId
from storage.models import Member, Organisation, Role
from storage.services import consent as consent_service
from storage.services import members as member_service
from storage.unit_of_work import Database, UnitOfWork

SCHOOL = "МОБУ «СОШ № 2», Кудрово"


def telegram_who(chat) -> ExternalId:
    """The identity of a Telegram emulator chat (anything with `user_id` and `chat_id`)."""
    return ExternalId("telegram", str(chat.user_id), str(chat.chat_id))


def vk_who(user_id: int) -> ExternalId:
    """The identity of a VK user writing to the community in a private dialog."""
    return ExternalId("vk", str(user_id), str(user_id))


async def registered(
    uow: UnitOfWork, who: ExternalId, now: datetime, *, role: str, name: str,
    municipality_code: str = "vsevolozhsky", **profile,
) -> Member:
    """A member behind `who` (consent given) in the unit of work, not committed."""
    municipality = await uow.reference.municipality_by_code(municipality_code)
    await consent_service.give_consent(uow, who, municipality_id=municipality.id, now=now)
    return await member_service.register_member(
        uow, who, role=role, full_name=name, municipality_id=municipality.id, now=now, **profile
    )


async def registered_in_db(db: Database, who: ExternalId, now: datetime, *, role: str, name: str, **profile) -> int:
    """`registered`, committed; returns the member's id."""
    async with db.unit() as uow:
        member = await registered(uow, who, now, role=role, name=name, **profile)
        await uow.commit()
        return member.id


async def school_member(
    uow: UnitOfWork, who: ExternalId, now: datetime, *, role: str, name: str, subject: str | None = "philology"
) -> Member:
    """A teacher or a (confirmed) mentor of `SCHOOL`, or a coordinator, as the mentoring scenarios need them."""
    organisation_id = None
    if role != Role.COORDINATOR:
        organisation_id = (
            await uow.session.execute(select(Organisation.id).where(Organisation.name == SCHOOL))
        ).scalar_one()
    member = await registered(
        uow, who, now, role=role, name=name, organisation_id=organisation_id,
        position="subject_teacher" if organisation_id else None,
        subject_area=subject if organisation_id else None,
        teaching_start_year=2025 if role == Role.TEACHER else 2005,
        birth_year=2000 if role == Role.TEACHER else 1980,
    )
    if role == Role.MENTOR:
        member.mentor_confirmed = True
    return member
