"""Byte-exact checks of every vector V1-V8 in shared/reference/dlms-cosem-security.md §2."""

from __future__ import annotations

import pytest

from meterguard.cosem.apdu import decode_apdu
from meterguard.cosem.axdr import Array, Enum, OctetString, Structure, encode_data
from meterguard.cosem.security import (
    CipheringKind,
    GeneralGloCiphering,
    SecurityControl,
    ServiceCiphered,
    hls_gmac,
    protect,
    unprotect,
    verify_hls_gmac,
)
from meterguard.cosem.xdlms import InitiateRequest, decode_xdlms
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import dlms_kdf
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keywrap import unwrap_key, wrap_key
from tests.conftest import CLIENT_TITLE, SERVER_TITLE

IC = 0x01234567
# get-request-normal, invoke-id-and-priority 0x00, Clock 0.0.1.0.0.255 attribute 2 (reference §2).
PLAIN_GET = bytes.fromhex("C0010000080000010000FF0200")

# V1 — Java "logicalDataTransportDecryptionTest"; "GB Table 40"; recomputed.
V1 = bytes.fromhex("C81E1001234567C0010000080000010000FF020006725D910F9221D263877516")
# V2 — openmuc jDLMS CipheringTest.test_enrcypted_apdu; recomputed.
V2 = bytes.fromhex("C8122001234567411312FF935A47566827C467BC")
# V3 — pwitab/dlms-cosem tests/test_security.py::test_encrypt_authenticated; jDLMS CipheringTest.
V3 = bytes.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
# V3' — the same as general-glo-ciphering (derived).
V3G = bytes.fromhex(
    "DB084D4D4D0000BC614E1E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"
)
# V4 — dlms-cosem tests/test_security.py::test_gmac; jDLMS GmacTest; "GB Table 43".
V4_STOC = bytes.fromhex("503677524A323146")
V4 = bytes.fromhex("10000000011A52FE7DD3E72748973C1E28")
# V5 — "GB Table 43"; recomputed.
V5_CTOS = bytes.fromhex("4B35366956616759")
V5 = bytes.fromhex("1001234567FE1466AFB3DBCD4F9389E2B7")
# V6 — jDLMS CipheringTest.testCipheringExampleFromStandard ("from standard").
V6_PLAIN = bytes.fromhex("01011000112233445566778899AABBCCDDEEFF0000065F1F0400007E1F04B0")
V6 = bytes.fromhex(
    "21303001234567801302FF8A7874133D414CED25B42534D28DB0047720606B175BD52211BE6841DB204D39EE6FDB8E356855"
)
# V7 — RFC 3394 §4.1; identical from cryptography, dlms_cosem.security.wrap_key and gurux.
V7_KEK = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
V7_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
V7 = bytes.fromhex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
# V8 / V8b — suite-1 KDF, One-Pass DH (GB Table C.2 as quoted); recomputed with hashlib.
V8_Z = bytes.fromhex("0D4385BA0DD756CBCAB9887EB538396EE8F090A14C1079B4359F115B977F4615")
V8 = bytes.fromhex("59A71FD81C929A86A99438DA17A66C05")
V8B_Z = bytes.fromhex("2B4302DC49790E2E78D990CFB52ED6E2F273DECE441A2D95E4301B93812A9FAC")
V8B = bytes.fromhex("F0184BDA9466BFA4601A64A7EF46504A")
# Reference §1.9: new AK A0A1..AF under KEK 00..0F, key_transfer parameter encoding.
KEY_TRANSFER_PARAM = bytes.fromhex(
    "01010202160209187C98F3E4D60636D4AEF4977D12DBFE75611DBD03E54DFFEF"
)


