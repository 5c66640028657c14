"""Crypto recipes: redaction, constant-time equality, ECDSA (RFC 6979), GCM fast path."""

from __future__ import annotations

import pickle

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import Curve, SigningKey, VerifyingKey, dlms_kdf
from meterguard.crypto.keys import SecretKey
from meterguard.errors import AuthenticationFailedError, ConfigurationError, SignatureInvalidError


def test_secret_key_is_redacted() -> None:
    key = SecretKey.from_hex("000102030405060708090A0B0C0D0E0F")
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert "0001020304" not in text.upper()
        assert "redacted" in text
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_secret_key_validation() -> None:
    with pytest.raises(ConfigurationError, match="16 or 32"):
        SecretKey(bytes(15))
    with pytest.raises(ConfigurationError, match="not valid hex") as info:
        SecretKey.from_hex("zz" * 16)
    assert "zz" not in str(info.value)
    assert SecretKey(bytes(16)) == SecretKey(bytes(16))
    assert SecretKey(bytes(16)) != SecretKey(bytes(15) + b"\x01")


def test_rfc6979_p256_sha256_sample() -> None:
    # RFC 6979 §A.2.5, P-256 / SHA-256, message "sample".
    x = int("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721", 16)
    key = SigningKey.from_scalar(x)
    sig = key.sign(b"sample", deterministic=True)
    assert sig.hex().upper() == (
        "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716"
        "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8"
    )
    key.verifying_key().verify(sig, b"sample")
    with pytest.raises(SignatureInvalidError):
        key.verifying_key().verify(sig, b"sample!")
    assert "C9AF" not in repr(key).upper()


def test_verifying_key_encodings_and_ecdh() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    pub = a.verifying_key()
    assert VerifyingKey.from_bytes(pub.to_bytes()) == pub
    assert VerifyingKey.from_bytes(b"\x04" + pub.to_bytes()) == pub
    assert a.exchange(b.verifying_key()) == b.exchange(a.verifying_key())
    with pytest.raises(ConfigurationError):
        VerifyingKey.from_bytes(bytes(64))
    with pytest.raises(ConfigurationError):
        a.exchange(SigningKey.generate(Curve.P384).verifying_key())


def test_p384_signatures_are_96_bytes() -> None:
    key = SigningKey.generate(Curve.P384)
    sig = key.sign(b"x")
    assert len(sig) == 96
    key.verifying_key().verify(sig, b"x")


def test_kdf_suite2_length() -> None:
    assert len(dlms_kdf(bytes(48), party_u=bytes(8), party_v=bytes(8), key_length=32)) == 32


@given(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=12, max_size=12),
    st.binary(max_size=200),
    st.binary(max_size=40),
)
def test_fast_path_agrees_with_generic_cipher(
    key: bytes, iv: bytes, plaintext: bytes, aad: bytes
) -> None:
    """The AESGCM-based 12-byte-tag path equals the generic GCM(min_tag_length=12) API."""
    enc = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    ct = enc.update(plaintext) + enc.finalize()
    expected = ct + enc.tag[:12]
    gcm = GcmKey(SecretKey(key))
    assert gcm.seal(iv, plaintext, aad) == expected
    assert gcm.open(iv, expected, aad) == plaintext
    dec = Cipher(algorithms.AES(key), modes.GCM(iv, expected[-12:], min_tag_length=12)).decryptor()
    dec.authenticate_additional_data(aad)
    assert dec.update(ct) + dec.finalize() == plaintext
    bad = bytearray(expected)
    bad[-1] ^= 0x80
    with pytest.raises(AuthenticationFailedError):
        gcm.open(iv, bytes(bad), aad)
    assert gcm.decrypt_only(iv, gcm.encrypt_only(iv, plaintext)) == plaintext
    assert gcm.encrypt_only(iv, plaintext) == ct
