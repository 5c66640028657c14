"""The firmware image format: round trip, and bad bytes only ever a DecodeError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterguard.errors import DecodeError, InvalidValueError
from meterguard.firmware.image import MAX_IMAGE, build_image, parse_image

GOOD = build_image(
    vendor="MGD", model="MG-1", hw_revision="A", version="1.2.3", security_version=4,
    settings={"creep_threshold_w": 7, "power_quality": True}, payload_size=1000,
)  # fmt: skip


def test_round_trip_and_determinism() -> None:
    image = parse_image(GOOD)
    assert image.manifest.version == "1.2.3" and image.manifest.security_version == 4
    assert image.manifest.settings == {"creep_threshold_w": 7, "power_quality": True}
    again = build_image(
        vendor="MGD", model="MG-1", hw_revision="A", version="1.2.3", security_version=4,
        settings={"creep_threshold_w": 7, "power_quality": True}, payload_size=1000,
    )  # fmt: skip
    assert again == GOOD  # two builds of one version are byte-identical


@given(st.binary(max_size=2000))
def test_random_bytes_are_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_image(data)


@given(st.integers(min_value=0, max_value=len(GOOD) - 1), st.integers(1, 255))
def test_any_changed_byte_is_refused(at: int, flip: int) -> None:
    data = bytearray(GOOD)
    data[at] ^= flip
    try:
        image = parse_image(bytes(data))
    except DecodeError:
        return
    # a change inside the manifest's JSON that still parses must still be a different image
    assert image.sha256 != parse_image(GOOD).sha256


def test_oversize_and_bad_fields() -> None:
    with pytest.raises(DecodeError):
        parse_image(b"MGFW\x01" + b"\x00" * (MAX_IMAGE + 1))
    with pytest.raises(InvalidValueError):
        build_image(vendor="M G", model="x", hw_revision="A", version="1.0.0", security_version=1)
    with pytest.raises(InvalidValueError):
        build_image(vendor="M", model="x", hw_revision="A", version="1.0.0", security_version=1,
                    settings={"creep_threshold_w": 99, "power_quality": False})  # fmt: skip
