"""Throwaway PostgreSQL databases for tests and benchmarks: created beside the admin URL's
database, dropped afterwards (`WITH (FORCE)`: connections left open do not keep them alive)."""

from __future__ import annotations

import contextlib
import uuid
from typing import AsyncIterator

from sqlalchemy.ext.asyncio import create_async_engine


async def admin_sql(admin_url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE/DROP DATABASE) on the admin URL."""
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        for statement in statements:
            await connection.exec_driver_sql(statement)
    await admin.dispose()


def sibling_url(admin_url: str, name: str) -> str:
    """The URL of database `name` on the admin URL's server."""
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def new_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def drop(admin_url: str, name: str) -> None:
    await admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def fresh_postgres(admin_url: str, prefix: str = "t") -> AsyncIterator[str]:
    """A new, empty database for one test or run; yields its URL, drops it afterwards."""
    name = new_name(prefix)
    await admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield sibling_url(admin_url, name)
    finally:
        await drop(admin_url, name)
