"""Hot-path statements as driver SQL: written once, bound with the columns' own type processing.

Every update runs a few statements (claim its journal row, load and save the dialog state).
Through SQLAlchemy Core each costs a statement build, a cache key and a result pipeline:
0.3–0.6 ms of CPU. Driver SQL runs straight on the driver (sqlite3; asyncpg through SQLAlchemy's
own adapter, its lock, transaction and prepared-statement cache), inside the transaction
SQLAlchemy began, and raises SQLAlchemy's exceptions: tens of microseconds plus the round trip.
The text uses `?` placeholders and is rewritten to `$1, $2…` for asyncpg. Values go through the
bound columns' own bind processors (UTC timestamps, JSON), so what is stored is exactly what
Core and the ORM would store, and they read it back unchanged.
"""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any, Sequence

from sqlalchemy import Column, event, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from storage import sqlite_inline
from storage.sqlite_inline import InlineConnection

_CONNECTION = "driver_sql.connection"
_RUNNER = "driver_sql.runner"


@event.listens_for(Session, "after_transaction_end")
def _forget_connection(session: Session, _transaction) -> None:
    session.info.pop(_CONNECTION, None)
    session.info.pop(_RUNNER, None)


class DriverResult:
    """Rows and row count of a statement run straight on the driver (the part of SQLAlchemy's
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


class _SqliteRunner:
    """Statements straight on `sqlite3`, in the transaction SQLAlchemy began (BEGIN IMMEDIATE)."""

    __slots__ = ("dialect", "raw")

    def __init__(self, dialect: Dialect, raw: sqlite3.Connection) -> None:
        self.dialect = dialect
        self.raw = raw

    async def run(self, sql: str, bound: tuple, standalone: bool = False) -> DriverResult:
        return DriverResult(*sqlite_inline.execute(self.raw, sql, bound))

    def in_transaction(self) -> bool:
        return self.raw.in_transaction


class _AsyncpgRunner:
    """Statements straight on asyncpg, through SQLAlchemy's adapter as its own cursor does it:
    under the adapter's lock, in the transaction the adapter starts, with its prepared-statement
    cache. Errors are translated by the adapter and raised as SQLAlchemy's; a disconnect
    invalidates the connection, as SQLAlchemy's execution would."""

    __slots__ = ("dialect", "connection", "adapter")
    _STATUS = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")

    def __init__(self, connection: AsyncConnection, adapter: Any) -> None:
        self.dialect = connection.dialect
        self.connection = connection
        self.adapter = adapter

    @classmethod
    def usable(cls, adapter: Any) -> bool:
        """Whether the adapter has the parts used here (SQLAlchemy 2.0–2.1's asyncpg adapter)."""
        return all(hasattr(adapter, name) for name in (
            "_execute_mutex", "_transaction", "_start_transaction", "_prepare", "_invalidate_schema_cache_asof",
            "_handle_exception"))

    async def run(self, sql: str, bound: tuple, standalone: bool = False) -> DriverResult:
        adapter = self.adapter
        try:
            async with adapter._execute_mutex:
                # The adapter sends BEGIN lazily, before the first statement of the transaction
                # SQLAlchemy began. A standalone statement does not need it: until another
                # statement starts the transaction, it runs as a transaction of its own (as does
                # any statement on a connection SQLAlchemy has not begun).
                if adapter._transaction is None and not standalone and self.connection.in_transaction():
                    await adapter._start_transaction()
                prepared, _ = await adapter._prepare(sql, adapter._invalidate_schema_cache_asof)
                rows = await prepared.fetch(*bound)
                status = prepared.get_statusmsg() or ""
        except Exception as error:
            raise await self._translated(sql, bound, error) from error
        matched = self._STATUS.match(status)
        return DriverResult(rows, int(matched.group(1)) if matched else -1)

    def in_transaction(self) -> bool:
        return self.adapter._transaction is not None

    async def _translated(self, sql: str, bound: tuple, error: Exception) -> Exception:
        dialect = self.dialect
        dbapi_error = error
        if not isinstance(error, dialect.loaded_dbapi.Error):
            try:
                self.adapter._handle_exception(error)  # raises the adapter's DBAPI error
            except Exception as translated:
                dbapi_error = translated
        if not isinstance(dbapi_error, dialect.loaded_dbapi.Error):
            return dbapi_error
        disconnect = dialect.is_disconnect(dbapi_error, self.adapter, None)
        if disconnect:
            await self.connection.invalidate()
        return exc.DBAPIError.instance(sql, bound, dbapi_error, dialect.loaded_dbapi.Error,
                                       connection_invalidated=disconnect, dialect=dialect)


