"""The hot-path ApduProtector/ApduUnprotector agree with protect/unprotect and fail closed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterguard.cosem.counters import ReceiveCounter
from meterguard.cosem.security import (
    ApduProtector,
    ApduUnprotector,
    CipheringKind,
    SecurityControl,
    protect,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    AuthenticationFailedError,
    ConfigurationError,
    DecodeError,
    InsufficientProtectionError,
    ReplayError,
    UnexpectedSystemTitleError,
)
from tests.conftest import CLIENT_TITLE, SERVER_TITLE
from tests.vectors.test_reference_vectors import PLAIN_GET, V1, V3, V3G

SCS = [SecurityControl(), SecurityControl(encrypted=False), SecurityControl(authenticated=False)]
PLAIN_TAGS = [0xC0, 0xC1, 0xC3, 0xC4, 0xC5, 0xC7, 0x01, 0x08]


@given(
    st.sampled_from(SCS),
    st.sampled_from(list(CipheringKind)),
    st.sampled_from(PLAIN_TAGS),
    st.binary(max_size=300),
    st.integers(0, 0xFFFFFFFF),
)
def test_matches_functional_api(
    sc: SecurityControl, kind: CipheringKind, tag: int, body: bytes, ic: int
) -> None:
    ek, ak = SecretKey(bytes(range(16))), SecretKey(bytes(range(16, 32)))
    plain = bytes((tag,)) + body
    fast = ApduProtector(
        key=GcmKey(ek), authentication_key=ak, system_title=SERVER_TITLE, security=sc
    )
    expected = protect(
        plain,
        kind=kind,
        security=sc,
        invocation_counter=ic,
        system_title=SERVER_TITLE,
        key=GcmKey(ek),
        authentication_key=ak,
    )
    assert fast.protect(plain, ic, kind) == expected


def test_vectors_through_the_fast_path(ek: SecretKey, ak: SecretKey) -> None:
    p = ApduProtector(
        key=GcmKey(ek), authentication_key=ak, system_title=SERVER_TITLE, security=SecurityControl()
    )
    assert p.protect(PLAIN_GET, 0x01234567, CipheringKind.SERVICE_GLO) == V3
    assert p.protect(PLAIN_GET, 0x01234567) == V3G
    u = ApduUnprotector(key=GcmKey(ek), authentication_key=ak, peer_system_title=SERVER_TITLE)
    assert u.unprotect(V3) == (0x01234567, PLAIN_GET)
    assert u.unprotect(V3G) == (0x01234567, PLAIN_GET)


def test_unprotector_checks_in_order(ek: SecretKey, ak: SecretKey) -> None:
    u = ApduUnprotector(key=GcmKey(ek), authentication_key=ak, peer_system_title=SERVER_TITLE)
    counter = ReceiveCounter()
    assert u.unprotect(V3G, counter)[0] == 0x01234567
    with pytest.raises(ReplayError):
        u.unprotect(V3G, counter)
    other = ApduUnprotector(key=GcmKey(ek), authentication_key=ak, peer_system_title=CLIENT_TITLE)
    with pytest.raises(UnexpectedSystemTitleError):
        other.unprotect(V3G)
    with pytest.raises(InsufficientProtectionError):
        u.unprotect(V1)  # authentication only, encryption required
    relaxed = ApduUnprotector(
        key=GcmKey(ek),
        authentication_key=ak,
        peer_system_title=SERVER_TITLE,
        require_encryption=False,
    )
    assert relaxed.unprotect(V1)[1] == PLAIN_GET
    suite1 = ApduUnprotector(
        key=GcmKey(ek), authentication_key=ak, peer_system_title=SERVER_TITLE, suite=1
    )
    with pytest.raises(InsufficientProtectionError):
        suite1.unprotect(V3)


def test_forgery_does_not_advance_the_counter(ek: SecretKey, ak: SecretKey) -> None:
    u = ApduUnprotector(key=GcmKey(ek), authentication_key=ak, peer_system_title=SERVER_TITLE)
    counter = ReceiveCounter(5)
    forged = V3G[:-1] + bytes((V3G[-1] ^ 1,))
    with pytest.raises(AuthenticationFailedError):
        u.unprotect(forged, counter)
    assert counter.last == 5


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xdb", bytes.fromhex("DB084D4D4D0000BC614E0130"), bytes.fromhex("C000"), V3G + b"\x00"],
)
def test_malformed(raw: bytes, ek: SecretKey, ak: SecretKey) -> None:
    u = ApduUnprotector(key=GcmKey(ek), authentication_key=ak, peer_system_title=SERVER_TITLE)
    with pytest.raises(DecodeError):
        u.unprotect(raw)


def test_protector_refuses_bad_settings(ek: SecretKey, ak: SecretKey) -> None:
    with pytest.raises(ConfigurationError):
        ApduProtector(
            key=GcmKey(ek), authentication_key=ak, system_title=b"short", security=SecurityControl()
        )
    with pytest.raises(ConfigurationError):
        ApduProtector(
            key=GcmKey(ek),
            authentication_key=ak,
            system_title=SERVER_TITLE,
            security=SecurityControl(authenticated=False, encrypted=False),
        )
    p = ApduProtector(
        key=GcmKey(ek), authentication_key=ak, system_title=SERVER_TITLE, security=SecurityControl()
    )
    with pytest.raises(ConfigurationError):
        p.protect(PLAIN_GET, 1 << 32)
    with pytest.raises(ConfigurationError):
        p.protect(
            bytes.fromhex("0F00000001"), 1, CipheringKind.SERVICE_GLO
        )  # no glo form for data-notification
