"""Linking a second channel to a member: a one-time code issued in one channel, typed in the other.

The code is six digits, valid for 15 minutes, good for one use; wrong codes are counted per
person and in all, so guessing is slow (five tries per person, a hundred in all, per 15 min).
The redeeming account must have no registration of its own: merging two profiles is a
coordinator's job, not a code's.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update

from storage.models import Account, AuditRecord, Member
from storage.models_linking import LinkAttempt, LinkCode
from storage.services.errors import Conflict, Forbidden, NotFound
from storage.services.personal_data import erase_hook
from storage.unit_of_work import UnitOfWork

CODE_LIFETIME = timedelta(minutes=15)
ATTEMPT_WINDOW = timedelta(minutes=15)
MAX_FAILURES = 5
MAX_FAILURES_TOTAL = 100
CODE_DIGITS = 6


class TooManyAttempts(Conflict):
    """Too many wrong codes lately (from this person, or from everyone together)."""


class AlreadyLinked(Conflict):
    """This account already belongs to the member the code was issued for."""


class SeparateProfile(Conflict):
    """This account has a registration of its own."""


class SameChannel(Conflict):
    """The member already has an account in this channel."""


def normalise_code(text: str) -> str | None:
    """Six digits, allowing spaces and dashes in between; None for anything else."""
    digits = re.sub(r"[\s\-]", "", text)
    return digits if re.fullmatch(rf"\d{{{CODE_DIGITS}}}", digits) else None


def hash_code(code: str) -> str:
    """Codes are stored hashed; with six digits that only keeps live codes off a casual look —
    their short life and single use are the real protection."""
    return hashlib.sha256(f"link:{code}".encode()).hexdigest()


async def purge_expired(uow: UnitOfWork, *, now: datetime) -> None:
    """Forget expired codes and old wrong tries (they hold channel ids); runs on every issue and redeem."""
    await uow.session.execute(delete(LinkCode).where(LinkCode.expires_at <= now))
    await uow.session.execute(delete(LinkAttempt).where(LinkAttempt.at < now - ATTEMPT_WINDOW))


@erase_hook
async def _forget_attempts(uow: UnitOfWork, member_id: int) -> None:
    """Wrong tries are keyed by channel id, not by member: erase them with the member's accounts."""
    for account in await uow.accounts.of_member(member_id):
        await uow.session.execute(
            delete(LinkAttempt).where(
                LinkAttempt.transport == account.transport, LinkAttempt.external_id == account.external_id
            )
        )


async def issue_link_code(uow: UnitOfWork, who, *, now: datetime) -> tuple[str, datetime]:
    """A new code for the member behind this account (earlier unused ones stop working): (code, expires at)."""
    account = await uow.accounts.get(who)
    if account is None or account.member_id is None:
        raise NotFound("no registered member behind this account")
    await purge_expired(uow, now=now)
    await uow.session.execute(
        delete(LinkCode).where(LinkCode.member_id == account.member_id, LinkCode.used_at.is_(None))
    )
    while True:
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        taken = (
            await uow.session.execute(select(LinkCode.id).where(LinkCode.code_hash == hash_code(code)))
        ).first()
        if taken is None:
            break
    expires_at = now + CODE_LIFETIME
    uow.session.add(
        LinkCode(code_hash=hash_code(code), member_id=account.member_id, issued_by=account.id,
                 created_at=now, expires_at=expires_at)
    )
    await uow.flush()
    return code, expires_at


async def _check_rate(uow: UnitOfWork, who, now: datetime) -> None:
    await purge_expired(uow, now=now)
    mine = (
        await uow.session.execute(
            select(func.count(LinkAttempt.id)).where(
                LinkAttempt.transport == who.transport, LinkAttempt.external_id == who.user_id
            )
        )
    ).scalar_one()
    total = (await uow.session.execute(select(func.count(LinkAttempt.id)))).scalar_one()
    if mine >= MAX_FAILURES or total >= MAX_FAILURES_TOTAL:
        raise TooManyAttempts("too many wrong link codes")


