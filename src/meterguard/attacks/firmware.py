"""Malware-injection attacks on the firmware path, as data (FW-1…FW-10, FW-13).

Each :class:`FirmwareScenario` names the attacker's capability, what it does, the refusal the
meter must answer with (a :class:`~meterguard.errors.FirmwareRefusedError` subclass) and the
event it must log; :func:`run_scenario` plays it on a :class:`Range` — a real repository, what
the firmware endpoint serves (a directory the attacker controls: a compromised web server or a
position in the path that TLS does not stop, such as the head-end's own host), and one meter's
:class:`~meterguard.meter.firmware.FirmwareAgent` — and checks that the attack was refused,
logged, and changed nothing on the meter (slot, counter, staged image).

The attacker never holds the offline root or targets keys: the strongest capabilities here are
a stolen timestamp key, both online keys (a compromised head-end), and a repository of its own.
The same objects drive the test suite and, later, ``meterguard attack``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

from meterguard.cosem.eventcodes import EventCode
from meterguard.errors import (
    FirmwareDowngradeError,
    FirmwareEndlessDataError,
    FirmwareFrozenError,
    FirmwareHealthError,
    FirmwareIncompatibleError,
    FirmwareMixAndMatchError,
    FirmwareRefusedError,
    FirmwareRollbackError,
    FirmwareTamperedError,
    FirmwareUntrustedError,
    MeterguardError,
)
from meterguard.firmware.image import build_image, version_key
from meterguard.firmware.repository import EXPIRY, FirmwareRepository, TargetEntry
from meterguard.meter.firmware import EVENT_OF, FirmwareAgent, Hardware

__all__ = ["SCENARIOS", "FirmwareScenario", "Outcome", "Range", "run_scenario"]

_JSON = JSONSerializer(compact=False)


@dataclass
class Range:
    """Where a firmware attack is played: the repository, what is served, one meter.

    ``events`` is the meter's log of firmware events (the agent's ``log`` appends to it).
    """

    repository: FirmwareRepository
    served: Path
    agent: FirmwareAgent
    hardware: Hardware
    events: list[EventCode] = field(default_factory=list)

    def now(self) -> dt.datetime:
        """The repository's time (the wall clock: the meter checks expiry against its RTC)."""
        return dt.datetime.now(dt.UTC)

    def sync(self) -> None:
        """Serve what the repository holds (the honest endpoint)."""
        for kind in ("metadata", "targets"):
            target = self.served / kind
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.repository.path / kind, target)

    def publish(
        self,
        version: str,
        security_version: int,
        *,
        model: str | None = None,
        selftest: str = "pass",
        creep: int = 0,
    ) -> TargetEntry:
        """Sign a genuine image into the repository and serve it."""
        hw = self.hardware
        entry = self.repository.add_image(
            build_image(
                vendor=hw.vendor,
                model=model or hw.model,
                hw_revision=hw.hw_revision,
                version=version,
                security_version=security_version,
                selftest=selftest,
                settings={
                    "creep_threshold_w": creep,
                    "power_quality": version_key(version) >= (2, 0, 0),
                },
            ),
            now=self.now(),
        )
        self.sync()
        return entry

    def install(self, name: str) -> None:
        """The meter downloads and activates ``name`` (an honest update)."""
        image = self.agent.download(name)
        self.agent.activate(image.sha256)

    def metadata(self, name: str) -> bytes:
        """A served metadata file."""
        return (self.served / "metadata" / name).read_bytes()

    def put_metadata(self, name: str, data: bytes) -> None:
        """Serve ``data`` as a metadata file (the attacker's write)."""
        (self.served / "metadata" / name).write_bytes(data)

    def served_image(self, entry: TargetEntry) -> Path:
        """The served file of an image."""
        return self.served / "targets" / f"{entry.sha256}.{entry.name}"

    def online_key(self, role: str) -> CryptoSigner:
        """A stolen copy of an online key (the attacker read the head-end's disk)."""
        key = serialization.load_pem_private_key(
            (self.repository.path / "keys" / f"{role}.pem").read_bytes(), password=None
        )
        return _signer(key)


