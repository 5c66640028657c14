"""A demo that cannot hurt itself, tried as a new user would (issue 12, items 12-14).

A second demo on the same data directory is refused with the first one's PID (it would
reuse the first's meter counters: every message a replay); a demo that cannot start — an
unreachable or unparseable database — says so in one line, quickly, and leaves no broker
behind; the CLI answers a directory without a system, or an unknown meter, in one line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from meterguard.system.config import RunInfo

pytestmark = pytest.mark.integration


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "meterguard", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def mosquittos_for(directory: Path) -> list[int]:
    """PIDs of mosquitto processes whose command line names ``directory``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "mosquitto" in cmd and str(directory) in cmd:
            pids.append(int(entry.name))
    return pids


def one_line_error(res: subprocess.CompletedProcess[str], text: str) -> None:
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    assert text in res.stderr, res.stderr
    assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1, res.stderr


def test_a_second_demo_on_the_same_data_is_refused_with_the_pid(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    log = (tmp_path / "first.out").open("w")
    first = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "meterguard", "demo", "--data", str(data), "--meters", "4",
         "--duration", "60"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not (data / "system.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None
        second = cli("demo", "--data", str(data), "--meters", "4", "--duration", "5")
        one_line_error(second, f"already runs on {data} (PID {first.pid})")
        time.sleep(3)  # the first goes on undisturbed: no replays, no refusals
        store = Store(open_database(RunInfo.read(data).db))
        counts = store.counts()
        assert counts["readings"] > 0 and counts["security_events"] == 0, counts
    finally:
        first.terminate()
        first.wait(30)
        log.close()
    # Its output is a file, not a terminal: status lines instead of a live table.
    out = (tmp_path / "first.out").read_text()
    assert re.search(r"^status \d+ s: \{.*\"readings\"", out, re.M), out[-2000:]
    port = RunInfo.read(data).web_port
    # Once the first has stopped, the directory is free again, and keeps its dashboard's port.
    again = cli("demo", "--data", str(data), "--meters", "4", "--duration", "2")
    assert again.returncode == 0, again.stderr
    assert f"https://localhost:{port}/login" in again.stdout.replace("\n", ""), again.stdout


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://nobody@127.0.0.1:1/x", "database at 127.0.0.1 is unreachable"),
        ("not a database url", "the database URL cannot be parsed"),
    ],
)
def test_a_demo_that_cannot_start_says_so_in_one_line_and_leaves_nothing_running(
    tmp_path: Path, url: str, message: str
) -> None:
    data = tmp_path / "demo"
    started = time.monotonic()
    res = cli("demo", "--data", str(data), "--meters", "4", "--db", url, timeout=60)
    one_line_error(res, message)
    assert time.monotonic() - started < 30
    assert mosquittos_for(data) == []
    # And the directory is not locked by the failed start.
    assert not (data / "system.json").exists()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (("status",), ("audit", "verify"), ("meter", "revoke", "MGD0000000001")):
        one_line_error(cli(*args, "--data", str(empty)), "no meterguard system")
    data = tmp_path / "demo"
    assert cli("demo", "--data", str(data), "--meters", "2", "--duration", "1").returncode == 0
    one_line_error(
        cli("meter", "tamper", "MGD0000009999", "cover-open", "--data", str(data)),
        "no meter MGD0000009999",
    )
    bad_db = cli(
        "audit", "verify", "--data", str(data), "--db", "postgresql://nobody@127.0.0.1:1/x"
    )
    one_line_error(bad_db, "unreachable")
