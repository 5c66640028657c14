"""The head-end's signed firmware repository (FW-1), over python-tuf's Metadata API.

Four roles with keys of their own (Ed25519, threshold 1): **root** and **targets** are
*offline* keys — PEM files in a directory of their own (``--offline DIR``: a removable disk or a
machine that is not the head-end; a PKCS#11 token would hold them the same way through
securesystemslib's HSM signer) — and **snapshot** and **timestamp** are *online* at the
head-end. The timestamp expires after :data:`EXPIRY` ``["timestamp"]`` (one day) and is re-signed
on a schedule (:meth:`FirmwareRepository.refresh_timestamp`), so a meter that is fed an old
timestamp notices within a day (FW-5).

Layout of the repository directory (what the firmware endpoint serves is ``metadata/`` and
``targets/``; consistent snapshots, so a meter fetching during a publish sees one state)::

    REPO/
      metadata/     1.root.json … N.root.json, root.json, timestamp.json,
                    V.snapshot.json, V.targets.json
      targets/      <sha256>.<image name>
      keys/         snapshot.pem, timestamp.pem (online, 0600)
      offline/      root.pem, targets.pem unless --offline names another directory

Each image's target entry carries signed custom fields (vendor, model, hardware revision,
version, security version, the image's settings and the bootloader it expects): the meter checks
them before it downloads a byte (FW-9, FW-8), and the head-end takes its attestation reference
values from them (FW-11). A role key rotation writes root N+1 — signed by the old and the new
root key when root itself rotates — so deployed meters follow it (FW-13).

This module does the repository's file work and signing; it serves nothing (the endpoint is
:mod:`meterguard.headend.api.firmware`) and keeps no schedule (the head-end calls
:meth:`~FirmwareRepository.refresh_timestamp`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from meterguard.errors import ConfigurationError, ConflictError, DecodeError, NotFoundError
from meterguard.files import atomic_file
from meterguard.firmware.image import MAX_IMAGE, image_name, parse_image

__all__ = [
    "EXPIRY",
    "OFFLINE_ROLES",
    "ONLINE_ROLES",
    "REFRESH_MARGIN",
    "ROLES",
    "FirmwareRepository",
    "RoleState",
    "TargetEntry",
    "bootloader_hash",
]

ROLES = ("root", "targets", "snapshot", "timestamp")
OFFLINE_ROLES = ("root", "targets")
ONLINE_ROLES = ("snapshot", "timestamp")
EXPIRY: dict[str, dt.timedelta] = {
    "root": dt.timedelta(days=365),
    "targets": dt.timedelta(days=90),
    "snapshot": dt.timedelta(days=7),
    "timestamp": dt.timedelta(days=1),
}
"""How long each role's metadata is valid after it is signed."""
REFRESH_MARGIN = dt.timedelta(hours=12)
"""The schedule re-signs the timestamp when it expires sooner than this."""

_SERIALIZER = JSONSerializer(compact=False)


