"""SQLite statements run in the event loop's own thread, under SQLAlchemy's asyncio API.

aiosqlite runs every statement in a helper thread and hands the result back through a queue
and a future: about 150 µs of CPU per statement for the hop, against 8 µs for the statement
itself on an indexed row (`python -m bench.load --breakdown` prints both). An update runs
about eight statements, so the hops were most of what an update cost. Here the aiosqlite
dialect of SQLAlchemy is given a connection that looks like aiosqlite's (coroutine methods)
but calls `sqlite3` directly: each call completes at once, with no thread and no queue.

The price: a statement blocks the event loop while it runs. For this bot's statements that is
microseconds; the longest are the coordinator's reports (milliseconds at a municipality's
scale). The process has one SQLite connection anyway (see `storage.db`), so every other
update's database work waited for them before too. A lock held by another process (a CLI
command writing) is waited for in SQLite's busy handler, blocking the loop for that long: the
busy timeout is kept short for that reason and a longer wait fails as "try again".
"""

from __future__ import annotations

import sqlite3
from typing import Any, Iterable

from sqlalchemy import exc


def execute(connection: sqlite3.Connection, sql: str, parameters: Any = ()) -> tuple[list[Any], int]:
    """A statement straight on `sqlite3`: (all its rows, its row count). Errors are raised as
    SQLAlchemy's (`IntegrityError`, `OperationalError`…), as from the engine: the dialog engine's
    "try again" depends on that."""
    try:
        cursor = connection.execute(sql, parameters)
        return cursor.fetchall(), cursor.rowcount
    except sqlite3.Error as error:
        raise exc.DBAPIError.instance(sql, parameters, error, sqlite3.Error) from error


class InlineCursor:
    """An aiosqlite-like cursor over a `sqlite3` cursor."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> "InlineCursor":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._cursor.close()

    def __aiter__(self) -> "InlineCursor":
        return self

    async def __anext__(self) -> Any:
        row = self._cursor.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row

    async def execute(self, sql: str, parameters: Any = ()) -> "InlineCursor":
        self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> "InlineCursor":
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size) if size is not None else self._cursor.fetchmany()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class InlineConnection:
    """An aiosqlite-like connection over a `sqlite3` connection in autocommit mode (SQLAlchemy
    issues BEGIN itself: see `storage.db`)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The `sqlite3` connection itself (driver SQL runs on it: `storage.driver_sql`)."""
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def begin_immediate(self) -> None:
        """BEGIN IMMEDIATE straight on the driver (called from SQLAlchemy's begin event, where a
        statement through the engine costs ten times more than the statement)."""
        execute(self._conn, "BEGIN IMMEDIATE")

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close at once (SQLAlchemy's terminate, for a connection it gives up on)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def inline_creator(path: str, *, timeout: float):
    """An `async_creator` for `create_async_engine`: opens `path` with `sqlite3`."""

    async def create() -> InlineConnection:
        # check_same_thread=False: the pool may close a connection from the thread that garbage-
        # collects it; statements themselves only ever run in the event loop's thread.
        return InlineConnection(
            sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        )

    return create
