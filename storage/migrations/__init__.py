"""Alembic migrations of the schema; applied at start and by `python -m bot migrate`."""
