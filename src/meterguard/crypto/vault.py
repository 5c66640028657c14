"""Encryption at rest of interval readings and of people's names under data keys (PRIV-4).

:class:`ReadingVault` seals a reading's two register values (import and export, Wh) with
AES-256-GCM under the meter's current data key from the key store, bound by the AAD to the
meter, the interval and the key version, so a sealed value moved to another row or meter
does not open. It returns ``(version, nonce ‖ ciphertext ‖ tag)`` — 44 bytes — and opens
them back, or returns None when the key of that version was destroyed (crypto-shredded):
those readings are gone for everyone.

:class:`NameVault` does the same for a user's name (PRIV-4: "a stolen database shows no
names"): sealed under the data key of subject ``user:<id>``, bound to the user id and key
version, and found at login by a keyed hash (HMAC under a key-store secret) instead of the
name itself. Shredding the subject's key leaves the account row with no name anyone can read.

Keys are cached for :data:`KEY_TTL` seconds of ``clock`` (the caller's monotonic clock;
the ingest hot path would otherwise unwrap a key per reading); a key shredded in another
process stops being used here within that time. Threads may share a vault: each cache entry
is replaced whole (a race costs one extra key fetch), and the key store serialises itself.
Nothing here logs a key or a value.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meterguard.crypto.keys import SecretKey
from meterguard.errors import AuthenticationFailedError

__all__ = ["KEY_TTL", "SEALED_LENGTH", "NameVault", "ReadingVault", "user_subject"]

KEY_TTL = 30.0
SEALED_LENGTH = 12 + 16 + 16
_VALUES = struct.Struct(">QQ")
_AAD = struct.Struct(">QI")


class _DataKeys:
    """The per-subject data keys of the key store, cached for :data:`KEY_TTL` seconds."""

    def __init__(
        self,
        current: Callable[[str], tuple[int, SecretKey]],
        version: Callable[[str, int], SecretKey | None],
        *,
        clock: Callable[[], float],
    ) -> None:
        self._current, self._version, self._clock = current, version, clock
        self._sealers: dict[str, tuple[float, int, AESGCM]] = {}
        self._openers: dict[tuple[str, int], tuple[float, AESGCM | None]] = {}

    def forget(self, subject: str) -> None:
        """Drop the cached keys of ``subject`` (after shredding it in this process)."""
        self._sealers.pop(subject, None)
        for k in [k for k in list(self._openers) if k[0] == subject]:
            self._openers.pop(k, None)

    def _sealer(self, subject: str) -> tuple[int, AESGCM]:
        now = self._clock()
        hit = self._sealers.get(subject)
        if hit is not None and now - hit[0] < KEY_TTL:
            return hit[1], hit[2]
        version, key = self._current(subject)
        aead = AESGCM(key.expose_secret())
        self._sealers[subject] = (now, version, aead)
        return version, aead

    def _opener(self, subject: str, version: int) -> AESGCM | None:
        now = self._clock()
        hit = self._openers.get((subject, version))
        if hit is not None and now - hit[0] < KEY_TTL:
            return hit[1]
        key = self._version(subject, version)
        aead = None if key is None else AESGCM(key.expose_secret())
        self._openers[(subject, version)] = (now, aead)
        return aead


class ReadingVault(_DataKeys):
    """Seal and open readings with per-meter data keys."""

    def __repr__(self) -> str:
        return f"ReadingVault({len(self._sealers)} meters cached)"

    @staticmethod
    def _aad(meter: str, start: int, version: int) -> bytes:
        return b"mg-reading|" + meter.encode() + b"|" + _AAD.pack(start, version)

    def seal(self, meter: str, start: int, import_wh: int, export_wh: int) -> tuple[int, bytes]:
        """(key version, sealed bytes) of one reading."""
        version, aead = self._sealer(meter)
        nonce = secrets.token_bytes(12)
        ct = aead.encrypt(
            nonce, _VALUES.pack(import_wh, export_wh), self._aad(meter, start, version)
        )
        return version, nonce + ct

    def open(self, meter: str, start: int, version: int, sealed: bytes) -> tuple[int, int] | None:
        """(import, export) of a sealed reading, or None when its key was shredded.

        Raises:
            AuthenticationFailedError: the sealed bytes were altered or moved.
        """
        aead = self._opener(meter, version)
        if aead is None:
            return None
        try:
            raw = aead.decrypt(sealed[:12], sealed[12:], self._aad(meter, start, version))
        except InvalidTag:  # altered, moved, or truncated
            raise AuthenticationFailedError(
                f"a stored reading of {meter[:32]} fails its integrity check"
            ) from None
        a, b = _VALUES.unpack(raw)
        return int(a), int(b)


_VERSION = struct.Struct(">I")


def user_subject(user_id: int) -> str:
    """The key-store subject of a user's name key (meter ids never look like this)."""
    return f"user:{user_id}"


class NameVault(_DataKeys):
    """Seal and open users' names with per-user data keys; derive their login look-up hash."""

    def __init__(
        self,
        current: Callable[[str], tuple[int, SecretKey]],
        version: Callable[[str, int], SecretKey | None],
        lookup: Callable[[bytes], bytes],
        *,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(current, version, clock=clock)
        self._lookup = lookup

    def __repr__(self) -> str:
        return f"NameVault({len(self._sealers)} users cached)"

    def lookup(self, name: str) -> bytes:
        """The keyed hash an account is found by at login (the name itself is not stored)."""
        return self._lookup(b"mg-login|" + name.encode())

    @staticmethod
    def _aad(user_id: int, version: int) -> bytes:
        return b"mg-name|" + _AAD.pack(user_id, version)

    def seal(self, user_id: int, name: str) -> bytes:
        """The sealed name: key version ‖ nonce ‖ ciphertext ‖ tag, bound to ``user_id``."""
        version, aead = self._sealer(user_subject(user_id))
        nonce = secrets.token_bytes(12)
        ct = aead.encrypt(nonce, name.encode(), self._aad(user_id, version))
        return _VERSION.pack(version) + nonce + ct

    def open(self, user_id: int, sealed: bytes | None) -> str | None:
        """The name, or None when there is none or its key was shredded (the user erased).

        Raises:
            AuthenticationFailedError: the sealed name was altered or moved to another user.
        """
        if sealed is None:
            return None
        if len(sealed) < _VERSION.size + 12 + 16:
            raise _altered(user_id)
        (version,) = _VERSION.unpack_from(sealed)
        aead = self._opener(user_subject(user_id), version)
        if aead is None:
            return None
        body = sealed[_VERSION.size :]
        try:
            return aead.decrypt(body[:12], body[12:], self._aad(user_id, version)).decode()
        except InvalidTag:
            raise _altered(user_id) from None


def _altered(user_id: int) -> AuthenticationFailedError:
    """The error for a sealed name that was altered, cut or moved to another user."""
    return AuthenticationFailedError(f"the stored name of user {user_id} fails its integrity check")
