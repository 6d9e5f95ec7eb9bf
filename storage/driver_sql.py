"""Hot-path statements as driver SQL: written once, bound with the columns' own type processing.

Every update runs a few statements (claim its journal row, load and save the dialog state).
Through SQLAlchemy Core each costs a statement build, a cache key and a result pipeline:
0.3–0.6 ms of CPU; as driver SQL about 0.04 ms (`python -m bench.load --breakdown`). The text
uses `?` placeholders and is rewritten to `$1, $2…` for asyncpg. Values go through the bound
columns' own bind processors (UTC timestamps, JSON), so what is stored is exactly what Core and
the ORM would store, and they read it back unchanged.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Sequence

from sqlalchemy import Column, event, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from storage.sqlite_inline import InlineConnection

_CONNECTION = "driver_sql.connection"
_SQLITE = "driver_sql.sqlite"


@event.listens_for(Session, "after_transaction_end")
def _forget_connection(session: Session, _transaction) -> None:
    session.info.pop(_CONNECTION, None)
    session.info.pop(_SQLITE, None)


class DriverResult:
    """Rows and row count of a statement run straight on `sqlite3` (the part of SQLAlchemy's
    cursor result the hot path uses)."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list[tuple], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def __iter__(self):
        return iter(self.rows)

    def first(self) -> tuple | None:
        return self.rows[0] if self.rows else None

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


async def _sqlite_of(connection: AsyncConnection) -> sqlite3.Connection | None:
    """The `sqlite3` connection under an in-thread SQLite connection (None for other drivers)."""
    driver = (await connection.get_raw_connection()).driver_connection
    return driver.sqlite if isinstance(driver, InlineConnection) else None


async def connection_of(session: AsyncSession) -> AsyncConnection:
    """The connection of the session's transaction, remembered until the transaction ends:
    `AsyncSession.connection()` costs a greenlet hop per call, about as much as a statement."""
    connection = session.info.get(_CONNECTION)
    if connection is None:
        connection = session.info[_CONNECTION] = await session.connection()
    return connection


class DriverStatement:
    """One statement in `?` style; `columns` name the column each placeholder binds to."""

    def __init__(self, sql: str, columns: Sequence[Column]) -> None:
        if sql.count("?") != len(columns):
            raise ValueError("one column per placeholder")
        self.sql = sql
        self.columns = list(columns)
        self._compiled: dict[str, tuple[str, list[Any]]] = {}

    def _for(self, dialect: Dialect) -> tuple[str, list[Any]]:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            sql = self.sql
            if dialect.paramstyle == "numeric_dollar":  # asyncpg
                parts = sql.split("?")
                sql = parts[0] + "".join(f"${index}{part}" for index, part in enumerate(parts[1:], 1))
            elif dialect.paramstyle != "qmark":  # the SQLite drivers take the text as written
                raise NotImplementedError(f"driver SQL for paramstyle {dialect.paramstyle}")
            processors = [column.type._cached_bind_processor(dialect) for column in self.columns]
            compiled = self._compiled[dialect.name] = (sql, processors)
        return compiled

    async def execute(self, target: AsyncSession | AsyncConnection, *values: Any):
        """Run in the session's (or connection's) transaction; returns the driver-level result.

        On SQLite the statement runs straight on `sqlite3`, inside the transaction SQLAlchemy
        began (BEGIN IMMEDIATE, `storage.db`): SQLAlchemy's execution around a statement costs
        several times the statement. Errors are raised as SQLAlchemy's, as from the engine."""
        if isinstance(target, AsyncSession):
            connection = await connection_of(target)
            raw = target.info.get(_SQLITE, False)
            if raw is False:
                raw = target.info[_SQLITE] = await _sqlite_of(connection)
        else:
            connection, raw = target, await _sqlite_of(target)
        sql, processors = self._for(connection.dialect)
        bound = tuple(value if process is None else process(value) for process, value in zip(processors, values))
        if raw is None:
            return await connection.exec_driver_sql(sql, bound)
        try:
            cursor = raw.execute(sql, bound)
            return DriverResult(cursor.fetchall(), cursor.rowcount)
        except sqlite3.Error as error:
            raise exc.DBAPIError.instance(sql, bound, error, sqlite3.Error) from error


def many(statement_head: str, row: str, count: int, tail: str = "") -> str:
    """`INSERT … VALUES (?, ?), (?, ?) …` for `count` rows."""
    return statement_head + ", ".join([row] * count) + tail


def json_value(value: Any) -> Any:
    """A JSON column read through driver SQL: text on both drivers here, parsed once."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value
