"""Consent to the processing of personal data: given, checked, withdrawn."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from storage.models import Consent, Municipality
from storage.unit_of_work import UnitOfWork

# Bump when the consent text itself (dialogs/flows/consent.py) changes: everyone is asked again.
CONSENT_TEXT_VERSION = "1"


def consent_version(municipality: Municipality) -> str:
    """The version of the consent a person sees: text version plus the municipality's revision."""
    return f"{CONSENT_TEXT_VERSION}.{municipality.consent_revision}"


async def current_consent(uow: UnitOfWork, who) -> Consent | None:
    """The person's consent if it is given, not withdrawn, and of the current version."""
    account = await uow.accounts.get(who)
    if account is None:
        return None
    consent = (
        await uow.session.execute(
            select(Consent)
            .where(Consent.account_id == account.id, Consent.withdrawn_at.is_(None))
            .order_by(Consent.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if consent is None:
        return None
    municipality = await uow.reference.municipality(consent.municipality_id)
    if municipality is None or consent.version != consent_version(municipality):
        return None
    return consent


async def give_consent(uow: UnitOfWork, who, *, municipality_id: int, now: datetime) -> Consent:
    """Record consent; this is the moment the account (chat id) starts to be stored."""
    municipality = await uow.reference.municipality(municipality_id)
    if municipality is None:
        raise ValueError("unknown municipality")
    account = await uow.accounts.get_or_create(who)
    consent = Consent(
        account_id=account.id, municipality_id=municipality.id, version=consent_version(municipality), given_at=now
    )
    uow.session.add(consent)
    await uow.flush()
    return consent


async def withdraw_all(uow: UnitOfWork, account_id: int, now: datetime) -> None:
    """Mark every consent of an account withdrawn."""
    await uow.session.execute(
        update(Consent).where(Consent.account_id == account_id, Consent.withdrawn_at.is_(None)).values(withdrawn_at=now)
    )
