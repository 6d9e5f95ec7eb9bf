"""Apply Alembic migrations programmatically (at start, and by `python -m bot migrate`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x6D6D5301  # a PostgreSQL advisory lock key of our own


def serialise(connection) -> None:
    """Bot replicas starting together on one PostgreSQL database migrate one at a time: the
    others wait for this transaction's lock, then find nothing left to do."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")


def alembic_config() -> Config:
    """The Alembic configuration pointing at our migrations folder."""
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "heads") -> None:
    """Bring the database to `revision`."""
    config = alembic_config()

    def run(connection) -> None:
        config.attributes["connection"] = connection
        serialise(connection)
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the database back to `revision` (used by the migration tests)."""
    config = alembic_config()

    def run(connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)
