"""A unit of work: one session, its repositories, one explicit commit.

Services never commit: whoever opened the unit (the dialog engine for an update, a command,
a scheduled job) commits once at the end, so an update's effects land together or not at all.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.driver_sql import nothing_to_commit
from storage.repositories.accounts import AccountRepository
from storage.repositories.conversations import ConversationRepository, DialogState
from storage.repositories.handling import Outcome, Start, finish_update, start_update
from storage.repositories.inbox import InboxRepository
from storage.repositories.members import MemberRepository
from storage.repositories.reference import ReferenceRepository


class UnitOfWork:
    """Repositories over one session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.accounts = AccountRepository(session)
        self.members = MemberRepository(session)
        self.reference = ReferenceRepository(session)
        self.conversations = ConversationRepository(session)
        self.inbox = InboxRepository(session)

    async def start_update(self, transport: str, external_id: str, update_id: str | None,
                           prefetched: Start | None = None) -> Start:
        """Whether the update is still to be handled, and the person's dialog state
        (see `storage.repositories.handling`)."""
        return await start_update(self, transport, external_id, update_id, prefetched)

    async def finish_update(self, transport: str, external_id: str, update_id: str | None,
                            state: DialogState, start: Start, reply: str | None = None) -> Outcome:
        """Save the state an update produced and mark the update handled, keeping its `reply`
        until sent, unless someone else handled it or changed the state meanwhile; commit after
        `Outcome.SAVED`."""
        return await finish_update(self, transport, external_id, update_id, state, start, reply)

    @property
    def dialect(self) -> str:
        return self.session.bind.dialect.name

    async def commit(self) -> None:
        if nothing_to_commit(self.session):
            return  # each statement was a transaction of its own; closing the unit ends the rest
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()

    async def flush(self) -> None:
        await self.session.flush()


class Database:
    """The session factory; `unit()` opens a unit of work as an async context manager."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    def unit(self) -> "_UnitContext":
        return _UnitContext(self.sessions)


class _UnitContext:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._session: AsyncSession | None = None

    async def __aenter__(self) -> UnitOfWork:
        self._session = self._sessions()
        return UnitOfWork(self._session)

    async def __aexit__(self, *exc) -> None:
        assert self._session is not None
        try:
            if exc[0] is not None:
                await self._session.rollback()
        finally:
            # Closing ends an uncommitted transaction without expiring what was read.
            await self._session.close()
