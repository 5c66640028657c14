"""The meter's firmware: its TUF updater, A/B slots, measured boot, signed reports (FW-2…FW-12).

Every form of the meter (the DLMS/TCP device and each meter of the compact fleet) runs one
:class:`FirmwareAgent` over a directory of its own — the meter's flash:

* **Updater** (:meth:`FirmwareAgent.download`): python-tuf's ``ngclient`` with the root the
  meter shipped with (``bootstrap=``), over :class:`HttpsFetcher` (the head-end's firmware
  endpoint, TLS pinned to the private root, the meter's operational certificate as client;
  ADR 13). Before a byte of the image moves it checks the signed target's vendor, model and
  hardware revision (FW-9, first), then its security version against the monotonic counter
  (FW-8); ngclient checks signatures against the pinned root and its signed successors (FW-2,
  FW-13), versions (FW-4, FW-6), expiry (FW-5), lengths (FW-7) and the image's length and hash
  (FW-3); the parsed image's manifest must then agree with the signed fields. Each refusal is a
  typed :class:`~meterguard.errors.FirmwareRefusedError`, an event in the meter's log book, and
  changes nothing; :data:`STALE_AFTER` consecutive channel failures raise the "channel stale"
  alarm (FW-5).
* **A/B slots** (:class:`SlotStore`, FW-10): an image is written into the inactive slot only;
  activation (a command naming the image's hash, FW-14) starts a trial boot, runs the health
  check and confirms; the security counter rises only at confirmation. The boot record is
  replaced atomically, and a trial that a power cut interrupts is reverted at the next boot, so
  a kill at any point before the confirming write leaves the last confirmed image running.
  Nothing else of the meter's state is in the slot directory.
* **Measured boot** (:func:`measure`, FW-11): a hash chain over the boot stages (ROM bootloader,
  running image, its configuration); :meth:`FirmwareAgent.attest` answers a head-end nonce with
  the measurement signed by the meter's **attestation key** (ECDSA P-256, its own, not the TLS
  key: PKI-6). :meth:`FirmwareAgent.report` signs a status report with the same key (FW-12).

The agent does IO only in its directory and through its fetcher; the time it checks metadata
expiry against is the wall clock (ngclient's), the meter's real-time clock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

from meterguard.cosem.eventcodes import EventCode
from meterguard.cosem.xdlms import ActionResult, DataAccessResult
from meterguard.errors import (
    ConflictError,
    DecodeError,
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
    NotFoundError,
    TransportError,
)
from meterguard.files import atomic_file
from meterguard.firmware.attestation import Attestation, measure
from meterguard.firmware.image import MAX_IMAGE, FirmwareImage, build_image, parse_image
from meterguard.firmware.repository import bootloader_hash
from meterguard.mqtt.tls import pinned_client_context

__all__ = [
    "CONFIG",
    "EVENT_OF",
    "STALE_AFTER",
    "CommandedFirmware",
    "FirmwareAgent",
    "FirmwareStatus",
    "Hardware",
    "HttpsFetcher",
    "SlotStore",
    "factory_image",
]

STALE_AFTER = 3
"""Consecutive failures of the update channel after which the meter raises "channel stale"."""
ALARM_CHANNEL_STALE = 11
"""The alarm-register bit of "firmware channel stale" (the tamper bits are 0…5, 8…10 refusals)."""

CONFIG = UpdaterConfig(
    max_root_rotations=32,
    root_max_length=64 * 1024,
    timestamp_max_length=4 * 1024,
    snapshot_max_length=64 * 1024,
    targets_max_length=1024 * 1024,
    prefix_targets_with_hash=True,
)
"""The meter's bounds on metadata (FW-7: a repository that sends more is refused)."""

EVENT_OF: dict[type[FirmwareRefusedError], EventCode] = {
    FirmwareIncompatibleError: EventCode.FIRMWARE_INCOMPATIBLE,
    FirmwareUntrustedError: EventCode.FIRMWARE_UNTRUSTED,
    FirmwareTamperedError: EventCode.FIRMWARE_TAMPERED,
    FirmwareRollbackError: EventCode.FIRMWARE_ROLLBACK,
    FirmwareFrozenError: EventCode.FIRMWARE_FROZEN,
    FirmwareMixAndMatchError: EventCode.FIRMWARE_MIX_AND_MATCH,
    FirmwareEndlessDataError: EventCode.FIRMWARE_ENDLESS_DATA,
    FirmwareDowngradeError: EventCode.FIRMWARE_DOWNGRADE,
    FirmwareHealthError: EventCode.FIRMWARE_HEALTH_FAILED,
}
"""The log-book event of each refusal."""


