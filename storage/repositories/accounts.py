"""Accounts: a person's identity in one channel, and the member behind it."""

from __future__ import annotations

from sqlalchemy import bindparam, event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from storage.driver_sql import DriverStatement
from storage.models import Account, Member

_A = Account.__table__.c
MEMBER_ID = DriverStatement("SELECT member_id FROM accounts WHERE transport = ? AND external_id = ?",
                            [_A.transport, _A.external_id])
_KNOWN_MEMBER_IDS = "accounts.known_member_ids"


def remember_member_id(session: AsyncSession, transport: str, external_id: str, member_id: int | None) -> None:
    """Note the member id of an account read in this transaction by another statement (the
    update's start statement reads it with the dialog state): `member()` then needs no query.
    Forgotten at any flush or ORM statement of the session, either of which may change it."""
    session.info[_KNOWN_MEMBER_IDS] = {(transport, external_id): member_id}


@event.listens_for(Session, "after_flush")
def _forget_after_flush(session: Session, _context) -> None:
    session.info.pop(_KNOWN_MEMBER_IDS, None)


@event.listens_for(Session, "do_orm_execute")
def _forget_on_statement(state) -> None:
    state.session.info.pop(_KNOWN_MEMBER_IDS, None)


@event.listens_for(Session, "after_transaction_end")
def _forget_after_transaction(session: Session, _transaction) -> None:
    session.info.pop(_KNOWN_MEMBER_IDS, None)


# Built once: every update asks for it, and building an ORM statement (with the member's joined
# organisation and municipality) and its cache key cost more than running it.
WITH_MEMBER = (
    select(Account, Member)
    .outerjoin(Member, Member.id == Account.member_id)
    .where(Account.transport == bindparam("transport"), Account.external_id == bindparam("external_id"))
)


class AccountRepository:
    """Queries over accounts."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def with_member(self, who) -> tuple[Account | None, Member | None]:
        """The account for (transport, user id) and its member, in one query."""
        parameters = {"transport": who.transport, "external_id": who.user_id}
        row = (await self.session.execute(WITH_MEMBER, parameters)).first()
        return (row[0], row[1]) if row else (None, None)

    async def member(self, who) -> Member | None:
        """The member behind (transport, user id), if registered. Most updates need only this, and
        during registration there is none: one driver-SQL look-up answers that without the ORM."""
        if self.session.new or self.session.dirty or self.session.deleted:
            await self.session.flush()  # driver SQL does not autoflush as ORM queries do
        known = self.session.info.get(_KNOWN_MEMBER_IDS, {})
        key = (who.transport, who.user_id)
        if key in known:
            member_id = known[key]
        else:
            member_id = (await MEMBER_ID.execute(self.session, who.transport, who.user_id)).scalar()
        return None if member_id is None else await self.session.get(Member, member_id)

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
