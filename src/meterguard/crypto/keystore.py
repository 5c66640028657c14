"""The head-end's key store: per-meter DLMS keys, envelope-encrypted at rest (KEY-1, KEY-2).

Every key record is encrypted with its own data-encryption key (DEK, AES-256-GCM,
AAD = meter ‖ key kind ‖ version), and the DEK is wrapped by a key-encryption
key (KEK). The KEK comes from a file or the environment (:class:`LocalKek`)
or stays inside a PKCS#11 token (:class:`Pkcs11Kek`, tested with SoftHSM2),
so a copy of the database alone reveals no key.

Keys have states (KEY-2, OSGP's generate-and-replace lesson): a rotation first
stores the new key as ``new`` next to the ``active`` one, and only
:meth:`KeyStore.confirm` — after the meter has proven it uses the new key —
makes it ``active`` and the old one ``retired``, in one transaction. An
interrupted rotation is recovered by trying both (:meth:`KeyStore.candidates`).

Data keys (:meth:`KeyStore.data_key`) are per-meter AES-256 keys, versioned, for the
encryption at rest of readings; :meth:`KeyStore.shred` destroys them (crypto-shredding:
the sealed readings become unreadable while everything else stays). Service secrets
(:meth:`KeyStore.keyed_hashes`) are named 256-bit keys sealed the same way,
used inside the store only: the pseudonym key of data exports derives pseudonyms here and is
never handed out.

Nothing here logs a key; reprs are redacted. Storage is SQLite (stdlib).
"""

from __future__ import annotations

import enum
import os
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes, hmac

from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keywrap import unwrap_key, wrap_key
from meterguard.errors import AuthenticationFailedError, ConfigurationError, KeyUnwrapError

__all__ = [
    "KeyEncryptionKey",
    "KeyState",
    "KeyStore",
    "LocalKek",
    "Pkcs11Kek",
    "RotationPolicy",
    "StoredKey",
    "read_key_file",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meter_keys (
    meter TEXT NOT NULL,
    kind INTEGER NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('new', 'active', 'retired')),
    kek_id TEXT NOT NULL,
    wrapped_dek BLOB NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    PRIMARY KEY (meter, kind, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active ON meter_keys (meter, kind) WHERE state = 'active';
CREATE TABLE IF NOT EXISTS data_keys (
    meter TEXT NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'destroyed')),
    kek_id TEXT NOT NULL,
    wrapped_dek BLOB NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    destroyed_at INTEGER,
    PRIMARY KEY (meter, version)
);
CREATE TABLE IF NOT EXISTS service_secrets (
    name TEXT PRIMARY KEY,
    kek_id TEXT NOT NULL,
    wrapped_dek BLOB NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);
