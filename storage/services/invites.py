"""Invite codes for the coordinator, regional and admin roles: single use, expiring, rate-limited."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select

from storage.models import Invite, InviteAttempt, Role
from storage.services.errors import Conflict, NotFound
from storage.unit_of_work import UnitOfWork

INVITE_ROLES = (Role.COORDINATOR, Role.REGIONAL, Role.ADMIN)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
MAX_ATTEMPTS = 5
ATTEMPT_WINDOW = timedelta(minutes=15)


class TooManyAttempts(Conflict):
    """Too many wrong codes from one person in a short time."""


def hash_code(code: str) -> str:
    """Codes are stored hashed, so a database leak does not leak usable codes."""
    normalised = code.strip().upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(normalised.encode()).hexdigest()


def new_code() -> str:
    """A random code like ABCD-EFGH-JKLM (60 bits)."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(12))
    return "-".join(raw[i : i + 4] for i in range(0, 12, 4))


async def create_invite(
    uow: UnitOfWork, *, role: str, now: datetime, municipality_code: str | None = None,
    region: str | None = None, days: int = 14,
) -> str:
    """Create an invite and return its code (shown once, stored only hashed)."""
    if role not in INVITE_ROLES:
        raise ValueError(f"role must be one of {', '.join(INVITE_ROLES)}")
    municipality_id = None
    if role == Role.COORDINATOR:
        if not municipality_code:
            raise ValueError("a coordinator invite needs --municipality")
        municipality = await uow.reference.municipality_by_code(municipality_code)
        if municipality is None:
            raise NotFound(f"municipality {municipality_code}")
        municipality_id = municipality.id
        region = municipality.region
    if role == Role.REGIONAL and not region:
        raise ValueError("a regional invite needs --region")
    code = new_code()
    uow.session.add(
        Invite(code_hash=hash_code(code), role=role, municipality_id=municipality_id, region=region,
               created_at=now, expires_at=now + timedelta(days=days))
    )
    await uow.flush()
    return code


async def check_invite(uow: UnitOfWork, who, code: str, *, now: datetime) -> Invite:
    """Find a valid invite for this code, counting the attempt; raises on a bad or used code."""
    since = now - ATTEMPT_WINDOW
    await uow.session.execute(delete(InviteAttempt).where(InviteAttempt.at < since))
    attempts = (
        await uow.session.execute(
            select(func.count(InviteAttempt.id)).where(
                InviteAttempt.transport == who.transport, InviteAttempt.external_id == who.user_id,
                InviteAttempt.at >= since,
            )
        )
    ).scalar_one()
    if attempts >= MAX_ATTEMPTS:
        raise TooManyAttempts("too many attempts")
    invite = (
        await uow.session.execute(select(Invite).where(Invite.code_hash == hash_code(code)))
    ).scalar_one_or_none()
    if invite is None or invite.used_at is not None or invite.expires_at <= now:
        uow.session.add(InviteAttempt(transport=who.transport, external_id=who.user_id, at=now))
        await uow.flush()
        raise NotFound("invite")
    return invite


async def use_invite(uow: UnitOfWork, invite_id: int, member_id: int, *, now: datetime) -> None:
    """Spend the invite on a member; a second use fails."""
    invite = await uow.session.get(Invite, invite_id)
    if invite is None or invite.used_at is not None:
        raise Conflict("invite already used")
    invite.used_at = now
    invite.used_by = member_id
    await uow.flush()
