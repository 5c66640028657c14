"""dlms-cosem 21.3.2 (MIT) as the client of our meter, including the negative cases (DM-1…13)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from dlms_cosem import cosem, enumerations, exceptions, security
from dlms_cosem.clients.dlms_client import ActionError, DlmsClient
from dlms_cosem.cosem.capture_object import CaptureObject
from dlms_cosem.cosem.selective_access import RangeDescriptor
from dlms_cosem.utils import parse_as_dlms_data

from tests.conftest import AK_HEX, EK_HEX
from tests.interop.conftest import KEK_HEX, MeterProcess, start_meter
from tests.interop.proxy import Proxy

pytestmark = pytest.mark.interop
EK, AK, KEK = bytes.fromhex(EK_HEX), bytes.fromhex(AK_HEX), bytes.fromhex(KEK_HEX)
TITLE = b"DLC\x00\x00\x00\x00\x07"
CLOCK = cosem.CosemAttribute(enumerations.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2)
ENERGY = cosem.CosemAttribute(enumerations.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 2)
SCALER = cosem.CosemAttribute(enumerations.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 3)
PROFILE = cosem.CosemAttribute(
    enumerations.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2
)
COUNTER = cosem.CosemAttribute(enumerations.CosemInterface.DATA, cosem.Obis(0, 0, 43, 1, 0), 2)


def public_counter(port: int) -> int:
    """DH-1: read 0.0.43.1.0.255 over the public association."""
    client = DlmsClient.with_tcp_transport(
        host="127.0.0.1", port=port, client_logical_address=16, server_logical_address=1
    )
    with client.session() as s:
        return int(parse_as_dlms_data(s.get(COUNTER)))


def management(
    port: int, *, ek: bytes = EK, ic: int | None = None, pdu: int = 65535, meter_ic: int = -1
) -> DlmsClient:
    return DlmsClient.with_tcp_transport(
        host="127.0.0.1",
        port=port,
        client_logical_address=1,
        server_logical_address=1,
        authentication_method=enumerations.AuthenticationMechanism.HLS_GMAC,
        encryption_key=ek,
        authentication_key=AK,
        client_system_title=TITLE,
        client_initial_invocation_counter=public_counter(port) + 1 if ic is None else ic,
        meter_initial_invocation_counter=meter_ic,
        max_pdu_size=pdu,
        timeout=20,
    )


def test_reads_clock_energy_and_profile(meter: MeterProcess) -> None:
    with management(meter.port).session() as s:
        clock = parse_as_dlms_data(s.get(CLOCK))
        assert len(clock) == 12 and clock[:2] == dt.datetime.now(dt.UTC).year.to_bytes(2, "big")
        assert parse_as_dlms_data(s.get(SCALER)) == [0, 30]
        assert parse_as_dlms_data(s.get(ENERGY)) > 1_000_000
        rows = parse_as_dlms_data(s.get(PROFILE))
        assert len(rows) == 960
        first, fourth = (dt.datetime(*_dt(rows[i][0]), tzinfo=dt.UTC) for i in (0, 3))
        ranged = RangeDescriptor(
            restricting_object=CaptureObject(
                cosem.CosemAttribute(
                    enumerations.CosemInterface.CLOCK, cosem.Obis(0, 0, 1, 0, 0), 2
                )
            ),
            from_value=first,
            to_value=fourth,
        )
        part = parse_as_dlms_data(s.get(PROFILE, access_descriptor=ranged))
        assert len(part) == 4 and part[0] == rows[0]


def _dt(raw: bytes) -> tuple[int, int, int, int, int, int]:
    return (int.from_bytes(raw[:2], "big"), raw[2], raw[3], raw[5], raw[6], raw[7])


def test_block_transfer_with_small_pdu(tmp_path: Path) -> None:
    m = start_meter(tmp_path / "m", pdu=256)
    try:
        with management(m.port, pdu=256).session() as s:
            assert len(parse_as_dlms_data(s.get(PROFILE))) == 960
    finally:
        m.stop()


def test_key_transfer_and_reassociate(meter: MeterProcess) -> None:
    new_ek = bytes(range(0xA0, 0xB0))
    sc = security.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
    wrapped = security.wrap_key(sc, KEK, new_ek)
    param = (
        b"\x01\x01\x02\x02\x16\x00\x09\x18" + wrapped
    )  # array{structure{enum GUEK, octet-string}}
    client = management(meter.port)
    client.connect()
    client.associate()
    client.action(
        cosem.CosemMethod(
            enumerations.CosemInterface.SECURITY_SETUP, cosem.Obis(0, 0, 43, 0, 0), 2
        ),
        param,
    )
    client.disconnect()  # DH-6: drop the transport, the meter already uses the new key
    with pytest.raises(Exception), management(meter.port).session():  # noqa: B017 - the old key is refused one way or another
        pass
    with management(meter.port, ek=new_ek).session() as s:
        assert parse_as_dlms_data(s.get(ENERGY)) > 0


def test_wrong_kek_key_transfer_is_an_action_error(meter: MeterProcess) -> None:
    sc = security.SecurityControlField(security_suite=0, authenticated=True, encrypted=True)
    wrapped = security.wrap_key(sc, bytes(16), bytes(range(0xA0, 0xB0)))
    param = b"\x01\x01\x02\x02\x16\x00\x09\x18" + wrapped
    setup = cosem.CosemMethod(
        enumerations.CosemInterface.SECURITY_SETUP, cosem.Obis(0, 0, 43, 0, 0), 2
    )
    with management(meter.port).session() as s, pytest.raises(ActionError, match="OTHER_REASON"):
        s.action(setup, param)
    with management(meter.port).session() as s:  # the old key still works
        assert parse_as_dlms_data(s.get(ENERGY)) > 0


def test_wrong_key_is_refused(meter: MeterProcess) -> None:
    with (
        pytest.raises(exceptions.DlmsClientException, match="Unable to perform Association"),
        management(meter.port, ek=bytes(16)).session(),
    ):
        pass


def test_replayed_client_counter_is_refused(meter: MeterProcess) -> None:
    with management(meter.port, ic=1000).session() as s:
        s.get(ENERGY)
    # A client (or attacker) reusing counter values already accepted is refused at the AARQ.
    with (
        pytest.raises(exceptions.DlmsClientException, match="Unable to perform Association"),
        management(meter.port, ic=1000).session(),
    ):
        pass


def test_tampered_response_is_detected_by_the_client(meter: MeterProcess) -> None:
    def flip_after_association(direction: str, index: int, frame: bytes) -> bytes:
        if direction == "S->C" and index >= 2:  # after AARE and HLS pass 4
            return frame[:-1] + bytes((frame[-1] ^ 0x01,))
        return frame

    proxy = Proxy(meter.port, flip_after_association)
    try:
        client = management(meter.port)
        client.io_interface.port = proxy.port
        with pytest.raises(Exception, match=r"(?i)decrypt|tag|authentic"), client.session() as s:
            s.get(ENERGY)
        assert proxy.frames["S->C"] >= 3  # the traffic really went through the tampering proxy
    finally:
        proxy.close()


def test_tampered_request_is_refused_by_the_meter(meter: MeterProcess) -> None:
    def flip_request(direction: str, index: int, frame: bytes) -> bytes:
        if direction == "C->S" and index == 2:  # the first GET after HLS
            return frame[:-1] + bytes((frame[-1] ^ 0x01,))
        return frame

    proxy = Proxy(meter.port, flip_request)
    try:
        client = management(meter.port)
        client.io_interface.port = proxy.port
        with pytest.raises(Exception), client.session() as s:  # noqa: B017 - the meter answers an exception-response
            s.get(ENERGY)
        assert proxy.frames["C->S"] >= 3
    finally:
        proxy.close()
    out = meter.stop()
    assert "security event authentication_failed" in out


def test_meter_counter_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "m"
    m = start_meter(state)
    client = management(m.port)
    with client.session() as s:
        s.get(ENERGY)
    seen = client.dlms_connection.meter_invocation_counter
    m.stop()
    m = start_meter(state)
    try:
        # dlms-cosem refuses any meter counter <= the last it saw: a reused counter would fail here.
        with management(m.port, meter_ic=seen).session() as s:
            assert parse_as_dlms_data(s.get(ENERGY)) > 0
    finally:
        m.stop()
