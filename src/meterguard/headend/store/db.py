"""Engines and migrations: SQLite (WAL, foreign keys) by default, PostgreSQL at scale.

:func:`open_database` creates the engine for a URL (``sqlite:///path`` or
``postgresql://…``, mapped to the psycopg 3 driver) and brings the schema to the
newest Alembic revision. A database that cannot be reached is a
:class:`~meterguard.errors.TransportError` with the URL's host, never a hang
(connect timeout) and never the password.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from meterguard.errors import ConfigurationError, TransportError

__all__ = ["migrate", "open_database"]

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _private_file(path: Path) -> None:
    """The database holds personal data and the audit log: mode 0600, created so if new.

    SQLite gives its WAL and shared-memory files the database file's mode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def open_database(url: str, *, migrate_schema: bool = True) -> Engine:
    """Create an engine for ``url`` and migrate it.

    Raises:
        ConfigurationError: the URL cannot be parsed (it is never echoed: it may hold a password).
        TransportError: the database cannot be reached.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError("the database URL cannot be parsed") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    args: dict[str, Any] = {}
    if parsed.drivername.startswith("postgresql"):
        args["connect_args"] = {"connect_timeout": 5}
        args["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **args)
    except ArgumentError:  # e.g. an unknown dialect
        raise ConfigurationError(f"no database driver for {parsed.drivername!r}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if parsed.database and parsed.database != ":memory:":
            _private_file(Path(parsed.database))
    if migrate_schema:
        try:
            migrate(engine)
        except OperationalError as exc:
            raise TransportError(
                f"database at {parsed.host or parsed.database} is unreachable"
            ) from exc
    return engine


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
