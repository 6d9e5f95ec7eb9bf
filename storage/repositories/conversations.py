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
LOADED = ("flow", "screen", "data", "stack", "view", "nonce", "version")  # the columns a load reads, in order
LOAD = DriverStatement(
    f"SELECT {', '.join(LOADED)} FROM conversations WHERE transport = ? AND external_id = ?",
    [_C.transport, _C.external_id],
)
SAVED = [_C.transport, _C.external_id, _C.flow, _C.screen, _C.data, _C.stack, _C.view, _C.nonce, _C.updated_at]
_STATE = SAVED[2:]  # the saved columns after the key


def insert(source: str) -> str:
    """INSERT of a state into the `SAVED` columns and `version` from `source` (VALUES or a SELECT)."""
    return f"INSERT INTO conversations ({', '.join(column.name for column in SAVED)}, version) {source}"


# Every save raises the version.
SAVE = DriverStatement(
    insert("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)") + " ON CONFLICT (transport, external_id) DO UPDATE SET "
    + ", ".join(f"{column.name} = excluded.{column.name}" for column in _STATE) + ", version = conversations.version + 1",
    SAVED,
)
# The state of an existing row, over the version read (part of `storage.repositories.handling`).
UPDATE_OVER = DriverStatement(
    "UPDATE conversations SET " + ", ".join(f"{column.name} = ?" for column in _STATE)
    + ", version = version + 1 WHERE transport = ? AND external_id = ? AND version = ?",
    [*_STATE, _C.transport, _C.external_id, _C.version],
)
_FORGOTTEN = "conversations.forgotten"


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
    """The values of the state's columns (`SAVED` after the key)."""
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
        """Delete the person's state; the unit remembers it did (see `forgotten`)."""
        await self.session.execute(
            delete(TABLE).where(TABLE.c.transport == transport, TABLE.c.external_id == external_id)
        )
        self.session.info.setdefault(_FORGOTTEN, set()).add((transport, external_id))

    def forgotten(self, transport: str, external_id: str) -> bool:
        """Whether this unit deleted the person's state (erasing their data): a state saved after
        that is a new row, not a change of the one read at the start."""
        return (transport, external_id) in self.session.info.get(_FORGOTTEN, ())
