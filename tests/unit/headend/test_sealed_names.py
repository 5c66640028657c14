"""People's names at rest (PRIV-4): found by keyed hash, sealed, and sealed on upgrade.

Accounts created before migration 0018 had their name in clear; the head-end seals them
when it opens the accounts, rewrites the consents and access-log entries those consumers
recorded under their name to their pseudonym, and leaves staff names where they are
(accountability). Logins go on working with the same name and password.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import insert, select

from meterguard.headend.services.accounts import Principal, actor_of
from meterguard.headend.store.db import MIGRATIONS, migrate, open_database
from meterguard.headend.store.models import Consent, DataAccess, Meter, User
from meterguard.headend.store.repository import Store
from meterguard.identity import system_title
from tests.accounts import test_accounts

T0 = 1_767_225_600
M1 = "MGD0000000001"
PASSWORD = "correct horse battery staple 1"  # noqa: S105 - a test account


def test_accounts_from_before_0018_are_sealed_when_the_head_end_opens_them(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.db"
    engine = open_database(f"sqlite:///{db}", migrate_schema=False)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0017")
    # An account as the previous version created it: argon2id hash, name in clear.
    fresh = test_accounts(Store(open_database(f"sqlite:///{tmp_path / 'x.db'}")), tmp_path)
    digest = fresh.hashes.hash(PASSWORD)
    with engine.begin() as conn:
        conn.execute(
            insert(Meter).values(
                id=M1, serial=M1[3:], system_title=system_title(1), state="active", created_at=0
            )
        )
        for uid, name, role in ((1, "alice", "consumer"), (2, "olga", "operator")):
            conn.execute(
                insert(User).values(
                    id=uid, username=name, role=role, password_hash=digest, created_at=T0
                )
            )
        conn.execute(
            insert(Consent).values(meter_id=M1, granularity="day", given_by="alice", at=T0)
        )
        for actor, role in (("alice", "consumer"), ("olga", "operator")):
            conn.execute(
                insert(DataAccess).values(at=T0, meter_id=M1, actor=actor, role=role, what="read")
            )
    migrate(engine)
    accounts = test_accounts(Store(engine), tmp_path)
    assert accounts.seal_clear_names() == 2
    assert accounts.seal_clear_names() == 0  # once
    assert [(u, n, r) for u, n, r, _ in accounts.users()] == [
        (1, "alice", "consumer"),
        (2, "olga", "operator"),
    ]
    alice = accounts.login("alice", PASSWORD, now=T0).principal
    assert alice == Principal(1, "alice", "consumer") and alice.actor == "consumer:1"
    with engine.connect() as conn:
        assert conn.scalar(select(Consent.given_by)) == "consumer:1"
        assert sorted(conn.scalars(select(DataAccess.actor))) == ["consumer:1", "olga"]
        assert list(conn.scalars(select(User.username))) == [None, None]
    engine.dispose()
    with sqlite3.connect(db) as conn:
        conn.execute("VACUUM")  # what is left in the file is what the rows hold
    assert b"alice" not in db.read_bytes()
    assert accounts.actor_for("olga") == actor_of(2, "olga", "operator") == "olga"
    assert accounts.actor_for("alice") == "consumer:1"
    nobody = accounts.actor_for("nobody")
    assert nobody.startswith("login:") and "nobody" not in nobody