@dataclass(frozen=True, slots=True)
class Hardware:
    """What the meter is, as the image's compatibility fields name it (FW-9)."""

    vendor: str = "MGD"
    model: str = "MG-1"
    hw_revision: str = "A"

    def matches(self, custom: dict[str, Any]) -> bool:
        """Whether a target's signed fields name this hardware."""
        return (
            custom.get("vendor") == self.vendor
            and custom.get("model") == self.model
            and custom.get("hw_revision") == self.hw_revision
        )


def factory_image(hardware: Hardware) -> bytes:
    """The image every meter of ``hardware`` leaves the factory with (1.0.0, security 1)."""
    return build_image(
        vendor=hardware.vendor,
        model=hardware.model,
        hw_revision=hardware.hw_revision,
        version="1.0.0",
        security_version=1,
    )


# -- transport --------------------------------------------------------------------------------


class HttpsFetcher(FetcherInterface):
    """ngclient's transport over HTTPS: pinned root, the meter's certificate as TLS client.

    A download that is still running after ``deadline`` seconds is abandoned (a slow-retrieval
    attack); lengths are bounded by ngclient from the metadata.
    """

    def __init__(
        self,
        root: Path,
        cert: Path,
        key: Path,
        *,
        timeout: float = 10.0,
        deadline: float = 60.0,
    ) -> None:
        self._ctx = pinned_client_context(root, cert, key)
        # Two retries: the endpoint closes idle keep-alive connections, and a pooled one found
        # dead must not count as the channel failing. Every request is idempotent (GETs, and a
        # report the head-end accepts once per time).
        self._pool = urllib3.PoolManager(
            ssl_context=self._ctx,
            retries=urllib3.Retry(total=2, redirect=0, status=0, raise_on_status=False),
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            maxsize=1,
        )
        self.deadline = deadline
        self.last: tuple[str, bytes] = ("", b"")

    def __repr__(self) -> str:
        return "HttpsFetcher()"

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            response = self._pool.request("GET", url, preload_content=False)
        except (urllib3.exceptions.HTTPError, ssl.SSLError, OSError) as exc:
            raise TransportError(f"firmware endpoint unreachable: {type(exc).__name__}") from exc
        if response.status >= 400:
            response.release_conn()
            raise tuf_errors.DownloadHTTPError(f"HTTP {response.status}", response.status)
        return self._chunks(url, response)

    def post(self, url: str, body: bytes) -> int:
        """POST a JSON document (a signed report); the HTTP status.

        Raises:
            TransportError: the endpoint is unreachable.
        """
        try:
            response = self._pool.request(
                "POST", url, body=body, headers={"Content-Type": "application/json"}
            )
        except (urllib3.exceptions.HTTPError, ssl.SSLError, OSError) as exc:
            raise TransportError(f"firmware endpoint unreachable: {type(exc).__name__}") from exc
        return int(response.status)

    def report(self, url: str, doc: Attestation) -> None:
        """Send a signed document to the endpoint's report URL.

        Raises:
            TransportError: unreachable, or the head-end did not take it (any answer but 200).
        """
        status = self.post(url, json.dumps(doc.to_json()).encode())
        if status != 200:
            raise TransportError(f"the head-end answered {status} to a firmware report")

    def _chunks(self, url: str, response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
        started = time.monotonic()
        kept = bytearray()
        try:
            for chunk in response.stream(64 * 1024):
                if time.monotonic() - started > self.deadline:
                    raise tuf_errors.SlowRetrievalError(f"download exceeded {self.deadline} s")
                if len(kept) < 64 * 1024:
                    kept += chunk[: 64 * 1024 - len(kept)]
                self.last = (url, bytes(kept))
                yield chunk
        except urllib3.exceptions.HTTPError as exc:
            raise TransportError("firmware download broke off") from exc
        finally:
            response.release_conn()


# -- A/B slots --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotInfo:
    """What a slot holds."""

    sha256: str
    version: str
    security_version: int


class SlotStore:
    """Two image slots and the boot record in a directory (FW-10).

    ``boot.json`` names the confirmed slot, a staged (written, not activated) slot, the slot in
    trial, the security counter and the update channel's failure count; it is replaced
    atomically, so every state a power cut can leave is one of those.
    """

    SLOTS = ("a", "b")

    def __init__(self, directory: Path, factory: bytes) -> None:
        self.dir = directory
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self._record_path.exists():
            image = parse_image(factory)
            self._write_slot("a", factory)
            self._save(
                {
                    "confirmed": "a",
                    "staged": None,
                    "trial": None,
                    "counter": image.manifest.security_version,
                    "failures": 0,
                    "slots": {"a": self._info(image), "b": None},
                }
            )

    def __repr__(self) -> str:
        return f"SlotStore({str(self.dir)!r})"

    @property
    def _record_path(self) -> Path:
        return self.dir / "boot.json"

    def record(self) -> dict[str, Any]:
        """The boot record."""
        doc: dict[str, Any] = json.loads(self._record_path.read_bytes())
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        with atomic_file(self._record_path) as f:
            f.write(json.dumps(doc, sort_keys=True).encode())

    @staticmethod
    def _info(image: FirmwareImage) -> dict[str, Any]:
        m = image.manifest
        return {
            "sha256": image.sha256,
            "version": m.version,
            "security_version": m.security_version,
        }

    def _write_slot(
        self, slot: str, data: bytes, step: Callable[[str], None] | None = None
    ) -> None:
        # Written in place, chunk by chunk, as flash is: a power cut leaves a half-written
        # slot, which the boot record never names until the write is complete and fsynced.
        with open(self.dir / f"slot-{slot}.bin", "wb") as f:
            for i in range(0, len(data), 16 * 1024):
                f.write(data[i : i + 16 * 1024])
                if step is not None:
                    f.flush()
                    step("write")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(self.dir / f"slot-{slot}.bin", 0o600)

    def _read_slot(self, slot: str) -> FirmwareImage:
        info = self.record()["slots"].get(slot)
        if info is None:
            raise NotFoundError(f"slot {slot} is empty")
        data = (self.dir / f"slot-{slot}.bin").read_bytes()
        if hashlib.sha256(data).hexdigest() != info["sha256"]:
            raise FirmwareTamperedError(f"slot {slot} does not hold the image its record names")
        return parse_image(data)

    @property
    def counter(self) -> int:
        """The monotonic security counter (FW-8)."""
        return int(self.record()["counter"])

    def inactive(self) -> str:
        """The slot an install writes (never the confirmed one)."""
        return "b" if self.record()["confirmed"] == "a" else "a"

    def running(self) -> tuple[str, FirmwareImage]:
        """The slot the meter runs and its image (the trial slot during a trial boot)."""
        doc = self.record()
        slot = doc["trial"] or doc["confirmed"]
        return slot, self._read_slot(slot)

    def running_bytes(self) -> tuple[str, bytes]:
        """The running slot and the bytes in it, unchecked (what measured boot hashes)."""
        doc = self.record()
        slot = doc["trial"] or doc["confirmed"]
        return slot, (self.dir / f"slot-{slot}.bin").read_bytes()

    def stage(self, image: FirmwareImage, step: Callable[[str], None] | None = None) -> str:
        """Write ``image`` into the inactive slot and record it as staged; returns the slot."""
        doc = self.record()
        if doc["trial"] is not None:
            raise ConflictError("a trial boot is in progress")
        slot = self.inactive()
        doc["staged"], doc["slots"][slot] = None, None
        self._save(doc)  # the slot is named by nothing while it is being written
        if step is not None:
            step("invalidated")
        self._write_slot(slot, image.raw, step)
        if step is not None:
            step("written")
        doc = self.record()
        doc["staged"], doc["slots"][slot] = slot, self._info(image)
        self._save(doc)
        if step is not None:
            step("staged")
        return slot

    def discard(self) -> None:
        """Forget the staged image (a cancelled campaign); the slot is overwritten next time."""
        doc = self.record()
        if doc["staged"] is not None:
            doc["slots"][doc["staged"]], doc["staged"] = None, None
            self._save(doc)

    def staged(self) -> SlotInfo | None:
        """The staged image, if one waits for activation."""
        doc = self.record()
        if doc["staged"] is None:
            return None
        return SlotInfo(**doc["slots"][doc["staged"]])

    def activate(
        self,
        sha256: str,
        health: Callable[[FirmwareImage], None],
        step: Callable[[str], None] | None = None,
    ) -> FirmwareImage:
        """Switch to the staged image named by ``sha256``: trial boot, health check, confirm.

        Returns the confirmed image. The switch and the start of the trial are one atomic
        write; a power cut before the confirming write is reverted by :meth:`boot`.

        Raises:
            NotFoundError: no staged image has that hash (nothing changes).
            FirmwareHealthError: the health check failed; the last confirmed image runs.
        """
        doc = self.record()
        slot = doc["staged"]
        if slot is None or doc["slots"][slot]["sha256"] != sha256:
            raise NotFoundError("no staged image has that hash")
        doc["trial"], doc["staged"] = slot, None
        self._save(doc)
        if step is not None:
            step("switched")
        try:
            image = self._read_slot(slot)
            health(image)
        except (FirmwareRefusedError, DecodeError) as exc:
            self._revert()
            if isinstance(exc, FirmwareHealthError):
                raise
            raise FirmwareHealthError(f"trial boot failed: {exc}") from exc
        if step is not None:
            step("healthy")
        doc = self.record()
        doc["confirmed"], doc["trial"] = slot, None
        doc["counter"] = max(int(doc["counter"]), image.manifest.security_version)
        self._save(doc)
        if step is not None:
            step("confirmed")
        return image

    def _revert(self) -> None:
        doc = self.record()
        doc["trial"] = None
        self._save(doc)

    def boot(self) -> bool:
        """What the bootloader does at power-up; True when it reverted an interrupted trial."""
        doc = self.record()
        if doc["trial"] is None:
            return False
        self._revert()
        return True

    def failure(self) -> int:
        """Count one failure of the update channel; the count."""
        doc = self.record()
        doc["failures"] = int(doc["failures"]) + 1
        self._save(doc)
        return int(doc["failures"])

    def success(self) -> None:
        """The channel worked: the failure count starts again."""
        doc = self.record()
        if doc["failures"]:
            doc["failures"] = 0
            self._save(doc)


# -- measured boot and signed reports ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FirmwareStatus:
    """The meter's firmware as it reports it (FW-12)."""

    version: str
    sha256: str
    slot: str
    counter: int
    staged: str | None
    failures: int


# -- the agent --------------------------------------------------------------------------------


def _result(step: str, exc: Exception) -> str:
    """A report's result word for a failed step: ``refused:<reason>`` and the like."""
    if isinstance(exc, FirmwareHealthError):
        return f"reverted:{exc.reason}"
    if isinstance(exc, FirmwareRefusedError):
        return f"refused:{exc.reason}"
    if isinstance(exc, NotFoundError):
        return f"{step}:not-found"
    return f"{step}:unreachable"


class FirmwareAgent:
    """One meter's firmware side over its directory (see the module docstring).

    ``log`` writes an event to the meter's log book; ``alarm`` latches an alarm-register bit and
    pushes it. ``fetcher`` carries the update channel; ``base_url`` is the firmware endpoint's
    (``https://host:port/firmware/``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        meter: str,
        hardware: Hardware,
        bootstrap: bytes,
        fetcher: FetcherInterface,
        base_url: str,
        log: Callable[[EventCode], None],
        alarm: Callable[[int], None],
        report: Callable[[Attestation], None] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.dir = directory
        self._report = report
        self._clock = clock
        self.meter = meter
        self.hardware = hardware
        self._bootstrap = bootstrap
        self._fetcher = fetcher
        self.base_url = base_url.rstrip("/") + "/"
        self._log = log
        self._alarm = alarm
        self.slots = SlotStore(directory / "slots", factory_image(hardware))
        self._key = self._attestation_key()
        if self.slots.boot():
            self._log(EventCode.FIRMWARE_REVERTED)

    def __repr__(self) -> str:
        return f"FirmwareAgent({self.meter})"

    def _attestation_key(self) -> ec.EllipticCurvePrivateKey:
        path = self.dir / "attest.key"
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            with atomic_file(path) as f:
                f.write(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
            return key
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise DecodeError("attestation key file holds another kind of key")
        return loaded

    def attestation_public_pem(self) -> bytes:
        """The attestation key's public half (registered with the head-end at manufacture)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    # -- the update channel -----------------------------------------------------------------

    def _updater(self) -> Updater:
        meta = self.dir / "tuf"
        meta.mkdir(mode=0o700, exist_ok=True)
        return Updater(
            str(meta),
            self.base_url + "metadata/",
            str(self.dir / "download"),
            self.base_url + "targets/",
            fetcher=self._fetcher,
            config=CONFIG,
            bootstrap=self._bootstrap,
        )

    def _trusted_versions(self) -> dict[str, int]:
        out = {}
        for role in ("timestamp", "snapshot", "targets"):
            path = self.dir / "tuf" / f"{role}.json"
            if path.exists():
                out[role] = Metadata.from_bytes(path.read_bytes()).signed.version
        return out

    def download(self, name: str) -> FirmwareImage:
        """Fetch, verify and stage the image ``name`` from the repository; the staged image.

        Raises:
            FirmwareRefusedError: one of the refusals of the module docstring (logged, nothing
                written; channel failures count toward "channel stale").
            TransportError: the endpoint is unreachable (counts toward "channel stale").
            NotFoundError: the repository has no image of that name.
        """
        try:
            image = self._download(name)
        except (FirmwareRefusedError, TransportError, NotFoundError) as exc:
            if not isinstance(exc, NotFoundError):
                self._refused(exc)
            self._send(_result("download", exc), name=name)
            raise
        self.slots.success()
        self.slots.stage(image)
        self._send("staged", name=name)
        return image

    def _refused(self, exc: Exception) -> None:
        if isinstance(exc, FirmwareRefusedError):
            self._log(EVENT_OF.get(type(exc), EventCode.FIRMWARE_UNTRUSTED))
        if isinstance(exc, FirmwareIncompatibleError | FirmwareDowngradeError):
            return  # the channel works; the image is not for this meter
        if self.slots.failure() == STALE_AFTER:
            self._log(EventCode.FIRMWARE_CHANNEL_STALE)
            self._alarm(ALARM_CHANNEL_STALE)

    def _download(self, name: str) -> FirmwareImage:
        trusted = self._trusted_versions()
        updater = self._updater()
        try:
            updater.refresh()
        except Exception as exc:
            raise self._classify(exc, trusted) from exc
        try:
            info = updater.get_targetinfo(name)
        except Exception as exc:
            raise self._classify(exc, trusted) from exc
        if info is None:
            raise NotFoundError(f"the repository has no image {name!r}")
        custom = info.custom if isinstance(info.custom, dict) else {}
        if not self.hardware.matches(custom):  # FW-9, before anything else about the image
            raise FirmwareIncompatibleError(
                f"image for {custom.get('vendor')}/{custom.get('model')}/"
                f"{custom.get('hw_revision')}, this meter is {self.hardware.vendor}/"
                f"{self.hardware.model}/{self.hardware.hw_revision}"
            )
        security = custom.get("security_version")
        if type(security) is not int or security < self.slots.counter:  # FW-8
            raise FirmwareDowngradeError(
                f"security version {security} is below the meter's counter {self.slots.counter}"
            )
        if info.length > MAX_IMAGE:
            raise FirmwareTamperedError(f"image of {info.length} bytes exceeds the slot")
        staging = self.dir / "download" / "image.bin"
        staging.parent.mkdir(mode=0o700, exist_ok=True)
        try:
            updater.download_target(info, str(staging))
        except tuf_errors.DownloadLengthMismatchError as exc:
            raise FirmwareTamperedError("image longer than its signed length") from exc
        except tuf_errors.LengthOrHashMismatchError as exc:
            raise FirmwareTamperedError("image hash or length is not the signed one") from exc
        except Exception as exc:
            raise self._classify(exc, trusted) from exc
        try:
            image = parse_image(staging.read_bytes())
        except DecodeError as exc:
            raise FirmwareTamperedError(f"signed image does not parse: {exc}") from exc
        finally:
            staging.unlink(missing_ok=True)
        signed = {k: custom.get(k) for k in image.manifest.identity()}
        if image.manifest.identity() != signed or custom.get("settings") != image.manifest.settings:
            raise FirmwareTamperedError("the image's manifest disagrees with its signed target")
        return image

    def _classify(self, exc: Exception, trusted: dict[str, int]) -> Exception:
        """The typed refusal of a failure in ngclient (the original chained as its cause)."""
        if isinstance(exc, FirmwareRefusedError | TransportError | NotFoundError):
            return exc
        if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
            return FirmwareEndlessDataError("metadata longer than the meter's bound")
        if isinstance(exc, tuf_errors.SlowRetrievalError):
            return FirmwareEndlessDataError("retrieval exceeded its deadline")
        if isinstance(exc, tuf_errors.ExpiredMetadataError):
            return FirmwareFrozenError(f"expired metadata: {exc}")
        if isinstance(exc, tuf_errors.UnsignedMetadataError):
            return FirmwareUntrustedError(f"metadata not signed by trusted keys: {exc}")
        if isinstance(exc, tuf_errors.BadVersionNumberError):
            if self._older_than_trusted(trusted):
                return FirmwareRollbackError(f"metadata rollback: {exc}")
            return FirmwareMixAndMatchError(f"metadata versions do not agree: {exc}")
        if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
            return FirmwareMixAndMatchError(f"metadata does not match its snapshot: {exc}")
        if isinstance(exc, tuf_errors.DownloadHTTPError):
            return TransportError(f"firmware endpoint answered {exc.status_code}")
        if isinstance(exc, tuf_errors.DownloadError):
            cause = exc.__cause__
            if isinstance(cause, TransportError):
                return cause
            return TransportError("firmware download failed")
        if isinstance(exc, tuf_errors.RepositoryError):
            return FirmwareUntrustedError(f"metadata refused: {exc}")
        return TransportError(f"firmware update failed: {type(exc).__name__}")

    def _older_than_trusted(self, trusted: dict[str, int]) -> bool:
        """Whether the metadata that failed is older than what the meter trusts.

        That is a rollback; versions that merely disagree with each other are mix-and-match.
        """
        _url, data = getattr(self._fetcher, "last", ("", b""))
        try:
            signed = Metadata.from_bytes(data).signed
        except Exception:  # noqa: BLE001 - unparsable: not a rollback of parsable metadata
            return False
        role = signed.type
        if role in trusted and signed.version < trusted[role]:
            return True
        if role == "timestamp":
            older: bool = signed.snapshot_meta.version < trusted.get("snapshot", 0)  # type: ignore[attr-defined]
            return older
        if role == "snapshot":
            meta = signed.meta.get("targets.json")  # type: ignore[attr-defined]
            return meta is not None and bool(meta.version < trusted.get("targets", 0))
        return False

    # -- activation, status, attestation --------------------------------------------------

    def activate(self, sha256: str, step: Callable[[str], None] | None = None) -> FirmwareImage:
        """Activate the staged image named by ``sha256`` (the FW-14 command's effect).

        Raises:
            NotFoundError: nothing staged with that hash.
            FirmwareHealthError: the trial boot failed; the meter runs its last confirmed image.
        """
        try:
            image = self.slots.activate(sha256, self._health, step)
        except FirmwareHealthError as exc:
            self._log(EventCode.FIRMWARE_HEALTH_FAILED)
            self._log(EventCode.FIRMWARE_REVERTED)
            self._send(_result("activate", exc), name=sha256)
            raise
        except NotFoundError as exc:
            self._send(_result("activate", exc), name=sha256)
            raise
        self._log(EventCode.FIRMWARE_CONFIRMED)
        self._send("confirmed", name=sha256)
        return image

    def _send(self, result: str, *, name: str | None = None) -> None:
        """Send a signed status report, if the agent has a report channel.

        A report that does not get through counts as a channel failure; the campaign flags a
        meter that never reports.
        """
        if self._report is None:
            return
        doc = self.report(result, now=self._clock())
        if name is not None:
            doc = self._sign({**doc.body, "target": name})
        self._deliver(doc)

    def _deliver(self, doc: Attestation) -> None:
        if self._report is None:
            return
        try:
            self._report(doc)
        except TransportError as exc:  # counted: repeated failures raise "channel stale"
            self._refused(exc)

    def _health(self, image: FirmwareImage) -> None:
        if not self.hardware.matches(image.manifest.identity()):
            raise FirmwareHealthError("the image is not for this hardware")
        if image.manifest.selftest != "pass":
            raise FirmwareHealthError("the image's self-test failed")

    def running(self) -> FirmwareImage:
        """The image the meter runs."""
        return self.slots.running()[1]

    def status(self) -> FirmwareStatus:
        """Version, hash, slot, counter, staged image and channel failures."""
        slot, image = self.slots.running()
        staged = self.slots.staged()
        record = self.slots.record()
        return FirmwareStatus(
            image.manifest.version,
            image.sha256,
            slot,
            int(record["counter"]),
            staged.sha256 if staged is not None else None,
            int(record["failures"]),
        )

    def _sign(self, body: dict[str, Any]) -> Attestation:
        doc = Attestation(body, b"")
        return Attestation(body, self._key.sign(doc.payload(), ec.ECDSA(hashes.SHA256())))

    def attest(self, nonce: bytes) -> Attestation:
        """The measured boot's chain over what is in flash, with ``nonce``, signed (FW-11).

        The running slot's bytes are measured as they are (not as the boot record names them),
        so an image changed in flash shows as a measurement the head-end does not expect.
        """
        slot, raw = self.slots.running_bytes()
        try:
            settings: dict[str, Any] = dict(parse_image(raw).manifest.settings)
        except DecodeError:
            settings = {}
        firmware = hashlib.sha256(raw).hexdigest()
        hw = self.hardware
        return self._sign(
            {
                "kind": "attestation",
                "meter": self.meter,
                "nonce": nonce.hex(),
                "slot": slot,
                "firmware_sha256": firmware,
                "measurement": measure(
                    bootloader_hash(hw.vendor, hw.model, hw.hw_revision), firmware, settings
                ),
            }
        )

    def answer(self, nonce: bytes) -> Attestation:
        """:meth:`attest`, sent on the report channel."""
        doc = self.attest(nonce)
        self._deliver(doc)
        return doc

    def report(self, result: str, *, now: dt.datetime) -> Attestation:
        """A signed status report: installed version, security counter, result (FW-12)."""
        status = self.status()
        return self._sign(
            {
                "kind": "status",
                "meter": self.meter,
                "at": now.isoformat(),
                "version": status.version,
                "firmware_sha256": status.sha256,
                "slot": status.slot,
                "counter": status.counter,
                "staged": status.staged,
                "result": result,
            }
        )


class CommandedFirmware:
    """The agent as a signed command reaches it (:class:`meterguard.meter.controls.Firmware`).

    Refusals become DLMS results (the reason is in the meter's log and its signed report):
    ``OTHER_REASON`` for a refused image, ``TEMPORARY_FAILURE`` when the channel is down,
    ``OBJECT_UNAVAILABLE`` when nothing of that name or hash is there.
    """

    def __init__(self, agent: FirmwareAgent) -> None:
        self.agent = agent

    def __repr__(self) -> str:
        return f"CommandedFirmware({self.agent.meter})"

    def download(self, name: str) -> ActionResult:
        """Pull, verify and stage ``name``."""
        try:
            self.agent.download(name)
        except FirmwareRefusedError:
            return ActionResult.OTHER_REASON
        except TransportError:
            return ActionResult.TEMPORARY_FAILURE
        except NotFoundError:
            return ActionResult.OBJECT_UNAVAILABLE
        return ActionResult.SUCCESS

    def activate(self, sha256: bytes) -> ActionResult:
        """Activate the staged image with this hash."""
        try:
            self.agent.activate(sha256.hex())
        except FirmwareRefusedError:
            return ActionResult.OTHER_REASON
        except NotFoundError:
            return ActionResult.OBJECT_UNAVAILABLE
        return ActionResult.SUCCESS

    def attest(self, nonce: bytes) -> DataAccessResult:
        """Answer a nonce with a signed measurement, sent on the report channel."""
        self.agent.answer(nonce)
        return DataAccessResult.SUCCESS

    def staged(self) -> tuple[int, bytes, bytes] | None:
        """The staged image: (size, version, hash)."""
        info = self.agent.slots.staged()
        if info is None:
            return None
        return 0, info.version.encode(), bytes.fromhex(info.sha256)
