"""Issue 13: signed firmware updates over the firmware endpoint (mutual TLS), every refusal.

A real TUF repository (python-tuf Metadata API), the head-end's firmware endpoint over HTTPS
with client certificates, and a meter's :class:`FirmwareAgent` (ngclient, bootstrapped with the
root it shipped with) holding an operational certificate from a real PKI. Each attack of
:data:`meterguard.attacks.firmware.SCENARIOS` is played against a fresh repository and meter.
"""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meterguard.attacks.firmware import SCENARIOS, FirmwareScenario, Range, run_scenario
from meterguard.broker.process import free_port
from meterguard.cosem.eventcodes import EventCode
from meterguard.crypto.pki.store import Pki, pem
from meterguard.errors import (
    FirmwareFrozenError,
    NotFoundError,
    TransportError,
)
from meterguard.firmware.image import parse_image
from meterguard.firmware.repository import FirmwareRepository
from meterguard.headend.api.firmware import create_firmware_app
from meterguard.meter.firmware import (
    ALARM_CHANNEL_STALE,
    STALE_AFTER,
    FirmwareAgent,
    Hardware,
    HttpsFetcher,
)
from meterguard.system.web import serve_https

pytestmark = pytest.mark.integration


@dataclass
class Endpoint:
    pki: Pki
    base: Path
    served: Path
    port: int
    cert: Path
    key: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/firmware/"

    @property
    def root(self) -> Path:
        return self.pki.directory / "root" / "root.pem"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    base = tmp_path_factory.mktemp("fw")
    now = dt.datetime.now(dt.UTC)
    pki = Pki.init(base / "pki", now=now)
    server_cert, server_key = pki.issue_server("firmware", hosts=["127.0.0.1"], now=now, out=base)
    trust = base / "device-trust.pem"
    trust.write_bytes(pem(pki.device_root) + pem(pki.device.certificate))
    served = base / "served"
    served.mkdir()
    cert, key = pki.enrol_meter("0000000001", base / "meter-cred", now=now)
    port = free_port()
    server, thread = serve_https(
        create_firmware_app(served), "127.0.0.1", port, server_cert, server_key, client_ca=trust
    )
    yield Endpoint(pki, base, served, port, cert, key)
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def rng(endpoint: Endpoint, tmp_path: Path) -> Range:
    """A fresh repository (with the factory image), served, and a fresh meter."""
    now = dt.datetime.now(dt.UTC)
    repo = FirmwareRepository.create(tmp_path / "repo", now=now)
    hw = Hardware()
    events: list[EventCode] = []
    alarms: list[int] = []
    agent = FirmwareAgent(
        tmp_path / "meter",
        meter="MGD0000000001",
        hardware=hw,
        bootstrap=repo.root_bytes(),
        fetcher=HttpsFetcher(endpoint.root, endpoint.cert, endpoint.key, timeout=5),
        base_url=endpoint.url,
        log=events.append,
        alarm=alarms.append,
    )
    r = Range(repo, endpoint.served, agent, hw, events)
    r.alarms = alarms  # type: ignore[attr-defined]
    for kind in ("metadata", "targets"):
        shutil.rmtree(endpoint.served / kind, ignore_errors=True)
    r.sync()
    return r


def test_an_honest_update_changes_the_meter(rng: Range) -> None:
    assert rng.agent.status().version == "1.0.0"
    entry = rng.publish("2.0.0", 2, creep=5)
    image = rng.agent.download(entry.name)
    status = rng.agent.status()
    assert (status.version, status.counter, status.staged) == ("1.0.0", 1, image.sha256)
    rng.agent.activate(image.sha256)
    status = rng.agent.status()
    assert (status.version, status.counter, status.slot, status.staged) == ("2.0.0", 2, "b", None)
    assert rng.agent.running().manifest.settings == {"creep_threshold_w": 5, "power_quality": True}
    assert EventCode.FIRMWARE_CONFIRMED in rng.events


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_attack_is_refused_logged_and_changes_nothing(
    scenario: FirmwareScenario, rng: Range
) -> None:
    outcome = run_scenario(scenario, rng)
    assert outcome.passed, outcome
    assert rng.agent.status().version != "9.9.9"


