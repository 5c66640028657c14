"""The protect/unprotect recipes: AES-GCM, 12-byte tag, IV = system title ‖ IC (§1.5 AAD).

Part of :mod:`meterguard.cosem.security`, which re-exports it.
"""

from __future__ import annotations

from meterguard.cosem._codec import pack_u32
from meterguard.cosem.counters import MAX_COUNTER
from meterguard.cosem.security.envelopes import (
    SYSTEM_TITLE_LENGTH,
    CipheringKind,
    GeneralCiphering,
    GeneralGloCiphering,
    KeyInfo,
    SecurityControl,
    ServiceCiphered,
    glo_tag_for,
    plain_tag_for,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    AuthenticationFailedError,
    ConfigurationError,
    DecodeError,
    InsufficientProtectionError,
)

__all__ = ["protect", "protect_general", "unprotect", "unprotect_general"]


# ------------------------------------------------------------------ recipes


def _check_st(st: bytes) -> None:
    if len(st) != SYSTEM_TITLE_LENGTH:
        raise ConfigurationError(f"system title must be 8 bytes, got {len(st)}")


def _aad(sc: SecurityControl, ak: SecretKey | None, extra: bytes) -> bytes:
    if ak is None:
        raise ConfigurationError("authentication requested but no authentication key is set")
    return bytes((sc.to_byte(),)) + ak.expose_secret() + extra


def _seal(
    plain: bytes, sc: SecurityControl, iv: bytes, key: GcmKey, ak: SecretKey | None, extra: bytes
) -> bytes:
    if sc.compressed:
        raise ConfigurationError("V.44 compression is not supported")
    if sc.authenticated and sc.encrypted:
        return key.seal(iv, plain, _aad(sc, ak, extra))
    if sc.authenticated:
        return plain + key.mac(iv, _aad(sc, ak, extra + plain))
    if sc.encrypted:
        return key.encrypt_only(iv, plain)
    raise ConfigurationError("security control asks for neither authentication nor encryption")


def _open(
    payload: bytes, sc: SecurityControl, iv: bytes, key: GcmKey, ak: SecretKey | None, extra: bytes
) -> bytes:
    if sc.compressed:
        raise DecodeError("V.44 compressed APDUs are not supported")
    if sc.authenticated and sc.encrypted:
        return key.open(iv, payload, _aad(sc, ak, extra))
    if sc.authenticated:
        if len(payload) < 12:
            raise AuthenticationFailedError("authentication failed: payload shorter than tag")
        plain, tag = payload[:-12], payload[-12:]
        key.verify_mac(iv, _aad(sc, ak, extra + plain), tag)
        return plain
    if sc.encrypted:
        return key.decrypt_only(iv, payload)
    raise InsufficientProtectionError("ciphered APDU with neither authentication nor encryption")


def protect(
    plain: bytes,
    *,
    kind: CipheringKind,
    security: SecurityControl,
    invocation_counter: int,
    system_title: bytes,
    key: GcmKey,
    authentication_key: SecretKey | None,
) -> bytes:
    """Cipher a plain APDU and return the wrapped bytes.

    ``system_title`` is the originator's (ours); it forms the IV with the counter.

    Raises:
        ConfigurationError: bad system title, counter out of range, APDU without a
            service-specific form, or authentication without an authentication key.
    """
    _check_st(system_title)
    if not 0 <= invocation_counter <= MAX_COUNTER:
        raise ConfigurationError("invocation counter out of range")
    if not plain:
        raise ConfigurationError("cannot protect an empty APDU")
    iv = system_title + pack_u32(invocation_counter)
    payload = _seal(plain, security, iv, key, authentication_key, b"")
    if kind in (CipheringKind.SERVICE_GLO, CipheringKind.SERVICE_DED):
        tag = glo_tag_for(plain[0], dedicated=kind is CipheringKind.SERVICE_DED)
        return ServiceCiphered(tag, security, invocation_counter, payload).to_bytes()
    return GeneralGloCiphering(
        system_title, security, invocation_counter, payload, dedicated=kind.dedicated
    ).to_bytes()


def unprotect(
    apdu: ServiceCiphered | GeneralGloCiphering,
    *,
    system_title: bytes,
    key: GcmKey,
    authentication_key: SecretKey | None,
) -> bytes:
    """Verify and decipher; return the plain APDU bytes.

    ``system_title`` is the originator's, which the caller knows from the
    association (service-specific APDUs carry none). For general-glo APDUs the
    caller must already have compared the carried title with the expected one.
    The counter is *not* checked here; check it before and commit it after.

    Raises:
        AuthenticationFailedError: the tag does not verify.
        InsufficientProtectionError: neither authenticated nor encrypted.
        DecodeError: compressed APDU.
    """
    _check_st(system_title)
    iv = system_title + pack_u32(apdu.invocation_counter)
    plain = _open(apdu.payload, apdu.security, iv, key, authentication_key, b"")
    if isinstance(apdu, ServiceCiphered) and plain and plain[0] != plain_tag_for(apdu.tag):
        raise AuthenticationFailedError(
            f"ciphered tag 0x{apdu.tag:02X} wraps an unexpected APDU 0x{plain[0]:02X}"
        )
    return plain


def protect_general(
    plain: bytes,
    *,
    transaction_id: bytes,
    originator: bytes,
    recipient: bytes,
    date_time: bytes = b"",
    other_information: bytes = b"",
    key_id: int = 0,
    security: SecurityControl,
    invocation_counter: int,
    key: GcmKey,
    authentication_key: SecretKey | None,
) -> GeneralCiphering:
    """Build a general-ciphering APDU with an identified key (0 unicast, 1 broadcast)."""
    _check_st(originator)
    template = GeneralCiphering(
        transaction_id,
        originator,
        recipient,
        date_time,
        other_information,
        KeyInfo(0, key_id=key_id),
        security,
        invocation_counter,
        b"",
    )
    iv = originator + pack_u32(invocation_counter)
    payload = _seal(plain, security, iv, key, authentication_key, template.header_fields())
    return GeneralCiphering(
        transaction_id,
        originator,
        recipient,
        date_time,
        other_information,
        template.key_info,
        security,
        invocation_counter,
        payload,
    )


def unprotect_general(
    apdu: GeneralCiphering, *, key: GcmKey, authentication_key: SecretKey | None
) -> bytes:
    """Verify and decipher a general-ciphering APDU with an identified key.

    The caller selects ``key`` from ``apdu.key_info.key_id`` and checks the
    originator system title and counter.

    Raises:
        DecodeError: key-info is not an identified key.
        AuthenticationFailedError: the tag does not verify.
    """
    if apdu.key_info is None or apdu.key_info.choice != 0:
        raise DecodeError("only general-ciphering with an identified key is supported")
    _check_st(apdu.originator_system_title)
    iv = apdu.originator_system_title + pack_u32(apdu.invocation_counter)
    return _open(apdu.payload, apdu.security, iv, key, authentication_key, apdu.header_fields())
