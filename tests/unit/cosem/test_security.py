"""Negative cases of application-layer security: tampering fails closed, with a typed error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterguard.cosem.apdu import decode_apdu
from meterguard.cosem.security import (
    CipheringKind,
    GeneralCiphering,
    SecurityControl,
    ServiceCiphered,
    hls_ecdsa_sign,
    hls_ecdsa_verify,
    hls_gmac,
    protect,
    protect_general,
    sign_general,
    unprotect,
    unprotect_general,
    verify_general_signing,
    verify_hls_gmac,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import Curve, SigningKey
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keywrap import unwrap_key, wrap_key
from meterguard.errors import (
    AuthenticationFailedError,
    ConfigurationError,
    DecodeError,
    HlsFailedError,
    InsufficientProtectionError,
    KeyUnwrapError,
    SignatureInvalidError,
)
from tests.conftest import CLIENT_TITLE, SERVER_TITLE
from tests.vectors.test_reference_vectors import PLAIN_GET, V1, V3, V4, V4_STOC

OTHER = SecretKey(bytes(range(16, 32)))


def _open(raw: bytes, ek: SecretKey, ak: SecretKey, title: bytes = SERVER_TITLE) -> bytes:
    apdu = decode_apdu(raw)
    assert isinstance(apdu, ServiceCiphered)
    return unprotect(apdu, system_title=title, key=GcmKey(ek), authentication_key=ak)


@pytest.mark.parametrize("vector", [V1, V3], ids=["auth-only", "auth+enc"])
@given(bit=st.integers(0, 7), offset=st.integers(0, 11))
def test_flipped_tag_bit(
    vector: bytes, bit: int, offset: int, ek: SecretKey, ak: SecretKey
) -> None:
    raw = bytearray(vector)
    raw[-1 - offset] ^= 1 << bit
    with pytest.raises(AuthenticationFailedError):
        _open(bytes(raw), ek, ak)


@pytest.mark.parametrize("vector", [V1, V3], ids=["auth-only", "auth+enc"])
@given(bit=st.integers(0, 7), data=st.data())
def test_flipped_payload_bit(
    vector: bytes, bit: int, data: st.DataObject, ek: SecretKey, ak: SecretKey
) -> None:
    # Anything after SC ‖ IC up to the tag: ciphertext (or authenticated plaintext).
    pos = data.draw(st.integers(7, len(vector) - 13))
    raw = bytearray(vector)
    raw[pos] ^= 1 << bit
    with pytest.raises(AuthenticationFailedError):
        _open(bytes(raw), ek, ak)


def test_changed_counter_breaks_the_tag(ek: SecretKey, ak: SecretKey) -> None:
    raw = bytearray(V3)
    raw[6] ^= 1  # IC is part of the IV
    with pytest.raises(AuthenticationFailedError):
        _open(bytes(raw), ek, ak)


def test_wrong_authentication_key(ek: SecretKey) -> None:
    for vector in (V1, V3):
        with pytest.raises(AuthenticationFailedError):
            _open(vector, ek, OTHER)


def test_wrong_encryption_key(ak: SecretKey) -> None:
    with pytest.raises(AuthenticationFailedError):
        _open(V3, OTHER, ak)


def test_wrong_originator_title(ek: SecretKey, ak: SecretKey) -> None:
    with pytest.raises(AuthenticationFailedError):
        _open(V3, ek, ak, CLIENT_TITLE)


def test_truncated_tag(ek: SecretKey, ak: SecretKey) -> None:
    apdu = decode_apdu(V3)
    assert isinstance(apdu, ServiceCiphered)
    short = ServiceCiphered(apdu.tag, apdu.security, apdu.invocation_counter, apdu.payload[:-4])
    with pytest.raises(AuthenticationFailedError):
        unprotect(short, system_title=SERVER_TITLE, key=GcmKey(ek), authentication_key=ak)


def test_ciphered_tag_must_match_the_inner_apdu(ek: SecretKey, ak: SecretKey) -> None:
    # A valid glo-get-request body relabelled as glo-set-request is refused.
    raw = protect(
        PLAIN_GET,
        kind=CipheringKind.SERVICE_GLO,
        security=SecurityControl(),
        invocation_counter=5,
        system_title=SERVER_TITLE,
        key=GcmKey(ek),
        authentication_key=ak,
    )
    relabelled = bytes((0xC9,)) + raw[1:]
    with pytest.raises(AuthenticationFailedError, match="unexpected APDU"):
        _open(relabelled, ek, ak)


def test_no_protection_is_refused(ek: SecretKey, ak: SecretKey) -> None:
    apdu = ServiceCiphered(
        0xC8, SecurityControl(authenticated=False, encrypted=False), 1, PLAIN_GET
    )
    with pytest.raises(InsufficientProtectionError):
        unprotect(apdu, system_title=SERVER_TITLE, key=GcmKey(ek), authentication_key=ak)
    with pytest.raises(ConfigurationError):
        protect(
            PLAIN_GET,
            kind=CipheringKind.SERVICE_GLO,
            security=SecurityControl(authenticated=False, encrypted=False),
            invocation_counter=1,
            system_title=SERVER_TITLE,
            key=GcmKey(ek),
            authentication_key=ak,
        )


def test_compressed_is_refused(ek: SecretKey, ak: SecretKey) -> None:
    apdu = ServiceCiphered(0xC8, SecurityControl(compressed=True), 1, bytes(20))
    with pytest.raises(DecodeError, match="compressed"):
        unprotect(apdu, system_title=SERVER_TITLE, key=GcmKey(ek), authentication_key=ak)


def test_hls_gmac_negative(ek: SecretKey, ak: SecretKey) -> None:
    gcm = GcmKey(ek)
    with pytest.raises(HlsFailedError):
        verify_hls_gmac(
            V4, b"other-challenge!", system_title=CLIENT_TITLE, key=gcm, authentication_key=ak
        )
    with pytest.raises(HlsFailedError):
        verify_hls_gmac(V4, V4_STOC, system_title=SERVER_TITLE, key=gcm, authentication_key=ak)
    with pytest.raises(HlsFailedError):
        verify_hls_gmac(V4, V4_STOC, system_title=CLIENT_TITLE, key=gcm, authentication_key=OTHER)
    with pytest.raises(HlsFailedError, match="SC"):
        verify_hls_gmac(
            b"\x30" + V4[1:], V4_STOC, system_title=CLIENT_TITLE, key=gcm, authentication_key=ak
        )
    with pytest.raises(HlsFailedError, match="17 bytes"):
        verify_hls_gmac(V4[:-1], V4_STOC, system_title=CLIENT_TITLE, key=gcm, authentication_key=ak)
    assert (
        hls_gmac(
            V4_STOC, system_title=CLIENT_TITLE, invocation_counter=1, key=gcm, authentication_key=ak
        )
        == V4
    )


def test_hls_ecdsa_round_trip_and_negative() -> None:
    client, server = SigningKey.generate(Curve.P256), SigningKey.generate(Curve.P256)
    ctos, stoc = b"C" * 16, b"S" * 32
    f_stoc = hls_ecdsa_sign(
        client,
        own_title=CLIENT_TITLE,
        peer_title=SERVER_TITLE,
        own_challenge_of_peer=stoc,
        peer_challenge=ctos,
    )
    hls_ecdsa_verify(
        client.verifying_key(),
        f_stoc,
        signer_title=CLIENT_TITLE,
        other_title=SERVER_TITLE,
        answered_challenge=stoc,
        signer_challenge=ctos,
    )
    with pytest.raises(HlsFailedError):
        hls_ecdsa_verify(
            server.verifying_key(),
            f_stoc,
            signer_title=CLIENT_TITLE,
            other_title=SERVER_TITLE,
            answered_challenge=stoc,
            signer_challenge=ctos,
        )
    with pytest.raises(HlsFailedError):
        hls_ecdsa_verify(
            client.verifying_key(),
            f_stoc,
            signer_title=CLIENT_TITLE,
            other_title=SERVER_TITLE,
            answered_challenge=b"X" * 32,
            signer_challenge=ctos,
        )


def test_general_ciphering_identified_key(ek: SecretKey, ak: SecretKey) -> None:
    apdu = protect_general(
        PLAIN_GET,
        transaction_id=b"\x01\x02",
        originator=CLIENT_TITLE,
        recipient=SERVER_TITLE,
        security=SecurityControl(),
        invocation_counter=7,
        key=GcmKey(ek),
        authentication_key=ak,
    )
    back = decode_apdu(apdu.to_bytes())
    assert isinstance(back, GeneralCiphering) and back == apdu
    assert unprotect_general(back, key=GcmKey(ek), authentication_key=ak) == PLAIN_GET
    # The header fields are authenticated: changing the recipient breaks the tag.
    forged = GeneralCiphering(
        back.transaction_id,
        back.originator_system_title,
        CLIENT_TITLE,
        back.date_time,
        back.other_information,
        back.key_info,
        back.security,
        back.invocation_counter,
        back.payload,
    )
    with pytest.raises(AuthenticationFailedError):
        unprotect_general(forged, key=GcmKey(ek), authentication_key=ak)


def test_general_signing() -> None:
    key = SigningKey.generate()
    apdu = sign_general(
        PLAIN_GET,
        signing_key=key,
        transaction_id=b"\x09",
        originator=SERVER_TITLE,
        recipient=CLIENT_TITLE,
    )
    back = decode_apdu(apdu.to_bytes())
    assert verify_general_signing(back, key.verifying_key()) == PLAIN_GET  # type: ignore[arg-type]
    assert len(apdu.signature) == 64
    tampered = type(apdu)(
        apdu.transaction_id,
        apdu.originator_system_title,
        apdu.recipient_system_title,
        apdu.date_time,
        apdu.other_information,
        PLAIN_GET[:-1] + b"\x03",
        apdu.signature,
    )
    with pytest.raises(SignatureInvalidError):
        verify_general_signing(tampered, key.verifying_key())
    with pytest.raises(SignatureInvalidError):
        verify_general_signing(apdu, SigningKey.generate().verifying_key())


def test_wrong_kek_on_unwrap() -> None:
    kek, key = SecretKey(bytes(16)), SecretKey.generate()
    wrapped = wrap_key(kek, key)
    with pytest.raises(KeyUnwrapError):
        unwrap_key(OTHER, wrapped)
    with pytest.raises(KeyUnwrapError):
        unwrap_key(kek, wrapped[:-1] + bytes((wrapped[-1] ^ 1,)))
    with pytest.raises(KeyUnwrapError, match="24 or 40"):
        unwrap_key(kek, wrapped[:20])
