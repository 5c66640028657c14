"""RFC 3394 AES key wrap, as DLMS security setup ``key_transfer`` uses it (DM-12).

A wrong key-encryption key, or a tampered wrapped key, raises
:class:`~meterguard.errors.KeyUnwrapError`; nothing about the key is leaked in
the message. This module does not decide which KEK applies; the security setup
object does.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import keywrap

from meterguard.crypto.keys import SecretKey
from meterguard.errors import KeyUnwrapError

__all__ = ["unwrap_key", "wrap_key"]


def wrap_key(kek: SecretKey, key: SecretKey) -> bytes:
    """Wrap ``key`` under ``kek`` (RFC 3394): 24 bytes for a 16-byte key, 40 for 32."""
    return keywrap.aes_key_wrap(kek.expose_secret(), key.expose_secret())


def unwrap_key(kek: SecretKey, wrapped: bytes) -> SecretKey:
    """Unwrap and return the key.

    Raises:
        KeyUnwrapError: integrity check failed (wrong KEK or tampered data) or bad length.
    """
    if len(wrapped) not in (24, 40):
        raise KeyUnwrapError(f"wrapped key must be 24 or 40 bytes, got {len(wrapped)}")
    try:
        raw = keywrap.aes_key_unwrap(kek.expose_secret(), wrapped)
    except keywrap.InvalidUnwrap:
        raise KeyUnwrapError(
            "key unwrap failed: wrong key-encryption key or tampered data"
        ) from None
    return SecretKey(raw)
