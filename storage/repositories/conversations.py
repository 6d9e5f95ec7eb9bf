"""Dialog state per (transport, user): read and written with driver SQL on the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from storage.driver_sql import DriverStatement, json_value
from storage.models import Conversation, utcnow

TABLE = Conversation.__table__
_C = TABLE.c
LOAD = DriverStatement(
    "SELECT flow, screen, data, stack, view, nonce, version FROM conversations WHERE transport = ? AND external_id = ?",
    [_C.transport, _C.external_id],
)
SAVED = [_C.transport, _C.external_id, _C.flow, _C.screen, _C.data, _C.stack, _C.view, _C.nonce, _C.updated_at]


def upsert(source: str, version: str) -> str:
    """INSERT into the `SAVED` columns and `version` from `source` (VALUES or a SELECT), or
    UPDATE of the person's existing row to the same."""
    names = ", ".join(column.name for column in SAVED)
    updates = ", ".join(f"{column.name} = excluded.{column.name}" for column in SAVED[2:])
    return (f"INSERT INTO conversations ({names}, version) {source} "
            f"ON CONFLICT (transport, external_id) DO UPDATE SET {updates}, version = {version}")


# Every save raises the version.
SAVE = DriverStatement(upsert("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)", "conversations.version + 1"), SAVED)


@dataclass
class DialogState:
    """Where one person is: flow, screen, collected values, back stack, issued buttons."""

    flow: str
    screen: str
    data: dict[str, Any] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    view: dict[str, Any] = field(default_factory=dict)
    nonce: str = ""


def columns_of(state: DialogState) -> tuple:
    """The values of the `SAVED` columns after the key."""
    return state.flow, state.screen, state.data, state.stack, state.view, state.nonce, utcnow()


def state_of(flow: str, screen: str, data: Any, stack: Any, view: Any, nonce: str) -> DialogState:
    """The dialog state from the columns of its row, as driver SQL reads them."""
    return DialogState(
        flow, screen, dict(json_value(data) or {}), list(json_value(stack) or []), dict(json_value(view) or {}), nonce
    )


class ConversationRepository:
    """Load and save dialog state."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def load(self, transport: str, external_id: str) -> DialogState | None:
        row = (await LOAD.execute(self.session, transport, external_id)).first()
        return None if row is None else state_of(*row[:-1])

    async def save(self, transport: str, external_id: str, state: DialogState) -> None:
        await SAVE.execute(self.session, transport, external_id, *columns_of(state))

    async def forget(self, transport: str, external_id: str) -> None:
        await self.session.execute(
            delete(TABLE).where(TABLE.c.transport == transport, TABLE.c.external_id == external_id)
        )