def _signer(key: object) -> CryptoSigner:
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError("repository keys are Ed25519")
    return CryptoSigner(key)


@dataclass(frozen=True, slots=True)
class FirmwareScenario:
    """One attack: capability, steps, the refusal and event expected, the requirements.

    ``attack`` performs the steps and returns the image name the meter is then asked to install.
    """

    name: str
    requirements: tuple[str, ...]
    capability: str
    summary: str
    refusal: type[FirmwareRefusedError]
    attack: Callable[[Range], str]
    activate: bool = False

    @property
    def event(self) -> EventCode:
        """The log-book event the refusal must leave."""
        return EVENT_OF[self.refusal]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened: passed when the expected refusal came, was logged and changed nothing."""

    scenario: str
    passed: bool
    raised: str
    events: tuple[str, ...]
    detail: str


def run_scenario(scenario: FirmwareScenario, rng: Range) -> Outcome:
    """Play ``scenario`` on ``rng`` and judge it (see :class:`Outcome`)."""
    name = scenario.attack(rng)
    before = (rng.agent.status().version, rng.agent.status().counter, rng.agent.status().slot)
    rng.events.clear()
    raised: MeterguardError | None = None
    try:
        image = rng.agent.download(name)
        if scenario.activate:
            rng.agent.activate(image.sha256)
    except MeterguardError as exc:
        raised = exc
    status = rng.agent.status()
    after = (status.version, status.counter, status.slot)
    events = tuple(e.name for e in rng.events)
    problems = []
    if type(raised) is not scenario.refusal:
        problems.append(f"expected {scenario.refusal.__name__}, got {type(raised).__name__}")
    if scenario.event.name not in events:
        problems.append(f"no {scenario.event.name} event")
    if after != before:
        problems.append(f"meter changed: {before} -> {after}")
    if not scenario.activate and status.staged is not None:
        problems.append("an image was staged")
    return Outcome(
        scenario.name,
        not problems,
        type(raised).__name__ if raised else "nothing",
        events,
        "; ".join(problems) or str(raised),
    )


# -- the attacks ------------------------------------------------------------------------------


def _resign(
    md: Metadata[Timestamp] | Metadata[Snapshot] | Metadata[Targets], signer: CryptoSigner
) -> bytes:
    md.sign(signer)
    return md.to_bytes(_JSON)


def _another_root(rng: Range) -> str:
    """A repository of the attacker's own, same image names, served in place of ours."""
    evil = FirmwareRepository.create(rng.served.parent / "evil-repo", now=rng.now())
    hw = rng.hardware
    entry = evil.add_image(
        build_image(
            vendor=hw.vendor,
            model=hw.model,
            hw_revision=hw.hw_revision,
            version="6.6.6",
            security_version=99,
            payload_size=4096,
        ),
        now=rng.now(),
    )
    for kind in ("metadata", "targets"):
        shutil.rmtree(rng.served / kind)
        shutil.copytree(evil.path / kind, rng.served / kind)
    # the meter would fetch root v2 first: serve the attacker's root as "2.root.json"
    rng.put_metadata("2.root.json", evil.root_bytes())
    return entry.name


def _root_rotation_by_another_root(rng: Range) -> str:
    """A "root v2" signed by the attacker's root only, naming the attacker's keys."""
    entry = rng.publish("1.1.0", 1)
    evil = FirmwareRepository.create(rng.served.parent / "evil-root", now=rng.now())
    root = Metadata.from_bytes(evil.root_bytes())
    root.signed.version = Metadata.from_bytes(rng.repository.root_bytes()).signed.version + 1
    key = serialization.load_pem_private_key((evil.offline / "root.pem").read_bytes(), None)
    root.sign(_signer(key))
    rng.put_metadata(f"{root.signed.version}.root.json", root.to_bytes(_JSON))
    return entry.name


def _tampered_image(rng: Range) -> str:
    entry = rng.publish("1.2.0", 1)
    path = rng.served_image(entry)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # one bit of the payload: malware of the same length
    path.write_bytes(bytes(data))
    return entry.name


