"""Storage: SQLAlchemy models, the database engine, repositories and services (use cases)."""
