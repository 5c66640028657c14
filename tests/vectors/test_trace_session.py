"""The recorded dlms-cosem ↔ Gurux HLS-GMAC session (reference trace-hls-gmac-session.txt, V9).

The ACSE APDUs are given whole and must decode and re-encode byte for byte; the
general-glo lines give originator, SC, IC and plaintext, so each is re-ciphered
with the session keys, decoded, re-encoded and deciphered again. With the AARQ
and AARE decrypted, the HLS pass 3 and 4 GMACs are checked against the
challenges, exactly as a head-end and a meter would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from meterguard.cosem.acse import AARE, AARQ, RLRE, RLRQ, Mechanism
from meterguard.cosem.apdu import decode_apdu
from meterguard.cosem.axdr import OctetString
from meterguard.cosem.connection import HLS_METHOD
from meterguard.cosem.security import (
    CipheringKind,
    GeneralGloCiphering,
    SecurityControl,
    ServiceCiphered,
    protect,
    unprotect,
    verify_hls_gmac,
)
from meterguard.cosem.trace import TraceDecoder
from meterguard.cosem.wrapper import WrapperDecoder, WrapperFrame
from meterguard.cosem.xdlms import (
    ActionRequestNormal,
    ActionResponseNormal,
    InitiateRequest,
    InitiateResponse,
    decode_xdlms,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey

TRACE = (
    Path(__file__).resolve().parents[2]
    / "tests"
    / "vectors"
    / "data"
    / "trace-hls-gmac-session.txt"
)
CLIENT = bytes.fromhex("4D4D4D0000000002")
METER = bytes.fromhex("4D4D4D0000BC614E")


@dataclass(frozen=True)
class Line:
    direction: str
    wrapper_header: bytes
    apdu: bytes | None
    title: bytes | None = None
    sc: int | None = None
    ic: int | None = None
    plain: bytes | None = None


def _lines() -> list[Line]:
    out = []
    for raw in TRACE.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        direction = raw.split()[0]
        header = bytes.fromhex(re.search(r"wrapper ([0-9a-f]{16})", raw).group(1))  # type: ignore[union-attr]
        m = re.search(r"ST=([0-9A-F]{16}) SC=([0-9A-F]{2}) IC=([0-9A-F]{8}) plain=([0-9A-F]+)", raw)
        if m:
            out.append(
                Line(
                    direction,
                    header,
                    None,
                    bytes.fromhex(m.group(1)),
                    int(m.group(2), 16),
                    int(m.group(3), 16),
                    bytes.fromhex(m.group(4)),
                )
            )
        else:
            apdu = bytes.fromhex(raw.split()[-1])
            out.append(Line(direction, header, apdu))
    return out


LINES = _lines()


def _apdu(line: Line, ek: SecretKey, ak: SecretKey) -> bytes:
    if line.apdu is not None:
        return line.apdu
    assert line.plain is not None and line.title is not None and line.ic is not None
    return protect(
        line.plain,
        kind=CipheringKind.GENERAL_GLO,
        security=SecurityControl.from_byte(line.sc or 0),
        invocation_counter=line.ic,
        system_title=line.title,
        key=GcmKey(ek),
        authentication_key=ak,
    )


def test_trace_has_the_whole_session() -> None:
    assert len(LINES) == 18
    assert LINES[0].apdu is not None and LINES[0].apdu[0] == 0x60
    assert LINES[-1].apdu is not None and LINES[-1].apdu[0] == 0x63


@pytest.mark.parametrize("index", range(18))
def test_each_apdu_round_trips_and_matches_its_wrapper_header(
    index: int, ek: SecretKey, ak: SecretKey
) -> None:
    line = LINES[index]
    raw = _apdu(line, ek, ak)
    apdu = decode_apdu(raw)
    assert apdu.to_bytes() == raw
    # The recorded wrapper header carries the APDU length: our re-ciphered bytes must agree.
    frame = WrapperFrame(1, 1, raw).to_bytes()
    assert frame[:8] == line.wrapper_header
    assert WrapperDecoder().feed(frame) == [WrapperFrame(1, 1, raw)]
    if isinstance(apdu, GeneralGloCiphering):
        assert (
            unprotect(apdu, system_title=apdu.system_title, key=GcmKey(ek), authentication_key=ak)
            == line.plain
        )
        assert decode_xdlms(line.plain or b"").to_bytes() == line.plain


def test_session_association_and_hls_verify(ek: SecretKey, ak: SecretKey) -> None:
    aarq = decode_apdu(LINES[0].apdu or b"")
    aare = decode_apdu(LINES[1].apdu or b"")
    assert isinstance(aarq, AARQ) and isinstance(aare, AARE)
    assert aarq.mechanism is Mechanism.HLS_GMAC and aarq.calling_ap_title == CLIENT
    assert aare.diagnostic == 14 and aare.responding_ap_title == METER
    gcm = GcmKey(ek)
    ui = decode_apdu(aarq.user_information or b"")
    assert isinstance(ui, ServiceCiphered) and ui.tag == 0x21
    init = decode_xdlms(unprotect(ui, system_title=CLIENT, key=gcm, authentication_key=ak))
    assert isinstance(init, InitiateRequest)
    ui = decode_apdu(aare.user_information or b"")
    assert isinstance(ui, ServiceCiphered) and ui.tag == 0x28
    resp = decode_xdlms(unprotect(ui, system_title=METER, key=gcm, authentication_key=ak))
    assert isinstance(resp, InitiateResponse) and resp.vaa_name == 7
    pass3 = decode_xdlms(LINES[2].plain or b"")
    assert isinstance(pass3, ActionRequestNormal) and pass3.method == HLS_METHOD
    assert isinstance(pass3.parameters, OctetString)
    stoc, ctos = (
        aare.responding_authentication_value or b"",
        aarq.calling_authentication_value or b"",
    )
    assert (
        verify_hls_gmac(
            pass3.parameters.value, stoc, system_title=CLIENT, key=gcm, authentication_key=ak
        )
        == 2
    )
    pass4 = decode_xdlms(LINES[3].plain or b"")
    assert isinstance(pass4, ActionResponseNormal)
    ret = pass4.response.return_parameters
    assert isinstance(ret, OctetString)
    assert (
        verify_hls_gmac(ret.value, ctos, system_title=METER, key=gcm, authentication_key=ak)
        == 0x407
    )


def test_release_apdus_carry_ciphered_initiate(ek: SecretKey, ak: SecretKey) -> None:
    rlrq, rlre = decode_apdu(LINES[-2].apdu or b""), decode_apdu(LINES[-1].apdu or b"")
    assert isinstance(rlrq, RLRQ) and isinstance(rlre, RLRE)
    for apdu, title in ((rlrq, CLIENT), (rlre, METER)):
        inner = decode_apdu(apdu.user_information or b"")
        assert isinstance(inner, ServiceCiphered)
        unprotect(inner, system_title=title, key=GcmKey(ek), authentication_key=ak)


def test_trace_decoder_verifies_both_hls_passes(ek: SecretKey, ak: SecretKey) -> None:
    decoder = TraceDecoder(unicast_key=ek, authentication_key=ak)
    out = []
    for line in LINES:
        out += decoder.decode(WrapperFrame(1, 1, _apdu(line, ek, ak)).to_bytes())
    text = "\n".join(out)
    assert "HLS pass 3: f(StoC) verified" in text
    assert "HLS pass 4: f(CtoS) verified" in text
    assert decoder.client_title == CLIENT and decoder.server_title == METER
