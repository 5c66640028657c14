"""Interop fixtures: a real `meterguard meter serve` process on a free loopback port."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import AK_HEX, EK_HEX

KEK_HEX = "101112131415161718191A1B1C1D1E1F"


@dataclass
class MeterProcess:
    port: int
    state: Path
    proc: subprocess.Popen[str]

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=20)
        return out


def start_meter(state: Path, *, pdu: int = 1024) -> MeterProcess:
    env = {**os.environ, "MG_EK": EK_HEX, "MG_AK": AK_HEX, "MG_KEK": KEK_HEX}
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "meterguard",
            "meter",
            "serve",
            "--port",
            "0",
            "--state",
            str(state),
            "--pdu",
            str(pdu),
            "-v",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise AssertionError(f"meter did not start: {line!r}")
    return MeterProcess(int(line.rsplit(":", 1)[1]), state, proc)


@pytest.fixture
def meter(tmp_path: Path) -> Iterator[MeterProcess]:
    m = start_meter(tmp_path / "meter")
    yield m
    if m.proc.poll() is None:
        m.stop()


@pytest.fixture(autouse=True)
def _quiet_peers() -> None:
    # Reference §5: both peer libraries log decrypted APDUs; keep them out of test logs.
    logging.getLogger("dlms_cosem").setLevel(logging.CRITICAL)
