"""What a flow's callables see: who is talking, the values collected so far, storage, the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dialogs.model import ExternalId, OutMessage
from storage.models import Account, Member
from storage.unit_of_work import UnitOfWork


@dataclass
class Ctx:
    """The context of one event, handed to texts, actions, choice sources and validators."""

    who: ExternalId
    data: dict[str, Any]
    uow: UnitOfWork
    now: datetime
    config: Any = None
    query: str | None = None
    said: list[OutMessage] = field(default_factory=list)
    _account: Account | None = None
    _member: Member | None = None
    _account_loaded: bool = False
    _member_loaded: bool = False

    async def account(self) -> Account | None:
        """The account of this channel identity, if one was created (after consent)."""
        if not self._account_loaded:
            self._account, self._member = await self.uow.accounts.with_member(self.who)
            self._account_loaded = self._member_loaded = True
        return self._account

    async def member(self) -> Member | None:
        """The registered member behind this account, if any."""
        if not self._member_loaded:
            self._member = await self.uow.accounts.member(self.who)
            self._member_loaded = True
        return self._member

    def forget_cached(self) -> None:
        """Drop the cached account and member after an action changed them."""
        self._account_loaded = self._member_loaded = False
        self._account = self._member = None

    def touch(self) -> None:
        """Note the member's activity (at most twice a day: it drives the retention period)."""
        member = self._member
        if member is not None and self.now - member.last_seen_at > timedelta(hours=12):
            member.last_seen_at = self.now

    def say(self, text: str) -> None:
        """Send a message before the next screen (a confirmation, a warning)."""
        self.said.append(OutMessage(text=text))
