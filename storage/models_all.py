"""Every model module, imported so that `Base.metadata` knows all tables (Alembic, tests)."""

from storage.models import Base  # noqa: F401
from storage.models_outbox import OutboxMessage  # noqa: F401
