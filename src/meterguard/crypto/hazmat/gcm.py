"""AES-GCM with a truncated tag, built on the fast one-shot ``AESGCM`` API.

DLMS/COSEM always truncates the GCM tag to 12 bytes. ``AESGCM`` only accepts
16-byte tags, and the generic ``Cipher(AES, GCM(..., min_tag_length=12))`` path
costs several times more per call. The fast path here:

* **seal** (inlined in :class:`meterguard.crypto.aead.GcmKey`, the hot path):
  ``AESGCM.encrypt`` and keep the first ``tag_len`` bytes of the tag. A
  truncated GCM tag is by definition the leftmost bits of the full tag
  (NIST SP 800-38D §5.2.1.2), so this is exact.
* **open**: GCM encryption is CTR mode from ``inc32(J0)``; with a 96-bit IV the
  keystream depends only on (key, IV). ``AESGCM.encrypt(iv, C)`` therefore
  returns ``C XOR keystream = P`` (its tag is discarded). Re-sealing ``P`` with
  the received AAD yields ``C`` again and the full tag, whose first ``tag_len``
  bytes are compared in constant time with the received tag. Plaintext is only
  returned after that comparison succeeds.
* **encrypt-only / decrypt-only** (security control 0x20, no tag): the
  keystream trick above, without any tag.

The vectors V1-V5 of the reference prove both directions byte for byte.
This module does not validate key or IV lengths; the recipes in
:mod:`meterguard.crypto.aead` do.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["gcm_decrypt_only", "gcm_encrypt_only", "gcm_opener"]


def gcm_opener(aead: AESGCM, tag_len: int) -> Callable[[bytes, bytes, bytes], bytes | None]:
    """Return ``open(iv, ciphertext || tag, aad)``: the plaintext, or None if the tag is wrong.

    Lookups are hoisted out of the returned function, which sits on the ingest hot path.
    ``data`` must hold at least ``tag_len`` bytes.
    """
    encrypt = aead.encrypt
    compare = hmac.compare_digest

    def open_(iv: bytes, data: bytes, aad: bytes) -> bytes | None:
        cut = len(data) - tag_len
        plaintext = encrypt(iv, data[:cut], None)[:cut] if cut else b""
        if compare(encrypt(iv, plaintext, aad)[cut : cut + tag_len], data[cut:]):
            return plaintext
        return None

    return open_


def gcm_encrypt_only(aead: AESGCM, iv: bytes, plaintext: bytes) -> bytes:
    """Encrypt with the GCM keystream and no tag (security control 0x20)."""
    return aead.encrypt(iv, plaintext, None)[: len(plaintext)]


def gcm_decrypt_only(aead: AESGCM, iv: bytes, ciphertext: bytes) -> bytes:
    """Decrypt with the GCM keystream and no tag (security control 0x20)."""
    return aead.encrypt(iv, ciphertext, None)[: len(ciphertext)]