async def redeem_link_code(uow: UnitOfWork, who, code: str, *, now: datetime) -> Member:
    """Attach this account to the member the code was issued for; return that member.

    Raises TooManyAttempts, NotFound (wrong, used or expired code: the try is counted),
    AlreadyLinked, SeparateProfile, SameChannel, or Forbidden when the account does not exist
    yet (it is created with consent, which linking needs like registration does).
    """
    await _check_rate(uow, who, now)
    normalised = normalise_code(code)
    link = None
    if normalised is not None:
        link = (
            await uow.session.execute(select(LinkCode).where(LinkCode.code_hash == hash_code(normalised)))
        ).scalar_one_or_none()
    if link is None or link.used_at is not None or link.expires_at <= now:
        uow.session.add(LinkAttempt(transport=who.transport, external_id=who.user_id, at=now))
        await uow.flush()
        raise NotFound("link code")
    account = await uow.accounts.get(who)
    if account is None:
        raise Forbidden("consent first")
    if account.member_id == link.member_id:
        raise AlreadyLinked("already linked")
    if account.member_id is not None:
        raise SeparateProfile("this account is registered separately")
    same_channel = (
        await uow.session.execute(
            select(Account.id).where(Account.member_id == link.member_id, Account.transport == who.transport)
        )
    ).first()
    if same_channel is not None:
        raise SameChannel("the member already has an account in this channel")
    member = await uow.members.get(link.member_id)
    if member is None:
        raise NotFound("member")
    # Claim the code atomically: of two people typing it at once, exactly one wins.
    claimed = await uow.session.execute(
        update(LinkCode.__table__)
        .where(LinkCode.__table__.c.id == link.id, LinkCode.__table__.c.used_at.is_(None))
        .values(used_at=now, used_by=account.id)
    )
    if claimed.rowcount != 1:
        raise NotFound("link code")
    account.member_id = member.id
    account.unreachable_at = None
    uow.session.add(
        AuditRecord(at=now, action="account.linked", actor=f"account:{account.id}", subject=f"member:{member.id}",
                    details={"transport": who.transport})
    )
    await uow.flush()
    return member


async def linked_transports(uow: UnitOfWork, member_id: int) -> list[str]:
    """The channels a member can be reached in, in the order the accounts were created."""
    accounts = await uow.accounts.of_member(member_id)
    seen: list[str] = []
    for account in sorted(accounts, key=lambda a: a.id):
        if account.transport not in seen:
            seen.append(account.transport)
    return seen


async def unlink_channel(uow: UnitOfWork, who, transport: str, *, now: datetime) -> Member:
    """Detach the profile's accounts in `transport`, asked from another channel (one cannot cut
    off the channel one is using). The detached account keeps its consent but no longer shares the
    profile: its dialog starts afresh, and reminders go to the channel asked from if they went there."""
    account = await uow.accounts.get(who)
    if account is None or account.member_id is None:
        raise NotFound("not registered")
    if transport == who.transport:
        raise SameChannel("the channel in use cannot be unlinked from itself")
    member = await uow.members.get(account.member_id)
    detached = [other for other in await uow.accounts.of_member(member.id) if other.transport == transport]
    if not detached:
        raise NotFound("no account of the profile in this channel")
    for other in detached:
        other.member_id = None
        await uow.conversations.forget(other.transport, other.external_id)
    if member.preferred_transport == transport:
        member.preferred_transport = who.transport
    member.updated_at = now
    uow.session.add(
        AuditRecord(at=now, action="account.unlinked", actor=f"account:{account.id}", subject=f"member:{member.id}",
                    details={"transport": transport, "accounts": [other.id for other in detached]})
    )
    await uow.flush()
    return member


async def set_preferred_transport(uow: UnitOfWork, member: Member, transport: str, *, now: datetime) -> Member:
    """Send reminders and mailings to `transport` (one of the member's channels)."""
    if transport not in await linked_transports(uow, member.id):
        raise Conflict("the member has no account in this channel")
    member.preferred_transport = transport
    member.updated_at = now
    await uow.flush()
    return member


async def set_channel_allowed(uow: UnitOfWork, who, *, allowed: bool, now: datetime) -> bool:
    """Record that a person allowed or forbade the bot's messages in a channel (VK message_allow/deny).

    Forbidding marks the account unreachable, so mailings skip it; allowing clears the mark.
    Nothing is stored for someone without an account. Returns whether an account was found.
    """
    account = await uow.accounts.get(who)
    if account is None:
        return False
    if allowed:
        account.unreachable_at = None
    elif account.unreachable_at is None:
        account.unreachable_at = now
    await uow.flush()
    return True
