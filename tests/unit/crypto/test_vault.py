"""Encryption at rest of readings and names: per-subject data keys, sealing bound to its row,
shredding, and the keyed look-up hash of login names."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.crypto.vault import SEALED_LENGTH, NameVault, ReadingVault, user_subject
from meterguard.errors import AuthenticationFailedError

M1, M2 = "MGD0000000001", "MGD0000000002"


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys.db", LocalKek.from_file(tmp_path / "kek.bin", create=True))


def test_a_sealed_reading_opens_only_in_its_own_row(store: KeyStore) -> None:
    vault = ReadingVault(store.data_key, store.data_key_version, clock=time.monotonic)
    version, sealed = vault.seal(M1, 1_800_000_000, 123_456, 78)
    assert version == 1 and len(sealed) == SEALED_LENGTH
    assert vault.open(M1, 1_800_000_000, version, sealed) == (123_456, 78)
    assert vault.seal(M1, 1_800_000_000, 123_456, 78)[1] != sealed  # a fresh nonce each time
    vault.seal(M2, 0, 1, 1)  # M2 has a key of version 1 too
    for meter, start in ((M2, 1_800_000_000), (M1, 1_800_000_900)):  # moved to another row
        with pytest.raises(AuthenticationFailedError):
            vault.open(meter, start, version, sealed)
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(AuthenticationFailedError):
        vault.open(M1, 1_800_000_000, version, flipped)
    assert "123456" not in repr(vault)


def test_shredding_destroys_the_key_for_good(store: KeyStore, tmp_path: Path) -> None:
    vault = ReadingVault(store.data_key, store.data_key_version, clock=time.monotonic)
    version, sealed = vault.seal(M1, 0, 1000, 0)
    _, other = vault.seal(M2, 0, 2000, 0)
    with sqlite3.connect(tmp_path / "keys.db") as db:
        (record,) = db.execute("SELECT ciphertext FROM data_keys WHERE meter = ?", (M1,)).fetchone()
    assert store.shred(M1, now=5) == 1
    vault.forget(M1)
    assert vault.open(M1, 0, version, sealed) is None  # unreadable, for anyone
    assert vault.open(M2, 0, 1, other) == (2000, 0)  # other meters are untouched
    assert store.data_key_version(M1, version) is None
    assert store.data_key(M1)[0] == 2  # new readings get a new key (a new occupant's)
    store.close()
    assert bytes(record) not in (tmp_path / "keys.db").read_bytes()  # overwritten, not freed


def test_a_key_shredded_elsewhere_stops_being_used_within_the_ttl(store: KeyStore) -> None:
    now = [0.0]
    vault = ReadingVault(store.data_key, store.data_key_version, clock=lambda: now[0])
    version, sealed = vault.seal(M1, 0, 1, 1)
    assert vault.open(M1, 0, version, sealed) == (1, 1)
    store.shred(M1, now=1)  # another process: this vault still caches the key
    now[0] = 31.0
    assert vault.open(M1, 0, version, sealed) is None
    assert vault.seal(M1, 900, 2, 2)[0] == 2


def _names(store: KeyStore) -> NameVault:
    def lookup(message: bytes) -> bytes:
        return store.keyed_hashes("login-names", [message])[0]

    return NameVault(store.data_key, store.data_key_version, lookup, clock=time.monotonic)


def test_a_sealed_name_opens_only_for_its_user_and_is_gone_when_shredded(
    store: KeyStore, tmp_path: Path
) -> None:
    names = _names(store)
    sealed = names.seal(7, "alice")
    assert names.open(7, sealed) == "alice" and b"alice" not in sealed
    assert names.open(7, None) is None
    names.seal(8, "bob")  # user 8 has a key of version 1 too
    for uid, blob in ((8, sealed), (7, sealed[:-1] + bytes([sealed[-1] ^ 1])), (7, sealed[:10])):
        with pytest.raises(AuthenticationFailedError):  # moved to another user, altered, cut
            names.open(uid, blob)
    assert store.shred(user_subject(7), now=5) == 1
    names.forget(user_subject(7))
    assert names.open(7, sealed) is None
    store.close()
    assert b"alice" not in (tmp_path / "keys.db").read_bytes()


def test_the_login_lookup_is_keyed_stable_and_not_the_name(tmp_path: Path) -> None:
    a = KeyStore(tmp_path / "a.db", LocalKek.from_file(tmp_path / "a.kek", create=True))
    b = KeyStore(tmp_path / "b.db", LocalKek.from_file(tmp_path / "b.kek", create=True))
    first = _names(a).lookup("alice")
    assert first == _names(a).lookup("alice") and len(first) == 32
    assert first != _names(a).lookup("Alice") and first != _names(b).lookup("alice")
    assert b"alice" not in first and "alice" not in repr(_names(a))
