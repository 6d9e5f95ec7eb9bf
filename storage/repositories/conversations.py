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
_LOAD = "SELECT flow, screen, data, stack, view, nonce FROM conversations WHERE transport = ? AND external_id = ?"
LOAD = DriverStatement(_LOAD, [_C.transport, _C.external_id])
LOAD_LOCKED = DriverStatement(_LOAD + " FOR UPDATE", [_C.transport, _C.external_id])
SAVE = DriverStatement(
    "INSERT INTO conversations (transport, external_id, flow, screen, data, stack, view, nonce, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (transport, external_id) DO UPDATE SET "
    "flow = excluded.flow, screen = excluded.screen, data = excluded.data, stack = excluded.stack, "
    "view = excluded.view, nonce = excluded.nonce, updated_at = excluded.updated_at",
    [_C.transport, _C.external_id, _C.flow, _C.screen, _C.data, _C.stack, _C.view, _C.nonce, _C.updated_at],
)


@dataclass
class DialogState:
    """Where one person is: flow, screen, collected values, back stack, issued buttons."""

    flow: str
    screen: str
    data: dict[str, Any] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    view: dict[str, Any] = field(default_factory=dict)
    nonce: str = ""


def state_of(flow: str, screen: str, data: Any, stack: Any, view: Any, nonce: str) -> DialogState:
    """The dialog state from the columns of its row, as driver SQL reads them."""
    return DialogState(
        flow, screen, dict(json_value(data) or {}), list(json_value(stack) or []), dict(json_value(view) or {}), nonce
    )


class ConversationRepository:
    """Load and save dialog state."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def load(self, transport: str, external_id: str, *, lock: bool = False) -> DialogState | None:
        """The state, locking the row on PostgreSQL so replicas handle one user in order."""
        statement = LOAD_LOCKED if lock and self.session.bind.dialect.name == "postgresql" else LOAD
        row = (await statement.execute(self.session, transport, external_id)).first()
        return None if row is None else state_of(*row)

    async def save(self, transport: str, external_id: str, state: DialogState) -> None:
        await SAVE.execute(
            self.session, transport, external_id, state.flow, state.screen, state.data, state.stack, state.view,
            state.nonce, utcnow(),
        )

    async def forget(self, transport: str, external_id: str) -> None:
        await self.session.execute(
            delete(TABLE).where(TABLE.c.transport == transport, TABLE.c.external_id == external_id)
        )