@pytest.mark.parametrize(
    ("vector", "security", "kind"),
    [
        (V1, SecurityControl(encrypted=False), CipheringKind.SERVICE_GLO),
        (V2, SecurityControl(authenticated=False), CipheringKind.SERVICE_GLO),
        (V3, SecurityControl(), CipheringKind.SERVICE_GLO),
        (V3G, SecurityControl(), CipheringKind.GENERAL_GLO),
    ],
    ids=["V1-auth-only", "V2-enc-only", "V3-auth-enc", "V3'-general-glo"],
)
def test_protect_matches_vector(
    ek: SecretKey, ak: SecretKey, vector: bytes, security: SecurityControl, kind: CipheringKind
) -> None:
    out = protect(
        PLAIN_GET,
        kind=kind,
        security=security,
        invocation_counter=IC,
        system_title=SERVER_TITLE,
        key=GcmKey(ek),
        authentication_key=ak,
    )
    assert out == vector


@pytest.mark.parametrize("vector", [V1, V2, V3, V3G], ids=["V1", "V2", "V3", "V3'"])
def test_unprotect_matches_vector(ek: SecretKey, ak: SecretKey, vector: bytes) -> None:
    apdu = decode_apdu(vector)
    assert isinstance(apdu, ServiceCiphered | GeneralGloCiphering)
    assert apdu.invocation_counter == IC
    assert apdu.to_bytes() == vector
    plain = unprotect(apdu, system_title=SERVER_TITLE, key=GcmKey(ek), authentication_key=ak)
    assert plain == PLAIN_GET


def test_v4_hls_pass3(ek: SecretKey, ak: SecretKey) -> None:
    f = hls_gmac(
        V4_STOC,
        system_title=CLIENT_TITLE,
        invocation_counter=1,
        key=GcmKey(ek),
        authentication_key=ak,
    )
    assert f == V4
    assert (
        verify_hls_gmac(
            V4, V4_STOC, system_title=CLIENT_TITLE, key=GcmKey(ek), authentication_key=ak
        )
        == 1
    )


def test_v5_hls_pass4(ek: SecretKey, ak: SecretKey) -> None:
    f = hls_gmac(
        V5_CTOS,
        system_title=SERVER_TITLE,
        invocation_counter=IC,
        key=GcmKey(ek),
        authentication_key=ak,
    )
    assert f == V5


def test_v6_glo_initiate_request(ek: SecretKey, ak: SecretKey) -> None:
    init = decode_xdlms(V6_PLAIN)
    assert isinstance(init, InitiateRequest)
    assert init.client_max_receive_pdu_size == 1200
    assert init.dedicated_key == SecretKey(bytes.fromhex("00112233445566778899AABBCCDDEEFF"))
    assert init.to_bytes() == V6_PLAIN
    out = protect(
        V6_PLAIN,
        kind=CipheringKind.SERVICE_GLO,
        security=SecurityControl(),
        invocation_counter=IC,
        system_title=SERVER_TITLE,
        key=GcmKey(ek),
        authentication_key=ak,
    )
    assert out == V6
    apdu = decode_apdu(V6)
    assert isinstance(apdu, ServiceCiphered)
    assert (
        unprotect(apdu, system_title=SERVER_TITLE, key=GcmKey(ek), authentication_key=ak)
        == V6_PLAIN
    )


def test_v7_key_wrap() -> None:
    kek, key = SecretKey(V7_KEK), SecretKey(V7_KEY)
    assert wrap_key(kek, key) == V7
    assert unwrap_key(kek, V7) == key


def test_key_transfer_parameter_encoding() -> None:
    wrapped = wrap_key(SecretKey(V7_KEK), SecretKey(bytes(range(0xA0, 0xB0))))
    param = Array((Structure((Enum(2), OctetString(wrapped))),))
    assert encode_data(param) == KEY_TRANSFER_PARAM


def test_v8_kdf_client_side() -> None:
    key = dlms_kdf(V8_Z, party_u=SERVER_TITLE, party_v=CLIENT_TITLE, key_length=16)
    assert key.expose_secret() == V8


def test_v8b_kdf_server_side() -> None:
    key = dlms_kdf(V8B_Z, party_u=CLIENT_TITLE, party_v=SERVER_TITLE, key_length=16)
    assert key.expose_secret() == V8B
