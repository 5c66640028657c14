"""`meterguard cosem decode`: decrypts V3, refuses a tampered V3, reads trace files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meterguard.cosem.wrapper import WrapperFrame
from tests.conftest import AK_HEX, EK_HEX
from tests.vectors.test_reference_vectors import V1, V2, V3, V3G, V6

KEYS = ["--ek", EK_HEX, "--ak", AK_HEX]
TITLE = ["--system-title", "4D4D4D0000BC614E"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "meterguard", "cosem", "decode", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_decrypts_v3() -> None:
    res = run(*KEYS, *TITLE, V3.hex())
    assert res.returncode == 0, res.stderr
    assert "deciphered, tag verified" in res.stdout
    assert "GetRequestNormal" in res.stdout
    assert "0.0.1.0.0.255" in res.stdout


def test_refuses_tampered_v3_and_prints_nothing_decrypted() -> None:
    tampered = bytearray(V3)
    tampered[-3] ^= 0x10
    res = run(*KEYS, *TITLE, bytes(tampered).hex())
    assert res.returncode == 1
    assert "authentication failed" in res.stderr
    assert "GetRequestNormal" not in res.stdout and "0.0.1.0.0.255" not in res.stdout
    assert "deciphered" not in res.stdout


def test_keys_from_environment_and_never_echoed() -> None:
    res = run(*TITLE, V3G.hex(), env={"MG_EK": EK_HEX, "MG_AK": AK_HEX})
    assert res.returncode == 0, res.stderr
    assert "GetRequestNormal" in res.stdout
    assert EK_HEX not in res.stdout.upper() + res.stderr.upper()
    assert AK_HEX not in res.stdout.upper() + res.stderr.upper()


def test_wrapper_frame_and_auth_only_and_enc_only() -> None:
    for vector in (V1, V2):
        frame = WrapperFrame(1, 1, vector).to_bytes()
        res = run(*KEYS, *TITLE, frame.hex())
        assert res.returncode == 0, res.stderr
        assert "wrapper" in res.stdout and "GetRequestNormal" in res.stdout


def test_glo_initiate_request_shows_a_redacted_dedicated_key() -> None:
    res = run(*KEYS, *TITLE, V6.hex())
    assert res.returncode == 0, res.stderr
    assert "InitiateRequest" in res.stdout and "redacted" in res.stdout
    assert "00112233445566778899" not in res.stdout.upper()


def test_without_keys_shows_the_envelope_only() -> None:
    res = run(V3.hex())
    assert res.returncode == 0
    assert "give --ek and --ak" in res.stdout and "GetRequestNormal" not in res.stdout


def test_file_of_the_recorded_session(tmp_path: Path) -> None:
    trace = Path(__file__).resolve().parents[2] / "vectors" / "data" / "trace-hls-gmac-session.txt"
    lines = [
        ln.split()[-1]
        for ln in trace.read_text().splitlines()
        if ln and not ln.startswith("#") and "plain=" not in ln
    ]
    f = tmp_path / "session.txt"
    f.write_text("# AARQ, AARE, RLRQ, RLRE\n" + "\n".join(lines) + "\n")
    res = run(*KEYS, "--file", str(f))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("InitiateRequest") == 2 and res.stdout.count("InitiateResponse") == 2


@pytest.mark.parametrize("bad", ["zz", "C0", "6000"])
def test_malformed_input_is_a_clear_error(bad: str) -> None:
    res = run(bad)
    assert res.returncode == 1
    assert res.stderr.startswith("error:")
    assert "Traceback" not in res.stderr


def test_bad_key_option() -> None:
    res = run("--ek", "1234", V3.hex())
    assert res.returncode == 2
    assert "16 or 32 bytes" in res.stderr
