"""REL-3: the decoders only ever raise meterguard's DecodeError, whatever bytes arrive."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterguard.cosem import axdr
from meterguard.cosem.apdu import Apdu, decode_apdu
from meterguard.cosem.wrapper import WrapperDecoder
from meterguard.errors import DecodeError
from tests import strategies as s


def _decode_or_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_apdu(raw)


@settings(max_examples=2000)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(raw: bytes) -> None:
    _decode_or_decode_error(raw)


@settings(max_examples=1000)
@given(
    st.sampled_from(
        sorted(
            {
                0x01,
                0x08,
                0x0E,
                0x0F,
                0x21,
                0x28,
                0x60,
                0x61,
                0x62,
                0x63,
                0xC0,
                0xC1,
                0xC2,
                0xC3,
                0xC4,
                0xC5,
                0xC7,
                0xC8,
                0xCC,
                0xD8,
                0xDB,
                0xDC,
                0xDD,
                0xDF,
            }
        )
    ),
    st.binary(max_size=200),
)
def test_known_tag_then_garbage(tag: int, rest: bytes) -> None:
    _decode_or_decode_error(bytes((tag,)) + rest)


@settings(max_examples=1000)
@given(s.all_apdus, st.data())
def test_mutated_valid_apdus(apdu: Apdu, draw: st.DataObject) -> None:
    raw = bytearray(apdu.to_bytes())
    for _ in range(draw.draw(st.integers(1, 4))):
        op = draw.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = draw.draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[pos] ^= 1 << draw.draw(st.integers(0, 7))
        elif op == "cut":
            del raw[pos:]
        else:
            raw[pos:pos] = draw.draw(st.binary(min_size=1, max_size=4))
    _decode_or_decode_error(bytes(raw))


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_wrapper_decoder_only_raises_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        WrapperDecoder().feed(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (bytes.fromhex("0901"), "truncated: need 1"),
        (bytes.fromhex("09 84 FFFFFFFF 00"), "truncated"),
        (bytes.fromhex("0985 0000000001 00"), "length-of-length"),
        (bytes.fromhex("01 84 7FFFFFFF"), "exceeds"),
        (bytes.fromhex("0C 02 C328"), "UTF-8"),
        (bytes.fromhex("0A 01 80"), "ASCII"),
        (bytes.fromhex("1C"), "unknown A-XDR type tag"),
        (bytes.fromhex("13 01 FFFF 00 01 00"), "cannot fit"),
        (bytes.fromhex("13 01 FFFF 01 FFFF 11 02 0000"), "cannot fit"),
    ],
)
def test_specific_malformed_data(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        axdr.decode_data_bytes(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (bytes.fromhex("C0"), "truncated"),
        (bytes.fromhex("C001C1000800000100"), "truncated"),
        (bytes.fromhex("C009C1"), "unknown choice"),
        (bytes.fromhex("60 03 A1 01 06"), "truncated"),
        (bytes.fromhex("6000"), "application-context-name is mandatory"),
        (bytes.fromhex("D8 01 07"), "unknown error"),
        (bytes.fromhex("EE00"), "unknown APDU tag"),
    ],
)
def test_specific_malformed_apdus(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_apdu(raw)


def test_deep_nesting_is_refused() -> None:
    raw = bytes.fromhex("0101") * 100 + b"\x00"
    with pytest.raises(DecodeError, match="nested deeper"):
        axdr.decode_data_bytes(raw)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode_apdu(bytes.fromhex("C001C100080000010000FF0200") + b"\x00")
    with pytest.raises(DecodeError, match="trailing"):
        axdr.decode_data_bytes(bytes.fromhex("1100") + b"\x00")


def test_over_long_length_in_ciphered_apdu() -> None:
    v3 = bytearray.fromhex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")
    v3[1] = 0x7F  # claims 127 bytes, carries 30
    with pytest.raises(DecodeError, match="truncated"):
        decode_apdu(bytes(v3))