def _over_length_image(rng: Range) -> str:
    entry = rng.publish("1.3.0", 1)
    with open(rng.served_image(entry), "ab") as f:
        f.write(b"\x90" * 65536)  # a payload appended after the genuine image
    return entry.name


def _metadata_rollback(rng: Range) -> str:
    old = rng.metadata("timestamp.json")  # genuinely signed, not yet expired
    entry = rng.publish("1.4.0", 1)
    rng.agent.download(entry.name)  # the meter sees the newer state (and stages the image)
    rng.agent.slots.discard()  # the operator cancels the campaign: nothing staged
    rng.put_metadata("timestamp.json", old)  # ... and is then shown the old one again
    return entry.name


def _freeze(rng: Range) -> str:
    """The endpoint keeps serving a timestamp whose expiry has passed (a frozen channel)."""
    entry = rng.publish("1.5.0", 1)
    past = rng.now() - EXPIRY["timestamp"] - dt.timedelta(hours=1)
    rng.repository.refresh_timestamp(now=past)  # the last one signed before the freeze
    rng.sync()
    return entry.name


def _mix_and_match(rng: Range) -> str:
    """The snapshot of today with the targets metadata of an earlier state."""
    earlier = rng.metadata(_latest(rng, "targets"))
    entry = rng.publish("1.6.0", 1)
    rng.put_metadata(_latest(rng, "targets"), earlier)
    return entry.name


def _latest(rng: Range, role: str) -> str:
    versions = [int(p.name.split(".")[0]) for p in (rng.served / "metadata").glob(f"*.{role}.json")]
    return f"{max(versions)}.{role}.json"


def _endless_data(rng: Range) -> str:
    entry = rng.publish("1.7.0", 1)
    rng.put_metadata("timestamp.json", b"{" + b" " * (8 * 1024 * 1024))
    return entry.name


def _downgrade(rng: Range) -> str:
    old = rng.publish("1.8.0", 2)
    rng.install(rng.publish("2.0.0", 3).name)  # the meter's counter is now 3
    return old.name  # a genuinely signed image of security version 2


def _wrong_model(rng: Range) -> str:
    # signed by the real repository, for another model, and with a lower security version
    # too: the compatibility check comes first (FW-9)
    return rng.publish("3.0.0", 0, model="MG-2").name


def _stolen_timestamp_key(rng: Range) -> str:
    """Malware signed into targets and snapshot by the attacker, timestamp by the stolen key."""
    return _forge(rng, stolen=("timestamp",))


def _stolen_online_keys(rng: Range) -> str:
    """Both online keys stolen (a compromised head-end): targets still needs the offline key."""
    return _forge(rng, stolen=("timestamp", "snapshot"))


def _forge(rng: Range, stolen: tuple[str, ...]) -> str:
    rng.sync()
    hw = rng.hardware
    malware = build_image(
        vendor=hw.vendor,
        model=hw.model,
        hw_revision=hw.hw_revision,
        version="9.9.9",
        security_version=99,
        payload_size=4096,
    )
    name = f"{hw.vendor}-{hw.model}-{hw.hw_revision}-9.9.9.mgfw"
    attacker = CryptoSigner(Ed25519PrivateKey.generate())
    targets: Metadata[Targets] = Metadata.from_bytes(rng.metadata(_latest(rng, "targets")))
    tf = TargetFile.from_data(name, malware, ["sha256"])
    tf.unrecognized_fields["custom"] = {
        "vendor": hw.vendor,
        "model": hw.model,
        "hw_revision": hw.hw_revision,
        "version": "9.9.9",
        "security_version": 99,
        "settings": {"creep_threshold_w": 0, "power_quality": False},
    }
    targets.signed.targets[name] = tf
    targets.signed.version += 1
    rng.put_metadata(f"{targets.signed.version}.targets.json", _resign(targets, attacker))
    (rng.served / "targets" / f"{tf.hashes['sha256']}.{name}").write_bytes(malware)
    snap: Metadata[Snapshot] = Metadata.from_bytes(rng.metadata(_latest(rng, "snapshot")))
    snap.signed.version += 1
    snap.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
    signer = rng.online_key("snapshot") if "snapshot" in stolen else attacker
    rng.put_metadata(f"{snap.signed.version}.snapshot.json", _resign(snap, signer))
    ts: Metadata[Timestamp] = Metadata.from_bytes(rng.metadata("timestamp.json"))
    ts.signed.version += 1
    ts.signed.snapshot_meta = MetaFile(version=snap.signed.version)
    rng.put_metadata("timestamp.json", _resign(ts, rng.online_key("timestamp")))
    return name


