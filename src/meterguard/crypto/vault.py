"""Encryption at rest of interval readings under per-meter data keys (PRIV-4).

:class:`ReadingVault` seals a reading's two register values (import and export, Wh) with
AES-256-GCM under the meter's current data key from the key store, bound by the AAD to the
meter, the interval and the key version, so a sealed value moved to another row or meter
does not open. It returns ``(version, nonce ‖ ciphertext ‖ tag)`` — 44 bytes — and opens
them back, or returns None when the key of that version was destroyed (crypto-shredded):
those readings are gone for everyone.

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

__all__ = ["KEY_TTL", "SEALED_LENGTH", "ReadingVault"]

KEY_TTL = 30.0
SEALED_LENGTH = 12 + 16 + 16
_VALUES = struct.Struct(">QQ")
_AAD = struct.Struct(">QI")


class ReadingVault:
    """Seal and open readings with per-meter data keys."""

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

    def __repr__(self) -> str:
        return f"ReadingVault({len(self._sealers)} meters cached)"

    def forget(self, meter: str) -> None:
        """Drop the cached keys of ``meter`` (after shredding it in this process)."""
        self._sealers.pop(meter, None)
        for k in [k for k in list(self._openers) if k[0] == meter]:
            self._openers.pop(k, None)

    def _sealer(self, meter: str) -> tuple[int, AESGCM]:
        now = self._clock()
        hit = self._sealers.get(meter)
        if hit is not None and now - hit[0] < KEY_TTL:
            return hit[1], hit[2]
        version, key = self._current(meter)
        aead = AESGCM(key.expose_secret())
        self._sealers[meter] = (now, version, aead)
        return version, aead

    def _opener(self, meter: str, version: int) -> AESGCM | None:
        now = self._clock()
        hit = self._openers.get((meter, version))
        if hit is not None and now - hit[0] < KEY_TTL:
            return hit[1]
        key = self._version(meter, version)
        aead = None if key is None else AESGCM(key.expose_secret())
        self._openers[(meter, version)] = (now, aead)
        return aead

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