"""


class KeyState(enum.Enum):
    """Life cycle of a stored key."""

    NEW = "new"
    ACTIVE = "active"
    RETIRED = "retired"


class KeyEncryptionKey(Protocol):
    """Wraps and unwraps data-encryption keys; the KEK itself never leaves it."""

    @property
    def key_id(self) -> str:
        """A stable, non-secret identifier of the KEK."""
        ...

    def wrap(self, dek: SecretKey) -> bytes:
        """Wrap a DEK."""
        ...

    def unwrap(self, wrapped: bytes) -> SecretKey:
        """Unwrap a DEK. Raises KeyUnwrapError on a wrong KEK or tampering."""
        ...


def read_key_file(path: Path, *, create: bool = False, length: int = 32) -> SecretKey:
    """A raw key file of mode 0600, created from the CSPRNG if asked and missing.

    Raises:
        ConfigurationError: the file is readable or writable by others.
    """
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(length))
    if path.stat().st_mode & 0o077:
        raise ConfigurationError(
            f"{path} is readable by others (mode {oct(path.stat().st_mode & 0o777)})"
        )
    return SecretKey(path.read_bytes())


class LocalKek:
    """A 256-bit KEK held in process memory, loaded from a file or an environment variable."""

    def __init__(self, key: SecretKey) -> None:
        if len(key) != 32:
            raise ConfigurationError("the KEK must be 32 bytes (AES-256)")
        self._key = key

    @property
    def key_id(self) -> str:
        """``local:<fingerprint>``."""
        return f"local:{self._key.fingerprint()}"

    @classmethod
    def from_file(cls, path: Path, *, create: bool = False) -> LocalKek:
        """Read 32 raw bytes (created with mode 0600 if asked and missing)."""
        return cls(read_key_file(path, create=create))

    @classmethod
    def from_env(cls, name: str = "MG_KEK") -> LocalKek:
        """Read 64 hex digits from the environment."""
        value = os.environ.get(name)
        if not value:
            raise ConfigurationError(f"environment variable {name} is not set")
        return cls(SecretKey.from_hex(value))

    def wrap(self, dek: SecretKey) -> bytes:
        """RFC 3394 wrap under the KEK."""
        return wrap_key(self._key, dek)

    def unwrap(self, wrapped: bytes) -> SecretKey:
        """RFC 3394 unwrap under the KEK."""
        return unwrap_key(self._key, wrapped)

    def __repr__(self) -> str:
        return f"LocalKek({self.key_id})"


class Pkcs11Kek:
    """A KEK inside a PKCS#11 token (an HSM; SoftHSM2 in tests); wrapping happens on the token.

    The KEK is an AES-256 key created on the token as sensitive and non-extractable;
    DEKs are wrapped with CKM_AES_KEY_WRAP (RFC 3394) by the token itself.
    """

    def __init__(
        self,
        *,
        library: str,
        token_label: str,
        pin: str,
        key_label: str = "meterguard-kek",
        create: bool = False,
    ) -> None:
        import pkcs11  # noqa: PLC0415 - the PKCS#11 binding loads a native library: only when used
        from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass  # noqa: PLC0415

        self._pkcs11 = pkcs11
        self._mechanism = Mechanism.AES_KEY_WRAP
        lib = pkcs11.lib(library)
        token = lib.get_token(token_label=token_label)
        self._session = token.open(user_pin=pin, rw=True)
        self._label = key_label
        self._kek: Any  # a pkcs11 SecretKey with the wrap/unwrap mixins
        try:
            self._kek = self._session.get_key(object_class=ObjectClass.SECRET_KEY, label=key_label)
        except pkcs11.NoSuchKey:
            if not create:
                raise ConfigurationError(f"no key {key_label!r} on token {token_label!r}") from None
            self._kek = self._session.generate_key(
                KeyType.AES,
                256,
                label=key_label,
                store=True,
                template={
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.WRAP: True,
                    Attribute.UNWRAP: True,
                },
            )
        self._token_label = token_label

    @property
    def key_id(self) -> str:
        """``pkcs11:<token>/<label>``."""
        return f"pkcs11:{self._token_label}/{self._label}"

    def wrap(self, dek: SecretKey) -> bytes:
        """Wrap a DEK on the token."""
        from pkcs11 import Attribute, KeyType, ObjectClass  # noqa: PLC0415

        tmp = self._session.create_object(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: dek.expose_secret(),
                Attribute.TOKEN: False,
                Attribute.EXTRACTABLE: True,
                Attribute.SENSITIVE: False,
            }
        )
        try:
            return bytes(self._kek.wrap_key(tmp, mechanism=self._mechanism))
        finally:
            tmp.destroy()

    def unwrap(self, wrapped: bytes) -> SecretKey:
        """Unwrap a DEK on the token and bring it out (it encrypts one record)."""
        from pkcs11 import Attribute, KeyType, ObjectClass  # noqa: PLC0415

        try:
            key = self._kek.unwrap_key(
                ObjectClass.SECRET_KEY,
                KeyType.AES,
                wrapped,
                mechanism=self._mechanism,
                template={
                    Attribute.TOKEN: False,
                    Attribute.EXTRACTABLE: True,
                    Attribute.SENSITIVE: False,
                },
            )
        except self._pkcs11.PKCS11Error:
            raise KeyUnwrapError(
                "the token refused to unwrap (wrong KEK or tampered data)"
            ) from None
        try:
            return SecretKey(bytes(key[Attribute.VALUE]))
        finally:
            key.destroy()

    def close(self) -> None:
        """Close the token session."""
        self._session.close()

    def __repr__(self) -> str:
        return f"Pkcs11Kek({self.key_id})"


@dataclass(frozen=True)
class StoredKey:
    """A decrypted key with its version and state."""

    kind: KeyId
    version: int
    state: KeyState
    key: SecretKey


@dataclass(frozen=True)
class RotationPolicy:
    """When a meter key must be rotated (KEY-3): on schedule, on demand, or by counter.

    The counter threshold sits far below 2**32 so that a rotation, even one that
    has to be retried for days, completes before any (ST, IC) pair could repeat.
    """

    max_age_days: int = 365
    counter_threshold: int = 1 << 31

    def reason(
        self, *, age_days: float, invocation_counter: int, requested: bool = False
    ) -> str | None:
        """Why to rotate now, or None."""
        if requested:
            return "on demand"
        if invocation_counter >= self.counter_threshold:
            return f"invocation counter {invocation_counter} crossed {self.counter_threshold}"
        if age_days >= self.max_age_days:
            return f"key is {age_days:.0f} days old (schedule: {self.max_age_days})"
        return None


def _aad(meter: str, kind: int, version: int) -> bytes:
    return f"meterguard-key|{meter}|{kind}|{version}".encode()


class KeyStore:
    """Per-meter DLMS keys, envelope-encrypted in SQLite."""

    def __init__(self, path: Path, kek: KeyEncryptionKey) -> None:
        self.path = path
        self.kek = kek
        # One connection, not thread-safe by itself: callers that share a store between
        # threads serialise their calls (the demo holds one lock around every use).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # A destroyed data key's bytes are overwritten, not left in free pages (shredding).
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.executescript(_SCHEMA)
        os.chmod(path, 0o600)

    def __repr__(self) -> str:
        return f"KeyStore({self.path}, {self.kek!r})"

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _seal(
        self, meter: str, kind: int, version: int, key: SecretKey
    ) -> tuple[bytes, bytes, bytes]:
        dek = SecretKey.generate(32)
        nonce = secrets.token_bytes(12)
        ct = GcmKey(dek).seal(nonce, key.expose_secret(), _aad(meter, kind, version), tag_length=16)
        return self.kek.wrap(dek), nonce, ct

    def _open(self, meter: str, kind: int, version: int, row: tuple[Any, ...]) -> SecretKey:
        wrapped, nonce, ct = row
        dek = self.kek.unwrap(bytes(wrapped))
        try:
            raw = GcmKey(dek).open(
                bytes(nonce), bytes(ct), _aad(meter, kind, version), tag_length=16
            )
        except AuthenticationFailedError:
            raise KeyUnwrapError(
                f"stored key {meter}/{kind}/v{version} fails its integrity check"
            ) from None
        return SecretKey(raw)

    def _insert(self, meter: str, kind: int, version: int, state: KeyState, key: SecretKey) -> None:
        wrapped, nonce, ct = self._seal(meter, kind, version, key)
        self._db.execute(
            "INSERT INTO meter_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (meter, kind, version, state.value, self.kek.key_id, wrapped, nonce, ct),
        )

    def provision(
        self, meter: str, kinds: tuple[KeyId, ...] = tuple(KeyId)
    ) -> dict[KeyId, SecretKey]:
        """Generate version 1 of each key kind for a new meter, from the CSPRNG, active."""
        keys = {k: SecretKey.generate(16) for k in kinds}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for k, key in keys.items():
                self._insert(meter, int(k), 1, KeyState.ACTIVE, key)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return keys

    def import_active(self, meter: str, kind: KeyId, key: SecretKey) -> None:
        """Store a key that already exists on a meter (e.g. from manufacturing), as active."""
        version = self._next_version(meter, int(kind))
        self._insert(meter, int(kind), version, KeyState.ACTIVE, key)

    def _next_version(self, meter: str, kind: int) -> int:
        row = self._db.execute(
            "SELECT COALESCE(MAX(version), 0) FROM meter_keys WHERE meter = ? AND kind = ?",
            (meter, kind),
        ).fetchone()
        return int(row[0]) + 1

    def describe(self, meter: str) -> list[tuple[str, int, str]]:
        """What the store holds for ``meter``: (key kind, version, state), never material.

        Nothing is unwrapped: an operator's meter page shows which keys exist, how often
        they were rotated and whether a rotation is pending (a ``new`` version).
        """
        rows = self._db.execute(
            "SELECT kind, version, state FROM meter_keys WHERE meter = ? ORDER BY kind, version",
            (meter,),
        ).fetchall()
        names = {k.value: k.name.lower() for k in KeyId}
        return [(names.get(int(k), str(k)), int(v), str(st)) for k, v, st in rows]

    def active(self, meter: str, kind: KeyId) -> SecretKey:
        """The active key of ``kind`` for ``meter``.

        Raises:
            ConfigurationError: no active key (unknown meter).
            KeyUnwrapError: wrong KEK or a tampered record.
        """
        row = self._db.execute(
            "SELECT version, wrapped_dek, nonce, ciphertext FROM meter_keys "
            "WHERE meter = ? AND kind = ? AND state = 'active'",
            (meter, int(kind)),
        ).fetchone()
        if row is None:
            raise ConfigurationError(f"no active {kind.name} key for meter {meter}")
        return self._open(meter, int(kind), int(row[0]), row[1:])

    def begin_rotation(self, meter: str, kind: KeyId) -> StoredKey:
        """Generate the next key as ``new`` (the active one stays until confirmed)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "DELETE FROM meter_keys WHERE meter = ? AND kind = ? AND state = 'new'",
                (meter, int(kind)),
            )
            version = self._next_version(meter, int(kind))
            key = SecretKey.generate(16)
            self._insert(meter, int(kind), version, KeyState.NEW, key)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return StoredKey(kind, version, KeyState.NEW, key)

    def candidates(self, meter: str, kind: KeyId) -> list[StoredKey]:
        """The keys a meter may currently hold: ``new`` first, then ``active`` (recovery, KEY-2)."""
        rows = self._db.execute(
            "SELECT version, state, wrapped_dek, nonce, ciphertext FROM meter_keys "
            "WHERE meter = ? AND kind = ? AND state IN ('new', 'active') ORDER BY version DESC",
            (meter, int(kind)),
        ).fetchall()
        return [
            StoredKey(kind, int(v), KeyState(s), self._open(meter, int(kind), int(v), (w, n, c)))
            for v, s, w, n, c in rows
        ]

    def confirm(self, meter: str, kind: KeyId, version: int) -> None:
        """The meter proved it uses ``version``: make it active, retire the previous one."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "UPDATE meter_keys SET state = 'retired' "
                "WHERE meter = ? AND kind = ? AND state = 'active' AND version != ?",
                (meter, int(kind), version),
            )
            cur = self._db.execute(
                "UPDATE meter_keys SET state = 'active' "
                "WHERE meter = ? AND kind = ? AND version = ?",
                (meter, int(kind), version),
            )
            if cur.rowcount != 1:
                raise ConfigurationError(f"no key version {version} to confirm")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def abandon(self, meter: str, kind: KeyId) -> None:
        """The rotation failed and the meter still uses the active key: drop the ``new`` one."""
        self._db.execute(
            "DELETE FROM meter_keys WHERE meter = ? AND kind = ? AND state = 'new'",
            (meter, int(kind)),
        )

    # ------------------------------------------------------------------ service secrets

    def _secret(self, name: str, *, create: bool) -> SecretKey | None:
        row = self._db.execute(
            "SELECT wrapped_dek, nonce, ciphertext FROM service_secrets WHERE name = ?", (name,)
        ).fetchone()
        if row is not None:
            return self._open(f"secret:{name}", 0, 0, row)
        if not create:
            return None
        key = SecretKey.generate(32)
        wrapped, nonce, ct = self._seal(f"secret:{name}", 0, 0, key)
        self._db.execute(
            "INSERT OR IGNORE INTO service_secrets VALUES (?, ?, ?, ?, ?)",
            (name, self.kek.key_id, wrapped, nonce, ct),
        )
        return self._secret(name, create=False)  # another process may have won the race

    def keyed_hashes(self, name: str, messages: Sequence[bytes]) -> list[bytes]:
        """HMAC-SHA256 of each message under the service secret ``name`` (created on first use).

        The secret itself is never returned: pseudonyms are derived here, so the key that
        links them to meters stays in the key store. It is unwrapped once per call.
        """
        key = self._secret(name, create=True)
        if key is None:  # pragma: no cover - created just above, or by a racing process
            raise ConfigurationError(f"service secret {name} could not be created")
        out = []
        for message in messages:
            mac = hmac.HMAC(key.expose_secret(), hashes.SHA256())
            mac.update(message)
            out.append(mac.finalize())
        return out

    # ------------------------------------------------------------------ data keys

    def data_key(self, meter: str) -> tuple[int, SecretKey]:
        """The meter's current data key (encryption at rest of its readings), created if none.

        Returns (version, key). After :meth:`shred`, a new version is created.
        """
        row = self._db.execute(
            "SELECT version, wrapped_dek, nonce, ciphertext FROM data_keys "
            "WHERE meter = ? AND state = 'active' ORDER BY version DESC LIMIT 1",
            (meter,),
        ).fetchone()
        if row is not None:
            return int(row[0]), self._open(f"data:{meter}", 0, int(row[0]), row[1:])
        self._db.execute("BEGIN IMMEDIATE")
        try:
            top = self._db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM data_keys WHERE meter = ?", (meter,)
            ).fetchone()
            version = int(top[0]) + 1
            key = SecretKey.generate(32)
            wrapped, nonce, ct = self._seal(f"data:{meter}", 0, version, key)
            self._db.execute(
                "INSERT INTO data_keys VALUES (?, ?, 'active', ?, ?, ?, ?, NULL)",
                (meter, version, self.kek.key_id, wrapped, nonce, ct),
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return version, key

    def data_key_version(self, meter: str, version: int) -> SecretKey | None:
        """A meter's data key of ``version``, or None when it was destroyed (or never was)."""
        row = self._db.execute(
            "SELECT wrapped_dek, nonce, ciphertext FROM data_keys "
            "WHERE meter = ? AND version = ? AND state = 'active'",
            (meter, version),
        ).fetchone()
        return None if row is None else self._open(f"data:{meter}", 0, version, row)

    def shred(self, meter: str, *, now: int) -> int:
        """Destroy every data key of ``meter`` (crypto-shredding); how many were destroyed.

        The key bytes are overwritten (secure_delete); what was sealed under them is
        unreadable from then on, by anyone holding the database, the key store and the KEK.
        """
        cur = self._db.execute(
            "UPDATE data_keys SET state = 'destroyed', wrapped_dek = x'', nonce = x'', "
            "ciphertext = x'', destroyed_at = ? WHERE meter = ? AND state = 'active'",
            (now, meter),
        )
        return int(cur.rowcount)

    def rewrap(self, new_kek: KeyEncryptionKey) -> int:
        """KEK rotation: re-wrap every DEK under ``new_kek``; returns the number of records."""
        rows = self._db.execute(
            "SELECT meter, kind, version, wrapped_dek FROM meter_keys"
        ).fetchall()
        named = self._db.execute("SELECT name, wrapped_dek FROM service_secrets").fetchall()
        data = self._db.execute(
            "SELECT meter, version, wrapped_dek FROM data_keys WHERE state = 'active'"
        ).fetchall()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for meter, kind, version, wrapped in rows:
                dek = self.kek.unwrap(bytes(wrapped))
                self._db.execute(
                    "UPDATE meter_keys SET wrapped_dek = ?, kek_id = ? "
                    "WHERE meter = ? AND kind = ? AND version = ?",
                    (new_kek.wrap(dek), new_kek.key_id, meter, kind, version),
                )
            for meter, version, wrapped in data:
                dek = self.kek.unwrap(bytes(wrapped))
                self._db.execute(
                    "UPDATE data_keys SET wrapped_dek = ?, kek_id = ? "
                    "WHERE meter = ? AND version = ?",
                    (new_kek.wrap(dek), new_kek.key_id, meter, version),
                )
            for name, wrapped in named:
                dek = self.kek.unwrap(bytes(wrapped))
                self._db.execute(
                    "UPDATE service_secrets SET wrapped_dek = ?, kek_id = ? WHERE name = ?",
                    (new_kek.wrap(dek), new_kek.key_id, name),
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.kek = new_kek
        return len(rows) + len(named) + len(data)