class _EngineRunner:
    """Any other driver: through SQLAlchemy's own driver-SQL execution."""

    __slots__ = ("dialect", "connection")

    def __init__(self, connection: AsyncConnection) -> None:
        self.dialect = connection.dialect
        self.connection = connection

    async def run(self, sql: str, bound: tuple, standalone: bool = False):
        if self.connection.in_transaction():
            return await self.connection.exec_driver_sql(sql, bound)
        async with self.connection.begin():  # not begun: the statement is its own transaction
            return await self.connection.exec_driver_sql(sql, bound)

    def in_transaction(self) -> bool:
        return self.connection.in_transaction()


async def _runner_of(connection: AsyncConnection):
    """How driver SQL runs on this connection: straight on the driver where we know it."""
    sync = connection.sync_connection
    if sync is not None and not sync.closed and not sync.invalidated:
        pooled = sync.connection  # checked out and valid: no I/O, so no greenlet hop needed
    else:
        pooled = await connection.get_raw_connection()
    driver = pooled.driver_connection
    if isinstance(driver, InlineConnection):
        return _SqliteRunner(connection.dialect, driver.sqlite)
    if connection.dialect.driver == "asyncpg" and _AsyncpgRunner.usable(pooled.dbapi_connection):
        return _AsyncpgRunner(connection, pooled.dbapi_connection)
    return _EngineRunner(connection)


async def connection_of(session: AsyncSession) -> AsyncConnection:
    """The connection of the session's transaction, remembered until the transaction ends:
    `AsyncSession.connection()` costs a greenlet hop per call, about as much as a statement."""
    connection = session.info.get(_CONNECTION)
    if connection is None:
        connection = session.info[_CONNECTION] = await session.connection()
    return connection


def nothing_to_commit(session: AsyncSession) -> bool:
    """Whether a commit of the session would send nothing: no ORM change is pending and the
    driver holds no transaction (only standalone statements ran, each committed on its own).
    Skipping such a commit saves SQLAlchemy's commit machinery, about 0.1 ms of CPU."""
    runner = session.info.get(_RUNNER)
    return (runner is not None and not runner.in_transaction()
            and not (session.new or session.dirty or session.deleted))


class DriverStatement:
    """One statement in `?` style; `columns` name the column each placeholder binds to.

    A `standalone` statement is correct on its own as well as inside the unit's transaction: on
    PostgreSQL, when the unit has run nothing else yet, it runs without BEGIN and COMMIT round
    trips (each costs the event loop about as much CPU as the statement itself)."""

    def __init__(self, sql: str, columns: Sequence[Column], *, standalone: bool = False) -> None:
        if sql.count("?") != len(columns):
            raise ValueError("one column per placeholder")
        self.sql = sql
        self.columns = list(columns)
        self.standalone = standalone
        self._compiled: dict[str, tuple[str, list[tuple[int, Any]]]] = {}

    def _for(self, dialect: Dialect) -> tuple[str, list[tuple[int, Any]]]:
        """The text for the dialect's paramstyle, and (position, processor) of the placeholders
        whose column type processes its values on this dialect."""
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            sql = self.sql
            if dialect.paramstyle == "numeric_dollar":  # asyncpg
                parts = sql.split("?")
                sql = parts[0] + "".join(f"${index}{part}" for index, part in enumerate(parts[1:], 1))
            elif dialect.paramstyle != "qmark":  # the SQLite drivers take the text as written
                raise NotImplementedError(f"driver SQL for paramstyle {dialect.paramstyle}")
            processors = [(index, process) for index, column in enumerate(self.columns)
                          if (process := column.type._cached_bind_processor(dialect)) is not None]
            compiled = self._compiled[dialect.name] = (sql, processors)
        return compiled

    async def execute(self, target: AsyncSession | AsyncConnection, *values: Any):
        """Run in the session's (or connection's) transaction; returns rows and a row count. On
        a connection not begun, the statement is a transaction of its own (committed when it
        returns).

        The statement runs straight on the driver (sqlite3, asyncpg), inside the transaction
        SQLAlchemy began: SQLAlchemy's execution around a statement costs several times the
        statement itself. Errors are raised as SQLAlchemy's, as from the engine."""
        if isinstance(target, AsyncSession):
            runner = target.info.get(_RUNNER)
            if runner is None:
                runner = target.info[_RUNNER] = await _runner_of(await connection_of(target))
        else:
            runner = await _runner_of(target)
        sql, processors = self._for(runner.dialect)
        if processors:
            values = list(values)
            for index, process in processors:
                values[index] = process(values[index])
        return await runner.run(sql, tuple(values), self.standalone)


def many(statement_head: str, row: str, count: int, tail: str = "") -> str:
    """`INSERT … VALUES (?, ?), (?, ?) …` for `count` rows."""
    return statement_head + ", ".join([row] * count) + tail


def json_value(value: Any) -> Any:
    """A JSON column read through driver SQL: text on both drivers here, parsed once."""
    return json.loads(value) if isinstance(value, (str, bytes)) else value
