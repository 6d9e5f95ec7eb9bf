"""Dialog state per (transport, user): read and written with Core statements on the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Conversation, utcnow

TABLE = Conversation.__table__


@dataclass
class DialogState:
    """Where one person is: flow, screen, collected values, back stack, issued buttons."""

    flow: str
    screen: str
    data: dict[str, Any] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    view: dict[str, Any] = field(default_factory=dict)
    nonce: str = ""


def upsert(dialect: str, table, values: dict, keys: list[str]):
    """INSERT ... ON CONFLICT DO UPDATE for SQLite and PostgreSQL alike."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table).values(**values)
    updates = {name: statement.excluded[name] for name in values if name not in keys}
    return statement.on_conflict_do_update(index_elements=keys, set_=updates)


class ConversationRepository:
    """Load and save dialog state."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def load(self, transport: str, external_id: str, *, lock: bool = False) -> DialogState | None:
        """The state, locking the row on PostgreSQL so replicas handle one user in order."""
        statement = select(
            TABLE.c.flow, TABLE.c.screen, TABLE.c.data, TABLE.c.stack, TABLE.c.view, TABLE.c.nonce
        ).where(TABLE.c.transport == transport, TABLE.c.external_id == external_id)
        if lock and self.session.bind.dialect.name == "postgresql":
            statement = statement.with_for_update()
        row = (await self.session.execute(statement)).first()
        if row is None:
            return None
        return DialogState(row.flow, row.screen, dict(row.data or {}), list(row.stack or []), dict(row.view or {}), row.nonce)

    async def save(self, transport: str, external_id: str, state: DialogState) -> None:
        values = {
            "transport": transport,
            "external_id": external_id,
            "flow": state.flow,
            "screen": state.screen,
            "data": state.data,
            "stack": state.stack,
            "view": state.view,
            "nonce": state.nonce,
            "updated_at": utcnow(),
        }
        dialect = self.session.bind.dialect.name
        await self.session.execute(upsert(dialect, TABLE, values, ["transport", "external_id"]))

    async def forget(self, transport: str, external_id: str) -> None:
        await self.session.execute(
            delete(TABLE).where(TABLE.c.transport == transport, TABLE.c.external_id == external_id)
        )
