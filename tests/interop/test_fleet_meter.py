"""One meter, two forms: a fleet meter served over DLMS/TCP and read by the interop peers.

The demo's meters are the compact fleet; `meterguard fleet serve` serves one of them as the
full DLMS/COSEM device, with the same identity, keys and consumption, so Gurux and dlms-cosem
read the meters the demo runs. The load profile read over DLMS equals what the fleet pushed
for the same intervals, and the device's invocation counters come from a range the fleet set
aside, which its later pushes never reuse (DM-6).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dlms_cosem import cosem, enumerations
from dlms_cosem.clients.dlms_client import DlmsClient
from dlms_cosem.utils import parse_as_dlms_data

from meterguard.cosem.push import profile_entries
from meterguard.cosem.security import ApduUnprotector
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.meter.fleet import FLEET_FILE, Fleet
from tests.interop.test_gurux import SCRIPT

pytestmark = pytest.mark.interop
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
INDEX = 1  # MGD0000000002
TITLE = b"DLC\x00\x00\x00\x00\x09"
COUNTER = cosem.CosemAttribute(enumerations.CosemInterface.DATA, cosem.Obis(0, 0, 43, 1, 0), 2)
ENERGY = cosem.CosemAttribute(enumerations.CosemInterface.REGISTER, cosem.Obis(1, 0, 1, 8, 0), 2)
PROFILE = cosem.CosemAttribute(
    enumerations.CosemInterface.PROFILE_GENERIC, cosem.Obis(1, 0, 99, 1, 0), 2
)
LDN = cosem.CosemAttribute(enumerations.CosemInterface.DATA, cosem.Obis(0, 0, 42, 0, 0), 2)


class Served:
    def __init__(self, state: Path, fleet: Fleet, pushed: dict[int, int]) -> None:
        self.state, self.fleet, self.pushed = state, fleet, pushed
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "meterguard", "fleet", "serve", "MGD0000000002",
             "--state", str(state), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on" in line, line + self.proc.stdout.read()
        self.port = int(line.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=20)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    state = tmp_path / "fleet"
    state.mkdir()
    fleet = Fleet.create(3, now=T0, path=state / FLEET_FILE)
    ek, ak, _ = fleet.keys(INDEX)
    verify = ApduUnprotector(
        key=GcmKey(ek), authentication_key=ak, peer_system_title=fleet.system_title(INDEX)
    )
    pushed: dict[int, int] = {}  # end of interval -> import Wh, as the fleet pushed it

    def push(i: int, apdu: bytes) -> None:
        if i == INDEX:
            _, plain = verify.unprotect(apdu)
            pushed.update({end: imp for end, _h, imp, _e in profile_entries(plain) or ()})

    fleet.step(T0 + dt.timedelta(hours=30), push)
    fleet.save()
    s = Served(state, fleet, pushed)
    yield s
    s.stop()


def client(port: int, ek: SecretKey, ak: SecretKey, *, public: bool = False) -> DlmsClient:
    if public:
        return DlmsClient.with_tcp_transport(
            host="127.0.0.1", port=port, client_logical_address=16, server_logical_address=1
        )
    with client(port, ek, ak, public=True).session() as s:
        ic = int(parse_as_dlms_data(s.get(COUNTER)))
    return DlmsClient.with_tcp_transport(
        host="127.0.0.1",
        port=port,
        client_logical_address=1,
        server_logical_address=1,
        authentication_method=enumerations.AuthenticationMechanism.HLS_GMAC,
        encryption_key=ek.expose_secret(),
        authentication_key=ak.expose_secret(),
        client_system_title=TITLE,
        client_initial_invocation_counter=ic + 1,
        max_pdu_size=65535,
        timeout=20,
    )


def test_dlms_cosem_reads_the_fleet_meter_and_its_profile_matches_the_pushes(
    served: Served,
) -> None:
    ek, ak, _ = served.fleet.keys(INDEX)
    with client(served.port, ek, ak).session() as s:
        assert parse_as_dlms_data(s.get(LDN))[:13] == b"MGD0000000002"
        energy = parse_as_dlms_data(s.get(ENERGY))
        rows = parse_as_dlms_data(s.get(PROFILE))
    last_pushed = served.pushed[max(served.pushed)]
    assert energy >= last_pushed  # the register goes on from where the fleet was
    by_time = {int(dt.datetime(*_dt(r[0]), tzinfo=dt.UTC).timestamp()): int(r[2]) for r in rows}
    common = sorted(set(by_time) & set(served.pushed))
    assert len(common) >= 100, "the device's load profile covers the fleet's intervals"
    for t in common:  # one meter: the same consumption over both transports
        assert abs(by_time[t] - served.pushed[t]) <= 1, (t, by_time[t], served.pushed[t])


def test_the_served_meter_uses_counters_the_fleet_never_uses(served: Served) -> None:
    ek, ak, _ = served.fleet.keys(INDEX)
    with client(served.port, ek, ak).session() as s:
        s.get(ENERGY)
    fleet = Fleet.load(served.state / FLEET_FILE)
    lent_from = int(served.fleet.a["ceiling"][INDEX])
    # The fleet's next push counter is past the whole lent range.
    assert int(fleet.a["next_ic"][INDEX]) >= lent_from + (1 << 20)
    seen: list[int] = []
    ek2, ak2, _ = fleet.keys(INDEX)
    verify = ApduUnprotector(
        key=GcmKey(ek2), authentication_key=ak2, peer_system_title=fleet.system_title(INDEX)
    )

    def push(i: int, apdu: bytes) -> None:
        if i == INDEX:
            seen.append(verify.unprotect(apdu)[0])

    fleet.step(fleet.now + dt.timedelta(hours=1), push)
    assert seen and min(seen) >= lent_from + (1 << 20)


def test_gurux_reads_the_fleet_meter(served: Served) -> None:
    ek, ak, kek = served.fleet.keys(INDEX)
    res = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, str(SCRIPT), "127.0.0.1", str(served.port),
         ek.expose_secret().hex(), ak.expose_secret().hex(), kek.expose_secret().hex(), "{}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out.get("associated") is True, out
    assert out["server_system_title"] == served.fleet.system_title(INDEX).hex().upper()
    assert out["energy"] >= served.pushed[max(served.pushed)]
    assert out["profile_rows"] == 960 and out["released"] is True


def test_a_meter_not_in_the_fleet_is_one_clear_line(tmp_path: Path) -> None:
    state = tmp_path / "fleet"
    state.mkdir()
    Fleet.create(2, now=T0, path=state / FLEET_FILE).save()
    res = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "meterguard", "fleet", "serve", "MGD0000000009",
         "--state", str(state)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "no meter MGD0000000009" in res.stderr


def _dt(raw: bytes) -> tuple[int, int, int, int, int, int]:
    return (int.from_bytes(raw[:2], "big"), raw[2], raw[3], raw[5], raw[6], raw[7])


LIMIT = cosem.CosemAttribute(enumerations.CosemInterface.LIMITER, cosem.Obis(0, 0, 17, 0, 0), 4)
TARIFF = cosem.CosemAttribute(enumerations.CosemInterface.DATA, cosem.Obis(0, 0, 96, 14, 0), 2)


def test_the_controls_a_command_acts_on_are_the_device_s_cosem_objects(served: Served) -> None:
    """The limiter and tariff that signed commands set on the fleet are COSEM objects the
    device serves too: dlms-cosem sets and reads them over the management association, with
    the same validation (a tariff outside 1…8 is refused)."""
    ek, ak, _ = served.fleet.keys(INDEX)
    with client(served.port, ek, ak).session() as s:
        assert parse_as_dlms_data(s.get(LIMIT)) == 0
        ok = s.set(LIMIT, bytes.fromhex("0600001388"))  # double-long-unsigned 5000 W
        assert ok.result.name == "SUCCESS", ok
        assert parse_as_dlms_data(s.get(LIMIT)) == 5000
        refused = s.set(TARIFF, bytes.fromhex("1109"))  # unsigned 9: no such tariff
        assert refused.result.name == "TYPE_UNMATCHED", refused
        assert s.set(TARIFF, bytes.fromhex("1103")).result.name == "SUCCESS"
        assert parse_as_dlms_data(s.get(TARIFF)) == 3