def bootloader_hash(vendor: str, model: str, hw_revision: str) -> str:
    """The hash of the (immutable, ROM) bootloader of one hardware revision.

    A meter's first boot stage is burnt in at the factory and never updated; the simulation
    derives it from the hardware's identity, and the repository signs it into each target so
    the head-end has a reference value for the measured boot's first stage (FW-11).
    """
    return hashlib.sha256(f"bootloader/{vendor}/{model}/{hw_revision}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TargetEntry:
    """One published image: its target name, hash, length and signed custom fields."""

    name: str
    sha256: str
    length: int
    custom: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RoleState:
    """One role as published: version, expiry and key ids (never key material)."""

    role: str
    version: int
    expires: dt.datetime
    keyids: tuple[str, ...]
    online: bool


def _utc(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise ConfigurationError("repository times must be timezone-aware")
    return now.astimezone(dt.UTC).replace(microsecond=0)


class FirmwareRepository:
    """A TUF repository in a directory (see the module docstring for its layout)."""

    def __init__(self, path: Path, *, offline: Path | None = None) -> None:
        self.path = path
        self.offline = offline if offline is not None else path / "offline"
        if not (self.metadata_dir / "root.json").exists():
            raise NotFoundError(f"no firmware repository at {path} (create one first)")

    def __repr__(self) -> str:
        return f"FirmwareRepository({str(self.path)!r})"

    # -- paths --------------------------------------------------------------------------------

    @property
    def metadata_dir(self) -> Path:
        """The served metadata."""
        return self.path / "metadata"

    @property
    def targets_dir(self) -> Path:
        """The served images (``<sha256>.<name>``)."""
        return self.path / "targets"

    def _key_path(self, role: str) -> Path:
        if role in OFFLINE_ROLES:
            return self.offline / f"{role}.pem"
        return self.path / "keys" / f"{role}.pem"

    # -- creation -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls, path: Path, *, now: dt.datetime, offline: Path | None = None
    ) -> FirmwareRepository:
        """A new repository: four role keys, root v1, empty targets, snapshot, timestamp.

        Raises:
            ConflictError: a repository already exists at ``path``.
        """
        now = _utc(now)
        if (path / "metadata" / "root.json").exists():
            raise ConflictError(f"a firmware repository already exists at {path}")
        offline_dir = offline if offline is not None else path / "offline"
        for d in (path / "metadata", path / "targets", path / "keys", offline_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        root = Metadata(Root(expires=now + EXPIRY["root"], consistent_snapshot=True))
        signers: dict[str, CryptoSigner] = {}
        for role in ROLES:
            signer = CryptoSigner(Ed25519PrivateKey.generate())
            key_path = (offline_dir if role in OFFLINE_ROLES else path / "keys") / f"{role}.pem"
            with atomic_file(key_path) as f:
                f.write(_private_pem(signer))
            root.signed.add_key(signer.public_key, role)
            signers[role] = signer
        root.sign(signers["root"])
        repo = cls.__new__(cls)
        repo.path, repo.offline = path, offline_dir
        with repo._locked():
            repo._write_root(root)
            targets = Metadata(Targets(expires=now + EXPIRY["targets"]))
            targets.sign(signers["targets"])
            repo._write_versioned(targets)
            repo._publish(now, signers["snapshot"], signers["timestamp"])
        return repo

    # -- reading ------------------------------------------------------------------------------

    def _load(self, role: str) -> Metadata[Any]:
        if role in ("root", "timestamp"):
            return Metadata.from_file(str(self.metadata_dir / f"{role}.json"))
        if role == "snapshot":
            version = self._timestamp().signed.snapshot_meta.version
        else:
            version = self._snapshot().signed.meta["targets.json"].version
        return Metadata.from_file(str(self.metadata_dir / f"{version}.{role}.json"))

    def _root(self) -> Metadata[Root]:
        md = self._load("root")
        _expect(md.signed, Root)
        return md

    def _timestamp(self) -> Metadata[Timestamp]:
        md: Metadata[Timestamp] = Metadata.from_file(str(self.metadata_dir / "timestamp.json"))
        _expect(md.signed, Timestamp)
        return md

    def _snapshot(self) -> Metadata[Snapshot]:
        md = self._load("snapshot")
        _expect(md.signed, Snapshot)
        return md

    def _targets(self) -> Metadata[Targets]:
        md = self._load("targets")
        _expect(md.signed, Targets)
        return md

    def root_bytes(self, version: int | None = None) -> bytes:
        """Root metadata as meters ship with it (``bootstrap=``): the latest, or ``version``.

        Raises:
            NotFoundError: no such root version.
        """
        path = self.metadata_dir / ("root.json" if version is None else f"{version}.root.json")
        if not path.exists():
            raise NotFoundError(f"no root version {version}")
        return path.read_bytes()

    def roles(self) -> list[RoleState]:
        """The four roles as published."""
        root = self._root().signed
        out = []
        for role in ROLES:
            md = self._load(role).signed
            out.append(
                RoleState(
                    role,
                    md.version,
                    md.expires,
                    tuple(root.roles[role].keyids),
                    role in ONLINE_ROLES,
                )
            )
        return out

    def targets(self) -> list[TargetEntry]:
        """Every published image, by name."""
        targets = self._targets().signed
        return [
            TargetEntry(name, tf.hashes["sha256"], tf.length, dict(tf.custom or {}))
            for name, tf in sorted(targets.targets.items())
        ]

    def target(self, name: str) -> TargetEntry:
        """One published image's entry.

        Raises:
            NotFoundError: no image of that name.
        """
        for entry in self.targets():
            if name in (entry.name, entry.sha256):
                return entry
        raise NotFoundError(f"no firmware image {name!r} in the repository")

    def image_bytes(self, name: str) -> bytes:
        """A published image's bytes."""
        entry = self.target(name)
        return (self.targets_dir / f"{entry.sha256}.{entry.name}").read_bytes()

    # -- changes (each under the repository's lock) ---------------------------------------------

    def add_image(self, data: bytes, *, now: dt.datetime) -> TargetEntry:
        """Sign an image into targets (offline targets key) and publish snapshot and timestamp.

        Raises:
            DecodeError: the bytes are not a valid image.
            ConflictError: an image of that name is published already.
            ConfigurationError: the offline targets key is not reachable.
        """
        now = _utc(now)
        if len(data) > MAX_IMAGE:
            raise DecodeError(f"image of {len(data)} bytes exceeds {MAX_IMAGE}")
        image = parse_image(data)
        m = image.manifest
        name = image_name(m.vendor, m.model, m.hw_revision, m.version)
        with self._locked():
            targets = self._targets()
            if name in targets.signed.targets:
                raise ConflictError(f"image {name} is already published")
            signers = {role: self._signer(role) for role in ("targets", "snapshot", "timestamp")}
            custom = {
                **m.identity(),
                "settings": dict(m.settings),
                "bootloader_sha256": bootloader_hash(m.vendor, m.model, m.hw_revision),
            }
            tf = TargetFile.from_data(name, data, ["sha256"])
            tf.unrecognized_fields["custom"] = custom
            digest = tf.hashes["sha256"]
            with atomic_file(self.targets_dir / f"{digest}.{name}") as f:
                f.write(data)
            os.chmod(self.targets_dir / f"{digest}.{name}", 0o644)
            targets.signed.targets[name] = tf
            targets.signed.version += 1
            targets.signed.expires = now + EXPIRY["targets"]
            targets.sign(signers["targets"])
            self._write_versioned(targets)
            self._publish(now, signers["snapshot"], signers["timestamp"])
        return TargetEntry(name, digest, len(data), custom)

    def publish(self, *, now: dt.datetime) -> None:
        """Re-sign snapshot and timestamp (online keys) over the current targets."""
        with self._locked():
            self._publish(_utc(now), self._signer("snapshot"), self._signer("timestamp"))

    def refresh_timestamp(self, *, now: dt.datetime) -> int:
        """Re-sign the timestamp with a new version and expiry (the schedule's job); its version."""
        now = _utc(now)
        with self._locked():
            ts = self._timestamp()
            ts.signed.version += 1
            ts.signed.expires = now + EXPIRY["timestamp"]
            ts.sign(self._signer("timestamp"))
            self._write(self.metadata_dir / "timestamp.json", ts)
            return ts.signed.version

    def refresh_timestamp_if_due(self, *, now: dt.datetime) -> int | None:
        """Re-sign the timestamp when it expires within :data:`REFRESH_MARGIN`; its version."""
        expires = self._timestamp().signed.expires
        if expires - _utc(now) >= REFRESH_MARGIN:
            return None
        return self.refresh_timestamp(now=now)

    def rotate(self, role: str, *, now: dt.datetime) -> int:
        """Give ``role`` a new key; writes root N+1 and re-signs what the new key signs.

        Root N+1 is signed by the current root key; when root itself rotates, by the old and the
        new root key (a meter trusting root N accepts N+1 only with the old key's signature, and
        N+1 must verify under its own keys too). The old key file is destroyed. Returns the new
        root version.

        Raises:
            ConfigurationError: an unknown role, or the offline root key is not reachable.
        """
        if role not in ROLES:
            raise ConfigurationError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        now = _utc(now)
        with self._locked():
            root = self._root()
            old_root = self._signer("root")
            new = CryptoSigner(Ed25519PrivateKey.generate())
            for keyid in list(root.signed.roles[role].keyids):
                root.signed.revoke_key(keyid, role)
            root.signed.add_key(new.public_key, role)
            root.signed.version += 1
            root.signed.expires = now + EXPIRY["root"]
            root.signatures.clear()
            if role == "root":
                root.sign(old_root, append=True)
                root.sign(new, append=True)
            else:
                root.sign(old_root)
            key_path = self._key_path(role)
            with atomic_file(key_path.with_suffix(".new")) as f:
                f.write(_private_pem(new))
            self._write_root(root)
            os.replace(key_path.with_suffix(".new"), key_path)
            if role == "targets":
                targets = self._targets()
                targets.signed.version += 1
                targets.signed.expires = now + EXPIRY["targets"]
                targets.sign(new)
                self._write_versioned(targets)
            if role != "root":
                self._publish(now, self._signer("snapshot"), self._signer("timestamp"))
            return root.signed.version

    # -- internals ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _signer(self, role: str) -> CryptoSigner:
        path = self._key_path(role)
        if not path.exists():
            where = "offline key directory (--offline)" if role in OFFLINE_ROLES else "keys/"
            raise ConfigurationError(f"the {role} key is not in the {where}: {path.parent}")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError(f"the {role} key is not an Ed25519 key")
        signer = CryptoSigner(key)
        root = Metadata[Root].from_file(str(self.metadata_dir / "root.json")).signed
        if signer.public_key.keyid not in root.roles[role].keyids:
            raise ConfigurationError(f"the {role} key file does not hold {role}'s current key")
        return signer

    def _publish(
        self, now: dt.datetime, snapshot_signer: CryptoSigner, timestamp_signer: CryptoSigner
    ) -> None:
        targets_version = max(
            (int(p.name.split(".")[0]) for p in self.metadata_dir.glob("*.targets.json")),
            default=1,
        )
        first = not (self.metadata_dir / "timestamp.json").exists()
        if first:
            snap = Metadata(Snapshot(expires=now))
        else:
            snap = self._snapshot()
            snap.signed.version += 1
        snap.signed.meta["targets.json"] = MetaFile(version=targets_version)
        snap.signed.expires = now + EXPIRY["snapshot"]
        snap.sign(snapshot_signer)
        self._write_versioned(snap)
        if first:
            ts = Metadata(Timestamp(expires=now))
        else:
            ts = self._timestamp()
            ts.signed.version += 1
        ts.signed.snapshot_meta = MetaFile(version=snap.signed.version)
        ts.signed.expires = now + EXPIRY["timestamp"]
        ts.sign(timestamp_signer)
        self._write(self.metadata_dir / "timestamp.json", ts)

    def _write(self, path: Path, md: Metadata[Any]) -> None:
        with atomic_file(path) as f:
            f.write(md.to_bytes(_SERIALIZER))
        os.chmod(path, 0o644)

    def _write_versioned(self, md: Metadata[Any]) -> None:
        self._write(self.metadata_dir / f"{md.signed.version}.{md.signed.type}.json", md)

    def _write_root(self, root: Metadata[Root]) -> None:
        self._write(self.metadata_dir / f"{root.signed.version}.root.json", root)
        self._write(self.metadata_dir / "root.json", root)


def _expect(signed: object, kind: type[Any]) -> None:
    if not isinstance(signed, kind):
        raise DecodeError(f"repository metadata is not {kind.__name__}")


def _private_pem(signer: CryptoSigner) -> bytes:
    return signer.private_bytes
