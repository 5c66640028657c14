"""HLS mechanisms 5 (GMAC) and 7 (ECDSA), and general-signing.

Part of :mod:`meterguard.cosem.security`, which re-exports it.
"""

from __future__ import annotations

from meterguard.cosem._codec import pack_u32
from meterguard.cosem.security.envelopes import GeneralSigning
from meterguard.cosem.security.recipes import _check_st
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import SigningKey, VerifyingKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    AuthenticationFailedError,
    HlsFailedError,
    SignatureInvalidError,
)

__all__ = [
    "hls_ecdsa_sign",
    "hls_ecdsa_verify",
    "hls_gmac",
    "sign_general",
    "verify_general_signing",
    "verify_hls_gmac",
]


# ------------------------------------------------------------------ HLS


def hls_gmac(
    challenge: bytes,
    *,
    system_title: bytes,
    invocation_counter: int,
    key: GcmKey,
    authentication_key: SecretKey,
    suite: int = 0,
) -> bytes:
    """HLS mechanism 5: return ``SC ‖ IC ‖ GMAC(SC ‖ AK ‖ challenge)`` with SC = 0x10 | suite.

    IV = own system title ‖ IC; key = global unicast key (reference §1.8, V4/V5).
    """
    _check_st(system_title)
    sc = 0x10 | suite
    iv = system_title + pack_u32(invocation_counter)
    aad = bytes((sc,)) + authentication_key.expose_secret() + challenge
    return bytes((sc,)) + pack_u32(invocation_counter) + key.mac(iv, aad)


def verify_hls_gmac(
    response: bytes,
    challenge: bytes,
    *,
    system_title: bytes,
    key: GcmKey,
    authentication_key: SecretKey,
    suite: int = 0,
) -> int:
    """Check the peer's f(challenge) for HLS mechanism 5; return the counter it carried.

    ``system_title`` is the peer's (the responder computed the GMAC with its own).

    Raises:
        HlsFailedError: wrong length, wrong SC, or the GMAC does not verify.
    """
    if len(response) != 17:
        raise HlsFailedError(f"HLS-GMAC response must be 17 bytes, got {len(response)}")
    if response[0] != 0x10 | suite:
        raise HlsFailedError(f"HLS-GMAC response has SC 0x{response[0]:02X}")
    ic = int.from_bytes(response[1:5], "big")
    iv = system_title + response[1:5]
    aad = bytes((response[0],)) + authentication_key.expose_secret() + challenge
    try:
        key.verify_mac(iv, aad, response[5:])
    except AuthenticationFailedError:
        raise HlsFailedError("HLS-GMAC: f(challenge) does not verify") from None
    return ic


def hls_ecdsa_sign(
    signing_key: SigningKey,
    *,
    own_title: bytes,
    peer_title: bytes,
    own_challenge_of_peer: bytes,
    peer_challenge: bytes,
) -> bytes:
    """HLS mechanism 7: sign ``own ST ‖ peer ST ‖ challenge-to-answer ‖ own challenge``.

    For the client's f(StoC): own = client, challenge-to-answer = StoC, own challenge = CtoS.
    For the server's f(CtoS): own = server, challenge-to-answer = CtoS, own challenge = StoC.
    """
    return signing_key.sign(own_title + peer_title + own_challenge_of_peer + peer_challenge)


def hls_ecdsa_verify(
    verifying_key: VerifyingKey,
    signature: bytes,
    *,
    signer_title: bytes,
    other_title: bytes,
    answered_challenge: bytes,
    signer_challenge: bytes,
) -> None:
    """Verify an HLS mechanism 7 response.

    Raises:
        HlsFailedError: the signature does not verify.
    """
    try:
        verifying_key.verify(
            signature, signer_title + other_title + answered_challenge + signer_challenge
        )
    except SignatureInvalidError:
        raise HlsFailedError("HLS-ECDSA: f(challenge) signature does not verify") from None


# ------------------------------------------------------------------ general-signing


def sign_general(
    content: bytes,
    *,
    signing_key: SigningKey,
    transaction_id: bytes,
    originator: bytes,
    recipient: bytes,
    date_time: bytes = b"",
    other_information: bytes = b"",
) -> GeneralSigning:
    """Wrap ``content`` (a plain or ciphered APDU) in general-signing."""
    unsigned = GeneralSigning(
        transaction_id, originator, recipient, date_time, other_information, content, b""
    )
    return GeneralSigning(
        transaction_id,
        originator,
        recipient,
        date_time,
        other_information,
        content,
        signing_key.sign(unsigned.signed_data()),
    )


def verify_general_signing(apdu: GeneralSigning, verifying_key: VerifyingKey) -> bytes:
    """Verify a general-signing APDU and return its content.

    Raises:
        SignatureInvalidError: the signature does not verify.
    """
    verifying_key.verify(apdu.signature, apdu.signed_data())
    return apdu.content
