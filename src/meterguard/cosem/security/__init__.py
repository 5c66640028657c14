"""DLMS/COSEM application-layer security (Green Book §9.2): ciphering, HLS and signing.

What is here:

* :class:`SecurityControl`, the SC byte (suite, authentication, encryption,
  broadcast key, compression).
* The ciphered APDU envelopes: service-specific glo/ded (:class:`ServiceCiphered`),
  general-glo/ded-ciphering (:class:`GeneralGloCiphering`), general-ciphering with
  key-info (:class:`GeneralCiphering`) and general-signing (:class:`GeneralSigning`).
* The recipes :func:`protect` / :func:`unprotect` (AES-GCM with the 12-byte tag,
  IV = originator system title ‖ IC, AAD per §1.5 of the reference),
  HLS mechanism 5 (:func:`hls_gmac`, :func:`verify_hls_gmac`) and 7
  (:func:`hls_ecdsa_sign`, :func:`hls_ecdsa_verify`), and general-signing
  (:func:`sign_general`, :func:`verify_general_signing`).

Every verification fails closed with a :class:`~meterguard.errors.SecurityError`
subclass and returns no plaintext on failure. Counter policy (replay checks) is
in :mod:`meterguard.cosem.counters`; which protection an association demands is
decided in :mod:`meterguard.cosem.connection`. Nothing here does IO.

Two layouts are marked *self-consistent* because no public vector covers them:
the AAD of general-ciphering (0xDD) appends transaction-id, originator and
recipient system titles, date-time and other-information, each with its A-XDR
length (as Gurux does); the general-signing signature covers those five fields
and the content, each with its length, excluding the 0xDF tag.
"""

from __future__ import annotations

from meterguard.cosem.security.envelopes import (
    SERVICE_CIPHERED_TAGS,
    SYSTEM_TITLE_LENGTH,
    CipheringKind,
    GeneralCiphering,
    GeneralGloCiphering,
    GeneralSigning,
    KeyInfo,
    SecurityControl,
    ServiceCiphered,
    glo_tag_for,
    plain_tag_for,
)
from meterguard.cosem.security.hls import (
    hls_ecdsa_sign,
    hls_ecdsa_verify,
    hls_gmac,
    sign_general,
    verify_general_signing,
    verify_hls_gmac,
)
from meterguard.cosem.security.hotpath import ApduProtector, ApduUnprotector
from meterguard.cosem.security.recipes import protect, protect_general, unprotect, unprotect_general

__all__ = [
    "SERVICE_CIPHERED_TAGS",
    "SYSTEM_TITLE_LENGTH",
    "ApduProtector",
    "ApduUnprotector",
    "CipheringKind",
    "GeneralCiphering",
    "GeneralGloCiphering",
    "GeneralSigning",
    "KeyInfo",
    "SecurityControl",
    "ServiceCiphered",
    "glo_tag_for",
    "hls_ecdsa_sign",
    "hls_ecdsa_verify",
    "hls_gmac",
    "plain_tag_for",
    "protect",
    "protect_general",
    "sign_general",
    "unprotect",
    "unprotect_general",
    "verify_general_signing",
    "verify_hls_gmac",
]
