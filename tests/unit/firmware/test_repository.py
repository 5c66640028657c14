"""FW-1, FW-13: the firmware repository's roles, keys, signed custom fields and rotations."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Targets, Timestamp

from meterguard.cli.main import main
from meterguard.errors import ConfigurationError, ConflictError, DecodeError, NotFoundError
from meterguard.firmware.image import build_image, parse_image
from meterguard.firmware.repository import EXPIRY, FirmwareRepository

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def _image(version: str = "2.0.0", sv: int = 2, **kw: object) -> bytes:
    return build_image(
        vendor="MGD", model="MG-1", hw_revision="A", version=version, security_version=sv, **kw
    )  # type: ignore[arg-type]


def test_four_roles_with_keys_of_their_own_and_a_short_timestamp(tmp_path: Path) -> None:
    repo = FirmwareRepository.create(tmp_path / "r", now=NOW)
    roles = {r.role: r for r in repo.roles()}
    keyids = [r.keyids for r in roles.values()]
    assert len({k for ks in keyids for k in ks}) == 4
    assert {r for r, x in roles.items() if x.online} == {"snapshot", "timestamp"}
    assert roles["timestamp"].expires - NOW == EXPIRY["timestamp"] <= dt.timedelta(days=1)
    assert sorted(p.name for p in (tmp_path / "r" / "offline").iterdir()) == [
        "root.pem",
        "targets.pem",
    ]
    assert sorted(p.name for p in (tmp_path / "r" / "keys").iterdir()) == [
        "snapshot.pem",
        "timestamp.pem",
    ]
    assert (tmp_path / "r" / "keys" / "timestamp.pem").stat().st_mode & 0o077 == 0
    with pytest.raises(ConflictError):
        FirmwareRepository.create(tmp_path / "r", now=NOW)
    assert "offline" not in repr(repo) and "pem" not in repr(repo)


def test_an_image_is_signed_with_its_custom_fields(tmp_path: Path) -> None:
    repo = FirmwareRepository.create(tmp_path / "r", now=NOW)
    data = _image(settings={"creep_threshold_w": 4, "power_quality": True})
    entry = repo.add_image(data, now=NOW)
    assert entry.sha256 == parse_image(data).sha256
    targets = Metadata[Targets].from_file(str(tmp_path / "r" / "metadata" / "2.targets.json"))
    root = Metadata[Root].from_file(str(tmp_path / "r" / "metadata" / "root.json"))
    root.verify_delegate("targets", targets)
    custom = targets.signed.targets[entry.name].custom
    assert custom["model"] == "MG-1" and custom["security_version"] == 2
    assert custom["settings"] == {"creep_threshold_w": 4, "power_quality": True}
    assert repo.image_bytes(entry.name) == data
    with pytest.raises(ConflictError):
        repo.add_image(data, now=NOW)
    with pytest.raises(DecodeError):
        repo.add_image(data[:-1], now=NOW)  # payload no longer matches its manifest
    with pytest.raises(DecodeError):
        repo.add_image(b"MZ\x90\x00" * 100, now=NOW)
    with pytest.raises(NotFoundError):
        repo.target("MGD-MG-1-A-9.9.9.mgfw")


def test_without_the_offline_keys_nothing_is_signed_or_written(tmp_path: Path) -> None:
    repo = FirmwareRepository.create(tmp_path / "r", now=NOW)
    shutil.move(tmp_path / "r" / "offline", tmp_path / "usb")
    before = sorted(p.name for p in (tmp_path / "r").rglob("*"))
    with pytest.raises(ConfigurationError, match="offline"):
        repo.add_image(_image(), now=NOW)
    with pytest.raises(ConfigurationError):
        repo.rotate("timestamp", now=NOW)
    assert sorted(p.name for p in (tmp_path / "r").rglob("*")) == before
    repo.refresh_timestamp(now=NOW)  # online: the head-end keeps re-signing
    offline = FirmwareRepository(tmp_path / "r", offline=tmp_path / "usb")
    offline.add_image(_image(), now=NOW)


def test_root_rotation_is_signed_by_the_old_and_the_new_root_key(tmp_path: Path) -> None:
    repo = FirmwareRepository.create(tmp_path / "r", now=NOW)
    old_key = (tmp_path / "r" / "offline" / "root.pem").read_bytes()
    assert repo.rotate("root", now=NOW) == 2
    v1 = Metadata[Root].from_bytes(repo.root_bytes(1))
    v2 = Metadata[Root].from_bytes(repo.root_bytes(2))
    v1.verify_delegate("root", v2)  # what a meter trusting v1 checks
    v2.verify_delegate("root", v2)  # and v2 under its own keys
    assert len(v2.signatures) == 2
    assert (tmp_path / "r" / "offline" / "root.pem").read_bytes() != old_key
    assert repo.rotate("timestamp", now=NOW) == 3
    v3 = Metadata[Root].from_bytes(repo.root_bytes(3))
    ts = Metadata[Timestamp].from_file(str(tmp_path / "r" / "metadata" / "timestamp.json"))
    v3.verify_delegate("timestamp", ts)
    with pytest.raises(UnsignedMetadataError, match="signed by 0/1 keys"):
        v1.verify_delegate("timestamp", ts)  # the old timestamp key no longer signs
    with pytest.raises(ConfigurationError):
        repo.rotate("bogus", now=NOW)


def test_cli_builds_publishes_and_shows(tmp_path: Path) -> None:
    runner = CliRunner()
    repo = str(tmp_path / "r")
    r = runner.invoke(main, ["firmware", "create", "--repo", repo])
    assert r.exit_code == 0, r.output
    img = tmp_path / "fw.bin"
    r = runner.invoke(
        main,
        [
            "firmware",
            "build",
            str(img),
            "--version",
            "1.1.0",
            "--security-version",
            "1",
            "--creep",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output
    assert runner.invoke(main, ["firmware", "add", str(img), "--repo", repo]).exit_code == 0
    r = runner.invoke(main, ["firmware", "add", str(img), "--repo", repo])
    assert r.exit_code == 1 and "already published" in r.output
    assert runner.invoke(main, ["firmware", "rotate", "timestamp", "--repo", repo]).exit_code == 0
    assert runner.invoke(main, ["firmware", "timestamp", "--repo", repo]).exit_code == 0
    shown = json.loads(runner.invoke(main, ["firmware", "show", "--repo", repo, "--json"]).output)
    assert [i["version"] for i in shown["images"]] == ["1.0.0", "1.1.0"]
    assert {x["role"]: x["version"] for x in shown["roles"]}["root"] == 2
    assert "PRIVATE" not in json.dumps(shown)
    r = runner.invoke(main, ["firmware", "show", "--repo", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no firmware repository" in r.output
