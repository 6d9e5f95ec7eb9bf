"""The database engine: SQLite (WAL, busy timeout, immediate writes) or PostgreSQL."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage import asyncpg_reads
from storage.sqlite_inline import InlineConnection, inline_creator

log = logging.getLogger(__name__)
# How long a statement waits for another process's write lock. The wait blocks the event loop
# (statements run in its thread), so it is short: a longer lock fails as "try again".
BUSY_TIMEOUT = 5.0
PING_IDLE = 5.0  # seconds a pooled PostgreSQL connection rests before it is pinged at checkout
_RESTING_SINCE = "resting_since"


def is_sqlite(url: str) -> bool:
    """Whether the URL names a SQLite database."""
    return url.startswith("sqlite")


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Create the async engine; on SQLite make the file's folder and set the pragmas."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # One connection: every transaction writes (BEGIN IMMEDIATE), so SQLite runs them one at a
        # time anyway; waiting in the pool's queue is first come, first served, while several
        # connections wait for the file lock in SQLite's busy handler, which sleeps in growing
        # steps and made the slowest updates wait seconds under load. No code may open a second
        # unit of work while holding one (it would wait for itself).
        # Statements run in the event loop's thread (storage.sqlite_inline): 5× less CPU each.
        # hide_parameters: error messages must not carry personal data from bound values into logs.
        engine = create_async_engine(
            url, echo=echo, hide_parameters=True, pool_size=1, max_overflow=0, pool_timeout=60,
            async_creator=inline_creator(database or ":memory:", timeout=BUSY_TIMEOUT),
        )
        _configure_sqlite(engine)
        return engine
    # The pool keeps a connection for each update in flight (handlers.telegram.polling.CONCURRENCY)
    # plus the journal, the presence slot and the scheduler's jobs, so the steady load never goes
    # into overflow, whose connections are opened and closed for each use.
    options: dict = {}
    if make_url(url).get_driver_name() == "asyncpg":
        options["module"] = asyncpg_reads.reads_first_dbapi()  # a unit's first reads skip BEGIN/COMMIT
    engine = create_async_engine(url, echo=echo, pool_size=16, max_overflow=10, hide_parameters=True, **options)
    if options:
        asyncpg_reads.install(engine.sync_engine)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """`pool_pre_ping`, but only for a connection that rested `PING_IDLE` seconds or more.

    A ping on asyncpg is three round trips (BEGIN, an empty query, ROLLBACK): under load that
    was a third of an update's database work, for connections used milliseconds before. A
    connection that has rested may have been closed by the server or a firewall, so it is
    pinged and, if dead, replaced before use. A connection that dies while in use fails its
    statement; SQLAlchemy sees the disconnect and invalidates the pool, and the engine answers
    "попробуйте ещё раз" (tests/dialogs/test_outages.py).
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def on_checkin(_dbapi_connection, record) -> None:
        record.info[_RESTING_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def on_checkout(dbapi_connection, record, _proxy) -> None:
        since = record.info.get(_RESTING_SINCE)
        if since is None or time.monotonic() - since < PING_IDLE:
            return
        try:
            dbapi_connection.ping()
        except Exception as error:  # the pool replaces the connection and checks out again
            raise exc.DisconnectionError(f"connection dead after resting ({type(error).__name__})") from error


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL + busy timeout, and BEGIN IMMEDIATE so a read-then-write never fails as busy."""

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        # SQLAlchemy, not the driver, decides when transactions begin (pysqlite recipe): the
        # connection is opened in autocommit mode (isolation_level None).
        assert dbapi_connection.isolation_level is None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        mode = cursor.fetchone()[0]
        if mode.lower() not in ("wal", "memory"):
            log.warning("sqlite journal_mode is %s, not wal", mode)
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection) -> None:
        inline: InlineConnection = connection.connection.driver_connection  # the engine's creator makes these
        inline.begin_immediate()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