def test_the_scenarios_cover_every_refusing_requirement() -> None:
    covered = {r for s in SCENARIOS for r in s.requirements}
    assert {f"FW-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)} <= covered


def test_a_frozen_channel_raises_channel_stale_after_repeated_failures(rng: Range) -> None:
    entry = rng.publish("1.1.0", 1)
    rng.repository.refresh_timestamp(now=rng.now() - dt.timedelta(days=2))
    rng.sync()
    for attempt in range(1, STALE_AFTER + 1):
        with pytest.raises(FirmwareFrozenError):
            rng.agent.download(entry.name)
        assert (ALARM_CHANNEL_STALE in rng.alarms) is (attempt == STALE_AFTER)  # type: ignore[attr-defined]
    assert rng.events.count(EventCode.FIRMWARE_CHANNEL_STALE) == 1
    rng.repository.refresh_timestamp(now=rng.now())  # the head-end's schedule resumes
    rng.sync()
    rng.agent.download(entry.name)
    assert rng.agent.status().failures == 0


def test_timestamp_and_root_rotation_reach_a_deployed_meter(rng: Range) -> None:
    """FW-13: the meter shipped with root v1 follows v2 (timestamp key) and v3 (root key)."""
    rng.install(rng.publish("1.1.0", 1).name)
    rng.repository.rotate("timestamp", now=rng.now())
    rng.sync()
    rng.install(rng.publish("1.2.0", 1).name)
    assert rng.repository.rotate("root", now=rng.now()) == 3
    rng.repository.rotate("targets", now=rng.now())
    rng.sync()
    rng.install(rng.publish("1.3.0", 1).name)
    assert rng.agent.status().version == "1.3.0"
    trusted = (rng.agent.dir / "tuf" / "root.json").read_bytes()
    assert trusted == rng.repository.root_bytes(4)


def test_endpoint_wants_a_meter_certificate_and_serves_only_repository_files(
    endpoint: Endpoint, rng: Range
) -> None:
    ctx = ssl.create_default_context(cafile=str(endpoint.root))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(  # noqa: S310 - https only
            endpoint.url + "metadata/timestamp.json", context=ctx, timeout=5
        )
    ctx.load_cert_chain(str(endpoint.cert), str(endpoint.key))
    with urllib.request.urlopen(  # noqa: S310 - https only
        endpoint.url + "metadata/1.root.json", context=ctx
    ) as r:
        assert r.read() == rng.repository.root_bytes(1)
    for bad in ("metadata/..%2f..%2fpki%2froot%2froot.key", "metadata/.lock", "keys/timestamp.pem"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(  # noqa: S310 - https only
                endpoint.url + bad, context=ctx, timeout=5
            )
        assert err.value.code in (400, 404)


def test_unknown_image_and_dead_endpoint_are_typed(endpoint: Endpoint, rng: Range) -> None:
    with pytest.raises(NotFoundError):
        rng.agent.download("MGD-MG-1-A-7.7.7.mgfw")
    dead = FirmwareAgent(
        rng.agent.dir.parent / "other",
        meter="MGD0000000002",
        hardware=rng.hardware,
        bootstrap=rng.repository.root_bytes(),
        fetcher=HttpsFetcher(endpoint.root, endpoint.cert, endpoint.key, timeout=2),
        base_url=f"https://127.0.0.1:{free_port()}/firmware/",
        log=lambda _e: None,
        alarm=lambda _b: None,
    )
    with pytest.raises(TransportError):
        dead.download("MGD-MG-1-A-1.0.0.mgfw")
    assert parse_image(dead.running().raw).manifest.version == "1.0.0"