def _failing_health_check(rng: Range) -> str:
    """A genuinely signed build whose self-test fails at trial boot."""
    return rng.publish("2.5.0", 5, selftest="fail").name


SCENARIOS: tuple[FirmwareScenario, ...] = (
    FirmwareScenario(
        "another-root",
        ("FW-2",),
        "controls the firmware endpoint",
        "serves a repository signed by a root of the attacker's own",
        FirmwareUntrustedError,
        _another_root,
    ),
    FirmwareScenario(
        "root-rotation-by-another-root",
        ("FW-2", "FW-13"),
        "controls the firmware endpoint",
        "serves a root N+1 signed only by the attacker's root key",
        FirmwareUntrustedError,
        _root_rotation_by_another_root,
    ),
    FirmwareScenario(
        "tampered-image",
        ("FW-3",),
        "controls the firmware endpoint",
        "flips one bit of a genuine image (same length)",
        FirmwareTamperedError,
        _tampered_image,
    ),
    FirmwareScenario(
        "over-length-image",
        ("FW-3",),
        "controls the firmware endpoint",
        "appends a payload after a genuine image",
        FirmwareTamperedError,
        _over_length_image,
    ),
    FirmwareScenario(
        "metadata-rollback",
        ("FW-4",),
        "controls the firmware endpoint",
        "serves a genuine, unexpired timestamp older than the meter has seen",
        FirmwareRollbackError,
        _metadata_rollback,
    ),
    FirmwareScenario(
        "freeze",
        ("FW-5",),
        "controls the firmware endpoint",
        "keeps serving the last timestamp after it expired",
        FirmwareFrozenError,
        _freeze,
    ),
    FirmwareScenario(
        "mix-and-match",
        ("FW-6",),
        "controls the firmware endpoint",
        "serves today's snapshot with an earlier state's targets metadata",
        FirmwareMixAndMatchError,
        _mix_and_match,
    ),
    FirmwareScenario(
        "endless-data",
        ("FW-7",),
        "controls the firmware endpoint",
        "answers the timestamp request with 8 MiB",
        FirmwareEndlessDataError,
        _endless_data,
    ),
    FirmwareScenario(
        "downgrade",
        ("FW-8",),
        "replays a genuinely signed old image",
        "offers a signed image below the meter's security counter",
        FirmwareDowngradeError,
        _downgrade,
    ),
    FirmwareScenario(
        "wrong-model",
        ("FW-9",),
        "offers a genuinely signed image",
        "an image for another model (and a lower security version)",
        FirmwareIncompatibleError,
        _wrong_model,
    ),
    FirmwareScenario(
        "stolen-timestamp-key",
        ("FW-1",),
        "stole the timestamp key",
        "malware in targets and snapshot, timestamp signed with the stolen key",
        FirmwareUntrustedError,
        _stolen_timestamp_key,
    ),
    FirmwareScenario(
        "stolen-online-keys",
        ("FW-1",),
        "compromised the head-end (online keys)",
        "malware in targets, snapshot and timestamp signed with the stolen keys",
        FirmwareUntrustedError,
        _stolen_online_keys,
    ),
    FirmwareScenario(
        "failing-health-check",
        ("FW-10",),
        "none (a defective genuine build)",
        "a signed image whose self-test fails at trial boot",
        FirmwareHealthError,
        _failing_health_check,
        activate=True,
    ),
)
"""Every firmware refusal, in the order of the requirements."""
