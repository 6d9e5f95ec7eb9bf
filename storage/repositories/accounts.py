"""Accounts: a person's identity in one channel, and the member behind it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Account, Member


class AccountRepository:
    """Queries over accounts."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def with_member(self, who) -> tuple[Account | None, Member | None]:
        """The account for (transport, user id) and its member, in one query."""
        row = (
            await self.session.execute(
                select(Account, Member)
                .outerjoin(Member, Member.id == Account.member_id)
                .where(Account.transport == who.transport, Account.external_id == who.user_id)
            )
        ).first()
        return (row[0], row[1]) if row else (None, None)

    async def get(self, who) -> Account | None:
        return (
            await self.session.execute(
                select(Account).where(Account.transport == who.transport, Account.external_id == who.user_id)
            )
        ).scalar_one_or_none()

    async def get_or_create(self, who) -> Account:
        """The account for this identity, created (with the chat id only) if new."""
        account = await self.get(who)
        if account is None:
            account = Account(transport=who.transport, external_id=who.user_id, chat_id=who.chat_id)
            self.session.add(account)
            await self.session.flush()
        return account

    async def of_member(self, member_id: int) -> list[Account]:
        return list(
            (await self.session.execute(select(Account).where(Account.member_id == member_id))).scalars()
        )
