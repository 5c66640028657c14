"""A firmware image: a manifest that says what it is, and the payload it carries.

Layout (big-endian)::

    b"MGFW" | version 1 (1 byte) | manifest length (u32) | manifest (JSON, sorted keys) | payload

The manifest names the vendor, model and hardware revision the image is built for, its version
and **security version** (FW-8: the meter's anti-rollback counter is compared with it), the
SHA-256 of the payload, the settings the image runs the meter with (a metrology constant and a
feature flag, so an update visibly changes the meter's behaviour), and the result its self-test
gives at trial boot (a simulated defective build says ``"fail"``). The payload stands for the
code: deterministic bytes derived from the manifest's identity, so two builds of one version are
byte-identical.

The repository signs the whole image's hash and the manifest's identity fields as custom fields
of the TUF target (:mod:`.repository`); :func:`parse_image` is what the meter runs on bytes the
updater already verified, as a second check that the signed fields and the image agree. Pure: no
IO, no time.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from meterguard.errors import DecodeError, InvalidValueError

__all__ = [
    "DEFAULT_SETTINGS",
    "MAX_IMAGE",
    "FirmwareImage",
    "Manifest",
    "build_image",
    "image_name",
    "parse_image",
    "version_key",
]

MAGIC = b"MGFW"
FORMAT = 1
MAX_IMAGE = 4 * 1024 * 1024
"""The largest image a meter accepts (its slot size); the repository refuses larger ones."""
MAX_MANIFEST = 4096

DEFAULT_SETTINGS: dict[str, int | bool] = {"creep_threshold_w": 0, "power_quality": False}
"""The settings every image carries: ``creep_threshold_w`` is the meter's no-load threshold
(power below it is not registered, as a real meter's anti-creep; 0…50 W), ``power_quality``
the flag that turns on voltage reporting in the meter's status."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,39}$")
_VERSION = re.compile(r"^\d{1,4}\.\d{1,4}\.\d{1,4}$")


@dataclass(frozen=True, slots=True)
class Manifest:
    """What an image says it is."""

    vendor: str
    model: str
    hw_revision: str
    version: str
    security_version: int
    payload_sha256: str
    settings: dict[str, int | bool] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    selftest: str = "pass"

    def identity(self) -> dict[str, Any]:
        """The fields the repository signs into the TUF target (vendor … security version)."""
        return {
            "vendor": self.vendor,
            "model": self.model,
            "hw_revision": self.hw_revision,
            "version": self.version,
            "security_version": self.security_version,
        }

    def to_json(self) -> dict[str, Any]:
        """The manifest as JSON."""
        return {
            **self.identity(),
            "payload_sha256": self.payload_sha256,
            "settings": dict(self.settings),
            "selftest": self.selftest,
        }


@dataclass(frozen=True, slots=True)
class FirmwareImage:
    """A parsed image."""

    manifest: Manifest
    payload: bytes
    raw: bytes

    @property
    def sha256(self) -> str:
        """The hash of the whole image.

        The TUF target, the activation command and the measured boot all name it.
        """
        return hashlib.sha256(self.raw).hexdigest()


def version_key(version: str) -> tuple[int, ...]:
    """``"1.10.0"`` → ``(1, 10, 0)``, for ordering versions."""
    return tuple(int(p) for p in version.split("."))


def image_name(vendor: str, model: str, hw_revision: str, version: str) -> str:
    """The image's target name in the repository."""
    return f"{vendor}-{model}-{hw_revision}-{version}.mgfw"


def _payload(vendor: str, model: str, version: str, size: int) -> bytes:
    out = bytearray()
    seed = f"{vendor}/{model}/{version}".encode()
    block = 0
    while len(out) < size:
        out += hashlib.sha256(seed + block.to_bytes(8, "big")).digest()
        block += 1
    return bytes(out[:size])


def _check_settings(settings: dict[str, Any]) -> dict[str, int | bool]:
    if set(settings) != set(DEFAULT_SETTINGS):
        raise InvalidValueError(f"settings must be exactly {sorted(DEFAULT_SETTINGS)}")
    creep = settings["creep_threshold_w"]
    if type(creep) is not int or not 0 <= creep <= 50:
        raise InvalidValueError("creep_threshold_w must be an integer of 0..50 W")
    if type(settings["power_quality"]) is not bool:
        raise InvalidValueError("power_quality must be true or false")
    return {"creep_threshold_w": creep, "power_quality": settings["power_quality"]}


def build_image(
    *,
    vendor: str,
    model: str,
    hw_revision: str,
    version: str,
    security_version: int,
    settings: dict[str, int | bool] | None = None,
    payload_size: int = 64 * 1024,
    selftest: str = "pass",
) -> bytes:
    """A new image's bytes.

    Raises:
        InvalidValueError: a name, version, security version, setting or size out of range.
    """
    for label, value in (("vendor", vendor), ("model", model), ("hw_revision", hw_revision)):
        if not _NAME.match(value):
            raise InvalidValueError(f"{label} must be 1-40 letters, digits or ._+-")
    if not _VERSION.match(version):
        raise InvalidValueError("version must look like 1.2.3")
    if type(security_version) is not int or not 0 <= security_version < 2**31:
        raise InvalidValueError("security_version must be an integer of 0..2^31-1")
    if selftest not in ("pass", "fail"):
        raise InvalidValueError("selftest must be pass or fail")
    if not 1 <= payload_size <= MAX_IMAGE - MAX_MANIFEST - 9:
        raise InvalidValueError("payload_size out of range")
    payload = _payload(vendor, model, version, payload_size)
    manifest = Manifest(
        vendor,
        model,
        hw_revision,
        version,
        security_version,
        hashlib.sha256(payload).hexdigest(),
        _check_settings(dict(DEFAULT_SETTINGS if settings is None else settings)),
        selftest,
    )
    body = json.dumps(manifest.to_json(), sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + bytes([FORMAT]) + struct.pack(">I", len(body)) + body + payload


def parse_image(data: bytes) -> FirmwareImage:
    """Parse and check an image's bytes: magic, format, manifest, payload hash, settings.

    Raises:
        DecodeError: not an image, truncated, over-long, a manifest that does not parse or a
            payload whose hash is not the manifest's.
    """
    if len(data) > MAX_IMAGE:
        raise DecodeError(f"image of {len(data)} bytes exceeds {MAX_IMAGE}")
    if len(data) < 9 or data[:4] != MAGIC or data[4] != FORMAT:
        raise DecodeError("not a meterguard firmware image")
    (length,) = struct.unpack(">I", data[5:9])
    if length > MAX_MANIFEST or 9 + length > len(data):
        raise DecodeError("image manifest length out of range")
    try:
        doc = json.loads(data[9 : 9 + length])
        manifest = Manifest(
            vendor=str(doc["vendor"]),
            model=str(doc["model"]),
            hw_revision=str(doc["hw_revision"]),
            version=str(doc["version"]),
            security_version=int(doc["security_version"]),
            payload_sha256=str(doc["payload_sha256"]),
            settings=_check_settings(dict(doc["settings"])),
            selftest=str(doc["selftest"]),
        )
    except (ValueError, KeyError, TypeError, InvalidValueError) as exc:
        raise DecodeError("image manifest does not parse") from exc
    if not _VERSION.match(manifest.version):
        raise DecodeError("image manifest version does not parse")
    payload = data[9 + length :]
    if hashlib.sha256(payload).hexdigest() != manifest.payload_sha256:
        raise DecodeError("image payload does not match its manifest")
    return FirmwareImage(manifest, payload, bytes(data))
