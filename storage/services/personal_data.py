"""A person's rights over their data (152-ФЗ): see it, export it, have it destroyed.

Export and erasure follow the schema itself: every table that references a member (directly, or
through a row that does) is found in the metadata, so a feature added later is covered without
being listed here. Features register hooks for what the schema cannot tell: free-text answers
that must be destroyed while the rest of a row stays for the aggregates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Awaitable, Callable

from sqlalchemy import Table, delete, select, update

from storage.models import Account, AuditRecord, Consent, InviteAttempt, Member
from storage.models_all import Base
from storage.unit_of_work import UnitOfWork

MEMBERS = Member.__table__
# Tables whose rows stay for the aggregates with the person key removed (their FK is nullable
# and the row carries no other personal data once the feature's hook has cleared free text).
EraseHook = Callable[[UnitOfWork, int], Awaitable[None]]
ERASE_HOOKS: list[EraseHook] = []
SKIP_IN_EXPORT = {"inbox", "audit_log", "invite_attempts", "link_codes", "link_attempts"}


def erase_hook(hook: EraseHook) -> EraseHook:
    """Register a feature's hook, run before the generic erasure (e.g. delete free-text answers)."""
    ERASE_HOOKS.append(hook)
    return hook


@dataclass(frozen=True)
class Reference:
    """A foreign key from `table.column` to `target`."""

    table: Table
    column: str
    target: Table
    nullable: bool


def references_to(target: Table) -> list[Reference]:
    """Every foreign key in the schema that points at `target`."""
    found = []
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            for key in column.foreign_keys:
                if key.column.table is target:
                    found.append(Reference(table, column.name, target, column.nullable))
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


async def export_member(uow: UnitOfWork, member_id: int) -> dict[str, Any]:
    """Everything stored about a member, table by table (rows that reference them directly)."""
    member = await uow.members.get(member_id)
    if member is None:
        return {}
    result: dict[str, Any] = {
        "member": {c.name: _plain(getattr(member, c.key)) for c in MEMBERS.columns},
    }
    for reference in references_to(MEMBERS):
        if reference.table.name in SKIP_IN_EXPORT:
            continue
        rows = await uow.session.execute(
            select(reference.table).where(reference.table.c[reference.column] == member_id)
        )
        items = [{key: _plain(value) for key, value in row._mapping.items()} for row in rows]
        if items:
            result.setdefault(reference.table.name, []).extend(items)
    accounts = await uow.accounts.of_member(member_id)
    for account in accounts:
        rows = await uow.session.execute(select(Consent).where(Consent.account_id == account.id))
        result.setdefault("consents", []).extend(
            {"version": c.version, "given_at": _plain(c.given_at), "withdrawn_at": _plain(c.withdrawn_at)}
            for c in rows.scalars()
        )
    return result


def export_text(data: dict[str, Any]) -> str:
    """The export as readable text: a section per table, a line per field."""
    lines = ["Ваши данные, которые хранит бот", ""]
    for section, content in data.items():
        lines.append(f"== {section} ==")
        rows = content if isinstance(content, list) else [content]
        for row in rows:
            for key, value in row.items():
                lines.append(f"{key}: {json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else value}")
            lines.append("")
    return "\n".join(lines)


async def _erase_rows(uow: UnitOfWork, table: Table, where, counts: dict[str, int], depth: int = 0) -> None:
    """Delete rows of `table`, first detaching or deleting the rows that reference them."""
    if depth > 8:
        raise RuntimeError("reference chain too deep")
    primary = list(table.primary_key.columns)
    if len(primary) == 1:
        ids = select(primary[0]).where(where)
        for reference in references_to(table):
            column = reference.table.c[reference.column]
            if reference.nullable:
                result = await uow.session.execute(
                    update(reference.table).where(column.in_(ids)).values({reference.column: None})
                )
            else:
                await _erase_rows(uow, reference.table, column.in_(ids), counts, depth + 1)
                continue
            counts[f"{reference.table.name}.detached"] = counts.get(f"{reference.table.name}.detached", 0) + (
                result.rowcount or 0
            )
    result = await uow.session.execute(delete(table).where(where))
    counts[table.name] = counts.get(table.name, 0) + (result.rowcount or 0)


async def erase_member(uow: UnitOfWork, member_id: int, *, now: datetime, reason: str) -> dict[str, int]:
    """Destroy a member's personal data and links; answers stay for aggregates without the person key.

    `reason` is who asked: "self", "consent_withdrawn" or "retention". Leaves an audit record that
    says what was destroyed and when, with no personal data in it.
    """
    counts: dict[str, int] = {}
    for hook in ERASE_HOOKS:
        await hook(uow, member_id)
    for account in await uow.accounts.of_member(member_id):
        await uow.conversations.forget(account.transport, account.external_id)
        await uow.session.execute(
            delete(InviteAttempt).where(
                InviteAttempt.transport == account.transport, InviteAttempt.external_id == account.external_id
            )
        )
        counts["conversations"] = counts.get("conversations", 0) + 1
    accounts_of_member = Account.__table__.c.member_id == member_id
    await _erase_rows(uow, Account.__table__, accounts_of_member, counts)
    await _erase_rows(uow, MEMBERS, MEMBERS.c.id == member_id, counts)
    uow.session.add(
        AuditRecord(at=now, action="personal_data.erased", actor=reason, subject=f"member:{member_id}", details=counts)
    )
    await uow.flush()
    return counts


async def erase_account(uow: UnitOfWork, account_id: int, *, now: datetime, reason: str) -> dict[str, int]:
    """Destroy an account that never became a member (consent given, registration not finished)."""
    counts: dict[str, int] = {}
    account = await uow.session.get(Account, account_id)
    if account is None:
        return counts
    await uow.conversations.forget(account.transport, account.external_id)
    await _erase_rows(uow, Account.__table__, Account.__table__.c.id == account_id, counts)
    uow.session.add(
        AuditRecord(at=now, action="personal_data.erased", actor=reason, subject=f"account:{account_id}", details=counts)
    )
    await uow.flush()
    return counts


async def erase_inactive(uow: UnitOfWork, *, now: datetime) -> int:
    """The retention job: erase members inactive past their municipality's retention period."""
    rows = await uow.session.execute(select(Member))
    erased = 0
    for member in rows.scalars().all():
        months = member.municipality.retention_months if member.municipality else 36
        if member.last_seen_at < now - timedelta(days=30 * months):
            await erase_member(uow, member.id, now=now, reason="retention")
            erased += 1
    return erased
