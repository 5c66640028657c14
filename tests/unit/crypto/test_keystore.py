"""KEY-1/KEY-2: envelope-encrypted key store; local and PKCS#11 (SoftHSM2) key-encryption keys."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pkcs11 import Attribute, ObjectClass

from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keystore import KeyState, KeyStore, LocalKek, Pkcs11Kek, RotationPolicy
from meterguard.errors import ConfigurationError, KeyUnwrapError

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.fixture
def kek(tmp_path: Path) -> LocalKek:
    return LocalKek.from_file(tmp_path / "kek.bin", create=True)


def test_provision_and_read(tmp_path: Path, kek: LocalKek) -> None:
    store = KeyStore(tmp_path / "keys.db", kek)
    keys = store.provision("MGD0000000001")
    assert set(keys) == set(KeyId)
    assert store.active("MGD0000000001", KeyId.GLOBAL_UNICAST) == keys[KeyId.GLOBAL_UNICAST]
    assert len({k.fingerprint() for k in keys.values()}) == 4
    with pytest.raises(ConfigurationError):
        store.active("MGD0000000999", KeyId.GLOBAL_UNICAST)


def test_database_dump_shows_no_key(tmp_path: Path, kek: LocalKek) -> None:
    store = KeyStore(tmp_path / "keys.db", kek)
    keys = store.provision("MGD0000000001")
    store.close()
    raw = (tmp_path / "keys.db").read_bytes()
    dump = "\n".join(sqlite3.connect(tmp_path / "keys.db").iterdump())
    for key in keys.values():
        assert key.expose_secret() not in raw
        assert key.expose_secret().hex() not in dump.lower()
    assert (tmp_path / "keys.db").stat().st_mode & 0o777 == 0o600
    assert "redacted" in repr(keys[KeyId.MASTER])
    assert keys[KeyId.MASTER].expose_secret().hex() not in repr(store) + repr(kek)


def test_wrong_kek_and_tampering_are_refused(tmp_path: Path, kek: LocalKek) -> None:
    store = KeyStore(tmp_path / "keys.db", kek)
    store.provision("MGD0000000001")
    other = KeyStore(tmp_path / "keys.db", LocalKek(SecretKey.generate(32)))
    with pytest.raises(KeyUnwrapError):
        other.active("MGD0000000001", KeyId.GLOBAL_UNICAST)
    db = sqlite3.connect(tmp_path / "keys.db")
    db.execute("UPDATE meter_keys SET ciphertext = zeroblob(32) WHERE kind = 0")
    db.commit()
    with pytest.raises(KeyUnwrapError, match="integrity"):
        store.active("MGD0000000001", KeyId.GLOBAL_UNICAST)
    # A record moved to another meter fails too: the AAD binds meter, kind and version.
    db.execute("UPDATE meter_keys SET meter = 'MGD0000000002' WHERE kind = 2")
    db.commit()
    with pytest.raises(KeyUnwrapError):
        store.active("MGD0000000002", KeyId.AUTHENTICATION)


def test_interrupted_rotation_recovers(tmp_path: Path, kek: LocalKek) -> None:
    store = KeyStore(tmp_path / "keys.db", kek)
    old = store.provision("M1")[KeyId.GLOBAL_UNICAST]
    new = store.begin_rotation("M1", KeyId.GLOBAL_UNICAST)
    # The head-end crashed after key_transfer: which key does the meter use? Both are tried.
    reopened = KeyStore(tmp_path / "keys.db", kek)
    cands = reopened.candidates("M1", KeyId.GLOBAL_UNICAST)
    assert [(c.state, c.key) for c in cands] == [(KeyState.NEW, new.key), (KeyState.ACTIVE, old)]
    reopened.confirm("M1", KeyId.GLOBAL_UNICAST, new.version)
    assert reopened.active("M1", KeyId.GLOBAL_UNICAST) == new.key
    assert [c.key for c in reopened.candidates("M1", KeyId.GLOBAL_UNICAST)] == [new.key]
    # A failed rotation is abandoned and the active key stays.
    again = reopened.begin_rotation("M1", KeyId.GLOBAL_UNICAST)
    reopened.abandon("M1", KeyId.GLOBAL_UNICAST)
    assert reopened.active("M1", KeyId.GLOBAL_UNICAST) == new.key
    assert again.key not in [c.key for c in reopened.candidates("M1", KeyId.GLOBAL_UNICAST)]


def test_kek_rotation(tmp_path: Path, kek: LocalKek) -> None:
    store = KeyStore(tmp_path / "keys.db", kek)
    keys = store.provision("M1")
    new_kek = LocalKek(SecretKey.generate(32))
    assert store.rewrap(new_kek) == 4
    fresh = KeyStore(tmp_path / "keys.db", new_kek)
    assert fresh.active("M1", KeyId.MASTER) == keys[KeyId.MASTER]
    with pytest.raises(KeyUnwrapError):
        KeyStore(tmp_path / "keys.db", kek).active("M1", KeyId.MASTER)


def test_kek_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "kek.bin"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        LocalKek.from_file(path)


def test_kek_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MG_TEST_KEK", "11" * 32)
    assert LocalKek.from_env("MG_TEST_KEK").key_id.startswith("local:")
    monkeypatch.delenv("MG_TEST_KEK")
    with pytest.raises(ConfigurationError):
        LocalKek.from_env("MG_TEST_KEK")


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    util = shutil.which("softhsm2-util")
    assert util, "softhsm2 must be installed (scripts/bootstrap installs it)"
    subprocess.run(  # noqa: S603 - the softhsm2-util binary with fixed arguments
        [
            util,
            "--init-token",
            "--free",
            "--label",
            "meterguard",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read by the library when first loaded
    yield {"library": SOFTHSM, "token_label": "meterguard", "pin": "1234"}
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


def test_pkcs11_kek_on_softhsm(tmp_path: Path, softhsm: dict[str, str]) -> None:
    kek = Pkcs11Kek(**softhsm, create=True)
    store = KeyStore(tmp_path / "keys.db", kek)
    keys = store.provision("MGD0000000007")
    assert store.active("MGD0000000007", KeyId.AUTHENTICATION) == keys[KeyId.AUTHENTICATION]
    assert kek.key_id == "pkcs11:meterguard/meterguard-kek"
    # The KEK cannot be read out of the token.
    token_key = kek._session.get_key(object_class=ObjectClass.SECRET_KEY, label="meterguard-kek")
    assert token_key[Attribute.EXTRACTABLE] is False and token_key[Attribute.SENSITIVE] is True
    # A local KEK cannot open what the token wrapped.
    with pytest.raises(KeyUnwrapError):
        KeyStore(tmp_path / "keys.db", LocalKek(SecretKey.generate(32))).active(
            "MGD0000000007", KeyId.MASTER
        )
    # Same token, reopened: the records still open.
    kek.close()
    again = Pkcs11Kek(**softhsm)
    assert (
        KeyStore(tmp_path / "keys.db", again).active("MGD0000000007", KeyId.MASTER)
        == keys[KeyId.MASTER]
    )
    again.close()


def test_rotation_policy() -> None:
    policy = RotationPolicy(max_age_days=90, counter_threshold=1 << 31)
    assert policy.reason(age_days=10, invocation_counter=5) is None
    assert policy.reason(age_days=10, invocation_counter=5, requested=True) == "on demand"
    assert "crossed" in (policy.reason(age_days=1, invocation_counter=(1 << 31) + 1) or "")
    assert "days old" in (policy.reason(age_days=91, invocation_counter=0) or "")
    assert RotationPolicy().counter_threshold <= 0xFFFFFFFF // 2 + 1  # half the space left
