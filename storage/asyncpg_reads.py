"""PostgreSQL: a unit's plain reads before its first write run without BEGIN and COMMIT.

SQLAlchemy's asyncpg adapter sends BEGIN before the first statement of every transaction, and
COMMIT at its end: two round trips, each costing the event loop about as much CPU as the
statement itself. A unit that only reads through the ORM (a registered person opening a menu,
searching, paging) then paid four round trips where two do: its reads and the end of the update
(`storage.repositories.handling`, a standalone statement).

Here a plain SELECT that comes first in a unit runs on its own (asyncpg's implicit transaction).
The first statement that is not one (a write, a flush, `SELECT … FOR UPDATE`, an advisory lock)
begins the transaction as before, and everything after it is inside. Under READ COMMITTED, the
isolation level every unit uses, each statement sees the data committed when it starts whether
or not a transaction is open, so a read gives the same answer outside one; nothing is locked by
a plain read either way. A unit that sets another isolation level, a server-side cursor (stream
results) and any SELECT that takes a lock or has effects keep the transaction.

This uses private parts of SQLAlchemy's asyncpg adapter (`_start_transaction`, `_transaction`,
the `create` of its connection); `tests/storage/test_driver_sql.py` fails when they change.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection, AsyncAdapt_asyncpg_dbapi
from sqlalchemy.engine import Engine

# A SELECT that locks rows, takes an advisory lock, moves a sequence or creates a table (SELECT …
# INTO) needs its transaction.
_NEEDS_TRANSACTION = re.compile(
    r"\bFOR\s+(?:UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b|\bpg_\w*advisory|\b(?:nextval|setval|txid_current"
    r"|pg_current_xact_id|INTO)\b",
    re.IGNORECASE,
)
_PLAIN: dict[str, bool] = {}  # statement text → plain read (the texts come from SQLAlchemy's compiled cache)
_PLAIN_AT_MOST = 2000


def plain_read(statement: str) -> bool:
    """Whether a statement is a SELECT that neither locks nor changes anything."""
    known = _PLAIN.get(statement)
    if known is None:
        if len(_PLAIN) >= _PLAIN_AT_MOST:
            _PLAIN.clear()
        known = _PLAIN[statement] = bool(
            statement.lstrip()[:6].upper() == "SELECT" and not _NEEDS_TRANSACTION.search(statement)
        )
    return known


class ReadsFirstConnection(AsyncAdapt_asyncpg_connection):
    """The adapter's connection, skipping BEGIN for a statement `before_cursor_execute` marked."""

    __slots__ = ("skip_begin",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_begin = False

    async def _start_transaction(self) -> None:
        if self.skip_begin:
            self.skip_begin = False
            return
        await super()._start_transaction()


class ReadsFirstDbapi(AsyncAdapt_asyncpg_dbapi):
    """The adapter's DBAPI module, making `ReadsFirstConnection`s (as its `connect` does)."""

    def connect(self, *arg: Any, **kw: Any) -> ReadsFirstConnection:
        from sqlalchemy.util import await_

        creator_fn = kw.pop("async_creator_fn", self.asyncpg.connect)
        options = {name: kw.pop(name) for name in ("prepared_statement_cache_size", "prepared_statement_name_func")
                   if name in kw}
        return await_(ReadsFirstConnection.create(self, creator_fn(*arg, **kw), **options))


def reads_first_dbapi() -> ReadsFirstDbapi:
    """The `module` to give `create_async_engine` for a PostgreSQL URL with asyncpg."""
    import asyncpg

    return ReadsFirstDbapi(asyncpg)


def install(engine: Engine) -> None:
    """Mark each plain read that would begin a unit's transaction to run on its own instead."""

    @event.listens_for(engine, "before_cursor_execute")
    def before(connection, cursor, statement, parameters, context, executemany) -> None:
        adapter = connection.connection.dbapi_connection
        if not isinstance(adapter, ReadsFirstConnection):
            return
        adapter.skip_begin = (
            adapter._transaction is None
            and adapter.isolation_level in (None, "read_committed", "READ COMMITTED")
            and not (context is not None and context.execution_options.get("stream_results"))
            and plain_read(statement)
        )

    @event.listens_for(engine, "after_cursor_execute")
    def after(connection, cursor, statement, parameters, context, executemany) -> None:
        _clear(connection)

    @event.listens_for(engine, "handle_error")
    def failed(context) -> None:
        if context.connection is not None and not context.connection.closed:
            _clear(context.connection)


def _clear(connection) -> None:
    adapter = connection.connection.dbapi_connection
    if isinstance(adapter, ReadsFirstConnection):
        adapter.skip_begin = False
