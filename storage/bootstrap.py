"""A database made ready in one call: migrated and holding the demo reference data."""

from __future__ import annotations

from storage.db import create_engine, session_factory
from storage.migrate import upgrade
from storage.services.reference import ensure_demo_reference
from storage.unit_of_work import Database


async def prepare_database(url: str) -> Database:
    """Migrate the database at `url` and load the demo reference data if it has none.

    For tests and benchmarks; the caller disposes `database.engine` when done.
    """
    engine = create_engine(url)
    await upgrade(engine)
    database = Database(session_factory(engine))
    async with database.unit() as uow:
        await ensure_demo_reference(uow)
        await uow.commit()
    database.engine = engine
    database.url = url
    return database
