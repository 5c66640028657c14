"""DM-1: wrapper framing handles split and merged TCP segments; bad headers are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterguard.cosem.wrapper import WrapperDecoder, WrapperFrame
from meterguard.errors import DecodeError, InvalidValueError

frames = st.lists(
    st.builds(
        WrapperFrame, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=300)
    ),
    min_size=1,
    max_size=6,
)


def test_reference_header() -> None:
    # Reference §1.10: "0001 0001 0001 005F" + 95-byte AARQ.
    frame = WrapperFrame(1, 1, bytes(95))
    assert frame.to_bytes()[:8] == bytes.fromhex("000100010001005F")


@given(frames, st.data())
def test_any_split_of_any_merge(fs: list[WrapperFrame], data: st.DataObject) -> None:
    stream = b"".join(f.to_bytes() for f in fs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = WrapperDecoder()
    out: list[WrapperFrame] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[prev:cut])
        prev = cut
    assert out == fs
    assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    f = WrapperFrame(0x10, 1, bytes.fromhex("6000"))
    decoder = WrapperDecoder()
    raw = f.to_bytes()
    got = [frame for b in raw for frame in decoder.feed(bytes((b,)))]
    assert got == [f]


def test_wrong_version() -> None:
    with pytest.raises(DecodeError, match="version"):
        WrapperDecoder().feed(bytes.fromhex("0002000100010001") + b"\x60")


def test_over_long_frame_refused_before_buffering() -> None:
    decoder = WrapperDecoder(max_apdu_size=1024)
    with pytest.raises(DecodeError, match="above the maximum"):
        decoder.feed(bytes.fromhex("0001000100010401"))


def test_frame_limits() -> None:
    with pytest.raises(InvalidValueError):
        WrapperFrame(1, 1, bytes(0x10000))
    with pytest.raises(InvalidValueError):
        WrapperFrame(-1, 1, b"")
