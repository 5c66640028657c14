"""Shared test fixtures: the reference keys and titles (test keys live only under tests/)."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, settings

from meterguard.crypto.keys import SecretKey

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci")

# Reference §2 "Common inputs" (Green Book examples, dlms-cosem and jDLMS tests).
EK_HEX = "000102030405060708090A0B0C0D0E0F"
AK_HEX = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
SERVER_TITLE = bytes.fromhex("4D4D4D0000BC614E")
CLIENT_TITLE = bytes.fromhex("4D4D4D0000000001")


@pytest.fixture(scope="session")
def ek() -> SecretKey:
    return SecretKey.from_hex(EK_HEX)


@pytest.fixture(scope="session")
def ak() -> SecretKey:
    return SecretKey.from_hex(AK_HEX)


@pytest.fixture(autouse=True)
def _no_key_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Every test doubles as a check that no reference key material reaches a log record."""
    caplog.set_level(logging.DEBUG)
    yield
    text = caplog.text.upper()
    for secret in (EK_HEX, AK_HEX):
        assert secret not in text, "key material appeared in a log record"
