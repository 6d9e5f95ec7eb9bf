"""Alembic environment: runs migrations on the connection handed in by `storage.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from storage.models_all import Base

config = context.config
target_metadata = Base.metadata


def run_on(connection) -> None:
    """Run the migrations on a synchronous connection."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:  # `alembic` invoked by hand, e.g. for autogenerate: a sync URL is given in -x url=...
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///./data/bot.sqlite3")
    with create_engine(url).connect() as sync_connection:
        run_on(sync_connection)
        sync_connection.commit()
