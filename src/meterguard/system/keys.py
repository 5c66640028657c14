"""The head-end's key store shared by the threads of one process (ingest lanes, API, commands).

:class:`~meterguard.crypto.keystore.KeyStore` holds one SQLite connection and no lock (the
crypto core stays free of threading); :class:`SharedKeyStore` serialises every use under one
lock and offers what the head-end's parts need: a meter's active keys for verification, the
candidates of a rotation in flight and its confirmation, a new unicast key wrapped under the
master key for a key change, and provisioning. Several processes may open the same store:
SQLite serialises their writes. Key material is only ever returned to the caller, never logged.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from pathlib import Path

from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.crypto.keywrap import wrap_key
from meterguard.errors import ConfigurationError
from meterguard.identity import serial_of, system_title

__all__ = ["SharedKeyStore"]


class SharedKeyStore:
    """One key store, one lock."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, kek: Path, *, create: bool = False) -> SharedKeyStore:
        """Open (or create) the key store at ``path`` under the KEK file ``kek``."""
        return cls(KeyStore(path, LocalKek.from_file(kek, create=create)))

    def __repr__(self) -> str:
        return f"SharedKeyStore({self.store!r})"

    def describe(self, mid: str) -> list[tuple[str, int, str]]:
        """The meter's keys as (kind, version, state): never material (see KeyStore)."""
        with self.lock:
            return self.store.describe(mid)

    def meter_keys(self, mid: str) -> tuple[bytes, SecretKey, SecretKey]:
        """Meter id → (system title, active unicast key, active authentication key).

        Raises:
            ConfigurationError: the meter has no active keys.
        """
        with self.lock:
            return (
                system_title(serial_of(mid)),
                self.store.active(mid, KeyId.GLOBAL_UNICAST),
                self.store.active(mid, KeyId.AUTHENTICATION),
            )

    def candidates(self, mid: str) -> list[tuple[int, SecretKey]]:
        """(version, unicast key) of the keys a rotation in flight may have given the meter."""
        with self.lock:
            return [(k.version, k.key) for k in self.store.candidates(mid, KeyId.GLOBAL_UNICAST)]

    def confirm(self, mid: str, version: int) -> None:
        """The meter's pushes verified under this unicast key version: make it active."""
        with self.lock:
            self.store.confirm(mid, KeyId.GLOBAL_UNICAST, version)

    def rotate_unicast_key(self, mid: str) -> bytes:
        """A new unicast key, kept as ``new``, wrapped under the meter's master key (DM-12)."""
        with self.lock:
            new = self.store.begin_rotation(mid, KeyId.GLOBAL_UNICAST)
            return wrap_key(self.store.active(mid, KeyId.MASTER), new.key)

    def pseudonyms(self, recipient: int, pairs: Sequence[tuple[int, str]]) -> list[str]:
        """A recipient's pseudonyms for (rotation period, meter) pairs (PRIV-2).

        HMAC-SHA256 under the key store's export-pseudonym secret, over recipient, period
        and meter: unlinkable across recipients and periods without the secret, which
        never leaves the key store. 20 base32 characters (100 bits) each.
        """
        messages = [f"meterguard-pseudonym|{recipient}|{p}|{mid}".encode() for p, mid in pairs]
        with self.lock:
            digests = self.store.keyed_hashes("export-pseudonyms", messages)
        return [base64.b32encode(d).decode()[:20].lower() for d in digests]

    def login_hash(self, message: bytes) -> bytes:
        """HMAC-SHA256 of a login name under the key store's login secret (PRIV-4).

        What an account is looked up by: the names themselves are not stored in clear, and
        without the secret (which never leaves the key store) the hashes cannot be tested
        against a list of names.
        """
        with self.lock:
            return self.store.keyed_hashes("login-names", [message])[0]

    def data_key(self, mid: str) -> tuple[int, SecretKey]:
        """The meter's current data key for encryption at rest: (version, key)."""
        with self.lock:
            return self.store.data_key(mid)

    def data_key_version(self, mid: str, version: int) -> SecretKey | None:
        """A data key by version, or None once shredded."""
        with self.lock:
            return self.store.data_key_version(mid, version)

    def shred(self, mid: str, *, now: int) -> int:
        """Destroy the meter's data keys (crypto-shredding); how many."""
        with self.lock:
            return self.store.shred(mid, now=now)

    def provision(self, mid: str) -> None:
        """A fresh DLMS key set for a new meter (KEY-1)."""
        with self.lock:
            self.store.provision(mid)

    def import_factory_keys(self, mid: str, ek: SecretKey, ak: SecretKey, kek: SecretKey) -> bool:
        """Import a meter's factory keys unless it has active ones; True if imported."""
        with self.lock:
            try:
                self.store.active(mid, KeyId.GLOBAL_UNICAST)
            except ConfigurationError:  # no active key yet
                for kind, key in (
                    (KeyId.GLOBAL_UNICAST, ek),
                    (KeyId.AUTHENTICATION, ak),
                    (KeyId.MASTER, kek),
                ):
                    self.store.import_active(mid, kind, key)
                return True
        return False

    def close(self) -> None:
        """Close the store."""
        with self.lock:
            self.store.close()
