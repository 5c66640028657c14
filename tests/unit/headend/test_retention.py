"""Encryption at rest, erasure and retention over a real SQLite store and key store (PRIV-4).

Readings stored through a vault keep no value in clear in the database file; erasing a
consumer destroys their meter's data key so the readings are unreadable, while the bill
issued before still verifies; the account is anonymised and cannot log in; no consumer's
name is in the database file, before or after erasure, in any table or log; retention
deletes what is older than its limit; only the privacy officer may do either.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.crypto.vault import NameVault, ReadingVault
from meterguard.errors import AccessDeniedError, AuthenticationFailedError, NotFoundError
from meterguard.headend.services.accounts import Accounts, Principal
from meterguard.headend.services.billing import Band, Billing, TariffSpec, verify_bill
from meterguard.headend.services.retention import Limits, Retention
from meterguard.headend.services.usage import consumption_data
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import PushRow, ReadingRow, Store
from meterguard.identity import system_title

DAY = 86400
T0 = 1_767_225_600  # 2026-01-01
M1, M2 = "MGD0000000001", "MGD0000000002"
PASSWORD = "correct horse battery staple 1"  # noqa: S105 - a test account
PIA = Principal(900, "pia", "privacy_officer")


@pytest.fixture
def env(tmp_path: Path):
    keys = KeyStore(tmp_path / "keys.db", LocalKek(SecretKey.generate(32)))
    vault = ReadingVault(keys.data_key, keys.data_key_version, clock=time.monotonic)
    db = tmp_path / "db.sqlite"
    store = Store(open_database(f"sqlite:///{db}"), vault=vault)
    for mid in (M1, M2):
        store.registry.add_meter(
            mid, serial=mid[3:], system_title=system_title(int(mid[3:])), now=T0
        )
    # M1 through the batch path, M2 through the ingest commit path
    store.add_readings(
        [ReadingRow(M1, T0 + q * 900, 777_001 + 37 * q, 0, T0) for q in range(-1, 3 * 96)]
    )
    pushes = [
        PushRow(
            M2, q + 1, "t", b"", False, (ReadingRow(M2, T0 + q * 900, 555_001 + 41 * q, 3, T0),)
        )
        for q in range(96)
    ]
    assert store.commit_ingest(pushes, [], now=T0).readings == 96
    names = NameVault(  # one key store for both, as in the head-end
        keys.data_key,
        keys.data_key_version,
        lambda m: keys.keyed_hashes("login-names", [m])[0],
        clock=time.monotonic,
    )
    accounts = Accounts(store.accounts, SecretKey.generate(32), names)
    accounts.create_user("alice", PASSWORD, "consumer", now=T0, meters=(M1,))

    def shred(subject: str, now: int) -> int:
        n = keys.shred(subject, now=now)
        vault.forget(subject)
        names.forget(subject)
        return n

    retention = Retention(store.retention, shred, accounts.names.lookup)
    return store, accounts, retention, db


def test_no_reading_value_is_in_clear_in_the_database(env) -> None:
    store, *_, db = env
    assert store.readings(M1, T0, T0 + 900)[0] == (T0, 777_001, 0)
    assert store.readings(M2, T0 + 900, T0 + 1800) == [(T0 + 900, 555_042, 3)]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT import_wh, export_wh, length(sealed) FROM readings").fetchall()
    assert len(rows) == 4 * 96 + 1 and set(rows) == {(-1, -1, 44)}
    raw = db.read_bytes()
    for value in (777_001, 777_038, 555_001):
        assert value.to_bytes(8, "big") not in raw and str(value).encode() not in raw
    with sqlite3.connect(db) as conn:  # someone with the database alters a value
        conn.execute("UPDATE readings SET sealed = zeroblob(44) WHERE interval_start = ?", (T0,))
    with pytest.raises(AuthenticationFailedError):
        store.readings(M1, T0, T0 + 900)


def test_an_erased_consumer_is_unreadable_and_her_bill_still_verifies(env) -> None:
    store, accounts, retention, db = env
    billing = Billing(store.billing, SigningKey.generate())
    tid = billing.add_tariff(
        TariffSpec("standard", "flat", "EUR", 4500, (Band(0, 24, 2800),)), now=T0
    )
    billing.assign(M1, tid)
    bill = billing.issue(M1, T0, T0 + 2 * DAY, now=T0 + 3 * DAY)
    alice = accounts.login("alice", PASSWORD, now=T0).principal
    data = consumption_data(store, accounts)
    data.set_use_consent(alice, M1, "research", "hour", now=T0)
    assert len(data.subject_access(alice, M1)["readings"]) == 3 * 96 + 1
    for who in (Principal(1, "olga", "operator"), alice):
        with pytest.raises(AccessDeniedError):
            retention.erase_consumer(who, "alice", now=T0)
    with pytest.raises(NotFoundError):
        retention.erase_consumer(PIA, "nobody", now=T0)
    files = [f for f in db.parent.iterdir() if f.name.startswith(db.name)]  # with its WAL
    assert len(files) > 1 and all(b"alice" not in f.read_bytes() for f in files)
    # (her name is sealed at rest, and consents, the audit and access logs say consumer:N)
    assert accounts.users()[0][1] == "alice"
    assert retention.erase_consumer(PIA, "alice", now=T0 + 4 * DAY) == [M1]
    assert accounts.users()[0][1] == "(erased)"  # her name key is destroyed with her data's
    assert store.readings(M1, 0, 2**40) == []  # crypto-shredded
    assert store.billing.registers_between(M1, 0, 2**40) == []
    assert len(store.readings(M2, 0, 2**40)) == 96  # another consumer's are untouched
    (kept,) = billing.bills(M1)
    verify_bill(kept.document, bytes.fromhex(kept.signature), billing.verifying_key)
    assert kept.document == bill.document
    with pytest.raises(AuthenticationFailedError):
        accounts.login("alice", PASSWORD, now=T0 + 4 * DAY)
    assert store.sharing.uses_of(M1) == {}
    # the meter goes on (a new occupant): new readings under a new data key
    store.add_readings([ReadingRow(M1, T0 + 5 * DAY, 900_000, 0, T0)])
    assert store.readings(M1, 0, 2**40) == [(T0 + 5 * DAY, 900_000, 0)]


def test_retention_deletes_what_is_older_than_its_limit(env) -> None:
    store, accounts, retention, _ = env
    with pytest.raises(AccessDeniedError):
        retention.run(Principal(1, "olga", "operator"), now=T0)
    short = Retention(
        store.retention, lambda _m, _n: 0, accounts.names.lookup, Limits(interval_days=2)
    )
    deleted = short.apply(now=T0 + 3 * DAY)
    assert deleted["interval"] == 97 + 96  # M1's first day (and the reading before), all M2's
    assert len(store.readings(M1, 0, 2**40)) == 2 * 96
    assert retention.run(PIA, now=T0 + 3 * DAY)["interval"] == 0  # two years: nothing
    with pytest.raises(Exception, match="keep"):
        Limits(interval_days=0)
