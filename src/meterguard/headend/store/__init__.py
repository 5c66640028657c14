"""Head-end storage: SQLAlchemy 2 models, Alembic migrations, repositories."""
