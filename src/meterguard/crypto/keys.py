"""Key types whose material never shows up in a repr, a log line or an error.

:class:`SecretKey` wraps symmetric key material (DLMS GUEK, GBEK, GAK, master
key/KEK, dedicated keys). Its ``repr`` and ``str`` are redacted, equality is
constant-time, and the material is only reachable through the explicitly named
:meth:`SecretKey.expose_secret`, which recipes call when a standard puts the key
itself into data (the DLMS authentication key is part of the GCM AAD).

This module does not store, generate from a KEK, or rotate keys; the key store
(envelope encryption, PKCS#11) builds on these types.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets

from meterguard.errors import ConfigurationError

__all__ = ["KeyId", "SecretKey"]

_VALID_LENGTHS = frozenset({16, 32})


class KeyId(enum.IntEnum):
    """DLMS key identifiers (Green Book, security setup key_transfer ``key_id``)."""

    GLOBAL_UNICAST = 0
    GLOBAL_BROADCAST = 1
    AUTHENTICATION = 2
    MASTER = 3


class SecretKey:
    """Symmetric key material with a redacted repr and constant-time equality."""

    __slots__ = ("__fingerprint", "__material")

    def __init__(self, material: bytes) -> None:
        if not isinstance(material, bytes | bytearray):
            raise ConfigurationError("key material must be bytes")
        if len(material) not in _VALID_LENGTHS:
            raise ConfigurationError(
                f"key must be 16 or 32 bytes (AES-128 or AES-256), got {len(material)} bytes"
            )
        self.__material = bytes(material)
        self.__fingerprint = hashlib.sha256(
            b"meterguard key fingerprint\x00" + self.__material
        ).hexdigest()[:8]

    @classmethod
    def generate(cls, length: int = 16) -> SecretKey:
        """Return a new key from the operating system's CSPRNG."""
        return cls(secrets.token_bytes(length))

    @classmethod
    def from_hex(cls, text: str) -> SecretKey:
        """Parse hex key material; spaces are ignored. The text is not echoed on error."""
        try:
            raw = bytes.fromhex(text.replace(" ", ""))
        except ValueError:
            raise ConfigurationError("key is not valid hex") from None
        return cls(raw)

    def __len__(self) -> int:
        return len(self.__material)

    @property
    def bits(self) -> int:
        """Key length in bits."""
        return len(self.__material) * 8

    def expose_secret(self) -> bytes:
        """Return the raw key material. Only crypto recipes and key wrapping should call this."""
        return self.__material

    def fingerprint(self) -> str:
        """Return a short, non-reversible identifier safe for logs (8 hex digits)."""
        return self.__fingerprint

    def __repr__(self) -> str:
        return f"SecretKey(<redacted {self.bits}-bit>, fp={self.fingerprint()})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self.__material, other.__material)

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretKey cannot be pickled; store keys through the key store")
