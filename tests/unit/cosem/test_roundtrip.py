"""Hypothesis round trips: every data type and APDU decodes to what was encoded."""

from __future__ import annotations

from hypothesis import given

from meterguard.cosem import axdr
from meterguard.cosem.apdu import Apdu, decode_apdu
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.obis import Obis
from tests import strategies as s


@given(s.data)
def test_data_round_trip(value: axdr.Data) -> None:
    raw = axdr.encode_data(value)
    back = axdr.decode_data_bytes(raw)
    assert back == value
    assert axdr.encode_data(back) == raw


@given(s.all_apdus)
def test_apdu_round_trip(apdu: Apdu) -> None:
    raw = apdu.to_bytes()
    back = decode_apdu(raw)
    assert back.to_bytes() == raw
    assert type(back) is type(apdu)


@given(s.xdlms_apdus | s.acse_apdus)
def test_plain_apdu_decodes_equal(apdu: Apdu) -> None:
    assert decode_apdu(apdu.to_bytes()) == apdu


@given(s.obis)
def test_obis_text_and_bytes(code: Obis) -> None:
    assert Obis.parse(str(code)) == code
    assert Obis.parse(code.display()) == code
    assert Obis.from_bytes(code.to_bytes()) == code
    assert Obis.parse(code.to_bytes().hex()) == code


@given(s.datetimes)
def test_datetime_bytes(value: CosemDateTime) -> None:
    assert CosemDateTime.from_bytes(value.to_bytes()) == value
