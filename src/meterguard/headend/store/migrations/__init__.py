"""Alembic migrations of the head-end database (run by meterguard.headend.store.db.migrate)."""
