"""AES-GCM recipes with DLMS's truncated 12-byte tag.

:class:`GcmKey` binds a :class:`~meterguard.crypto.keys.SecretKey` to a cached
``AESGCM`` object and offers the four operations DLMS needs: seal, open (tag
checked, constant time), encrypt-only and decrypt-only (security control 0x20,
which carries no tag). Failures raise
:class:`~meterguard.errors.AuthenticationFailedError`; no plaintext is ever
returned from a failed open.

This module knows nothing about DLMS headers or AAD layout; see
:mod:`meterguard.cosem.security` for that.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meterguard.crypto.hazmat.gcm import gcm_decrypt_only, gcm_encrypt_only, gcm_opener
from meterguard.crypto.keys import SecretKey
from meterguard.errors import AuthenticationFailedError, ConfigurationError

__all__ = ["DLMS_TAG_LENGTH", "IV_LENGTH", "GcmKey"]

DLMS_TAG_LENGTH = 12
"""Green Book §9.2.3: the GCM tag is truncated to 96 bits in every suite."""

IV_LENGTH = 12
"""IV = system title (8) || invocation counter (4)."""


class GcmKey:
    """An AES-GCM key ready for repeated DLMS operations."""

    __slots__ = ("_aead", "_open12", "key")

    def __init__(self, key: SecretKey) -> None:
        self.key = key
        self._aead = AESGCM(key.expose_secret())
        self._open12 = gcm_opener(self._aead, DLMS_TAG_LENGTH)

    def __repr__(self) -> str:
        return f"GcmKey({self.key!r})"

    @staticmethod
    def _check_iv(iv: bytes) -> None:
        if len(iv) != IV_LENGTH:
            raise ConfigurationError(f"GCM IV must be {IV_LENGTH} bytes, got {len(iv)}")

    def seal(
        self, iv: bytes, plaintext: bytes, aad: bytes, tag_length: int = DLMS_TAG_LENGTH
    ) -> bytes:
        """Encrypt and authenticate; return ciphertext followed by the truncated tag."""
        if len(iv) != IV_LENGTH:
            raise ConfigurationError(f"GCM IV must be {IV_LENGTH} bytes, got {len(iv)}")
        # Inlined gcm_seal: this is the hot path of every protected APDU.
        return self._aead.encrypt(iv, plaintext, aad)[: len(plaintext) + tag_length]

    def open(self, iv: bytes, data: bytes, aad: bytes, tag_length: int = DLMS_TAG_LENGTH) -> bytes:
        """Verify the trailing tag and decrypt.

        Raises:
            AuthenticationFailedError: the tag does not verify or ``data`` is shorter than a tag.
        """
        if len(iv) != IV_LENGTH:
            raise ConfigurationError(f"GCM IV must be {IV_LENGTH} bytes, got {len(iv)}")
        if len(data) < tag_length:
            raise AuthenticationFailedError("authentication failed: ciphertext shorter than tag")
        opener = self._open12
        if tag_length != DLMS_TAG_LENGTH:
            opener = gcm_opener(self._aead, tag_length)
        plaintext = opener(iv, data, aad)
        if plaintext is None:
            raise AuthenticationFailedError("authentication failed: GCM tag mismatch")
        return plaintext

    def open_function(self) -> Callable[[bytes, bytes, bytes], bytes | None]:
        """Return the bound verify-and-decrypt for 12-byte tags, for hot loops.

        It returns None when the tag does not verify; callers must treat None as a
        forgery. The caller guarantees a 12-byte IV and at least 12 bytes of data.
        """
        return self._open12

    def seal_function(self) -> Callable[[bytes, bytes, bytes | None], bytes]:
        """Return the bound one-shot AES-GCM encrypt for hot loops.

        It returns ``ciphertext || 16-byte tag``; DLMS callers keep ``[:-4]`` (the
        12-byte truncation is exact, NIST SP 800-38D §5.2.1.2). The nonce must be
        12 bytes; ``AESGCM`` itself refuses other lengths below 8 bytes, so callers
        build it from a validated system title and a 4-byte counter.
        """
        return self._aead.encrypt

    def mac(self, iv: bytes, aad: bytes, tag_length: int = DLMS_TAG_LENGTH) -> bytes:
        """Return the GMAC tag over ``aad`` (GCM with empty plaintext)."""
        return self.seal(iv, b"", aad, tag_length)

    def verify_mac(self, iv: bytes, aad: bytes, tag: bytes) -> None:
        """Check a GMAC tag.

        Raises:
            AuthenticationFailedError: the tag does not verify.
        """
        self.open(iv, tag, aad, len(tag))

    def encrypt_only(self, iv: bytes, plaintext: bytes) -> bytes:
        """Encrypt without a tag (security control 0x20: confidentiality only)."""
        self._check_iv(iv)
        return gcm_encrypt_only(self._aead, iv, plaintext)

    def decrypt_only(self, iv: bytes, ciphertext: bytes) -> bytes:
        """Decrypt without a tag (security control 0x20). Nothing is authenticated."""
        self._check_iv(iv)
        return gcm_decrypt_only(self._aead, iv, ciphertext)
