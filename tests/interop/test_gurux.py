"""Gurux (gurux-dlms 1.0.203, GPLv2) reads our meter — as a separate process (DM-1…13, DH-1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AK_HEX, EK_HEX
from tests.interop.conftest import KEK_HEX, MeterProcess, start_meter

pytestmark = pytest.mark.interop
SCRIPT = Path(__file__).with_name("gurux_client.py")
NEW_EK = "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF"


def gurux(port: int, ops: dict[str, Any], *, ek: str = EK_HEX) -> dict[str, Any]:
    res = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(SCRIPT), "127.0.0.1", str(port), ek, AK_HEX, KEK_HEX, json.dumps(ops)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


def test_gurux_reads_clock_register_and_profile(meter: MeterProcess) -> None:
    out = gurux(meter.port, {})
    assert out.get("associated") is True, out
    assert out["server_system_title"] == "4D47440000000001"
    assert out["unit"] == 30 and out["scaler"] == 1.0  # Wh, 10^0
    assert out["energy"] > 1_000_000
    assert out["profile_rows"] == 960
    assert out["by_entry"] == 3
    assert out["by_range"] == 4
    assert out["released"] is True


def test_gurux_block_transfer_with_small_pdu(tmp_path: Path) -> None:
    m = start_meter(tmp_path / "m", pdu=256)
    try:
        out = gurux(m.port, {"pdu": 128})
    finally:
        log = m.stop()
    assert out.get("profile_rows") == 960, out
    assert "security event" not in log


def test_gurux_key_transfer_then_reassociate(meter: MeterProcess) -> None:
    out = gurux(meter.port, {"new_ek": NEW_EK})
    assert out.get("key_transfer") == "sent", out
    old = gurux(meter.port, {})
    assert "error" in old, "the old key must be refused after key_transfer"
    new = gurux(meter.port, {}, ek=NEW_EK)
    assert new.get("associated") is True, new
