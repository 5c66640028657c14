"""``meterguard firmware``: build images, and keep the signed update repository (FW-1, FW-13).

``build`` writes an image file; ``create`` makes a repository with its four role keys (and
the factory image); ``add`` signs an image into targets (offline targets key); ``publish``
re-signs snapshot and timestamp; ``timestamp`` re-signs the timestamp, once or on a schedule;
``rotate`` gives a role a new key (root N+1); ``show`` prints what is published. Every rule is
in :mod:`meterguard.firmware.repository`; this module parses options and prints.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from meterguard.cli.common import _guarded, _stop_on_signals

__all__ = ["firmware"]

REPO_OPTION = click.option(
    "--repo",
    "repo",
    default="./meterguard-demo/firmware",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The firmware repository's directory.",
)
OFFLINE_OPTION = click.option(
    "--offline",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the offline root and targets keys are (default: REPO/offline).",
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@click.group()
def firmware() -> None:
    """Firmware images and the signed update repository (TUF)."""


@firmware.command("build")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--version", "version", required=True, help="Image version, e.g. 1.1.0.")
@click.option(
    "--security-version",
    required=True,
    type=click.IntRange(0, 2**31 - 1),
    help="Anti-rollback version: meters refuse images below their counter.",
)
@click.option("--vendor", default="MGD", show_default=True, help="Vendor the image is for.")
@click.option("--model", default="MG-1", show_default=True, help="Meter model it is for.")
@click.option("--hw-revision", default="A", show_default=True, help="Hardware revision.")
@click.option(
    "--creep",
    "creep",
    default=0,
    show_default=True,
    type=click.IntRange(0, 50),
    help="No-load threshold in W (the metrology constant the image sets).",
)
@click.option(
    "--power-quality/--no-power-quality",
    default=False,
    show_default=True,
    help="The feature flag the image sets (voltage in the meter's status).",
)
@click.option(
    "--selftest",
    type=click.Choice(["pass", "fail"]),
    default="pass",
    show_default=True,
    help="Simulate a build whose trial-boot self-test fails.",
)
@click.option(
    "--size",
    default=64 * 1024,
    show_default=True,
    type=click.IntRange(1, 4_000_000),
    help="Payload bytes.",
)
def firmware_build(
    out: Path,
    version: str,
    security_version: int,
    vendor: str,
    model: str,
    hw_revision: str,
    creep: int,
    power_quality: bool,
    selftest: str,
    size: int,
) -> None:
    """Write a firmware image (manifest and payload) to OUT."""
    from meterguard.firmware.image import build_image, parse_image

    data = _guarded(
        lambda: build_image(
            vendor=vendor,
            model=model,
            hw_revision=hw_revision,
            version=version,
            security_version=security_version,
            settings={"creep_threshold_w": creep, "power_quality": power_quality},
            payload_size=size,
            selftest=selftest,
        )
    )
    out.write_bytes(data)
    click.echo(f"{out}: {len(data)} bytes, sha256 {parse_image(data).sha256}")


@firmware.command("create")
@REPO_OPTION
@OFFLINE_OPTION
@click.option(
    "--factory/--no-factory",
    default=True,
    show_default=True,
    help="Sign in the image meters leave the factory with (1.0.0).",
)
def firmware_create(repo: Path, offline: Path | None, factory: bool) -> None:
    """Create a repository: root, targets, snapshot and timestamp keys; root v1."""
    from meterguard.firmware.repository import FirmwareRepository
    from meterguard.meter.firmware import Hardware, factory_image

    created = _guarded(lambda: FirmwareRepository.create(repo, now=_now(), offline=offline))
    if factory:
        entry = _guarded(lambda: created.add_image(factory_image(Hardware()), now=_now()))
        click.echo(f"signed the factory image {entry.name}")
    click.echo(f"created {repo}; the offline keys are in {created.offline}: move them to")
    click.echo("a machine or token that is not the head-end, and pass --offline to use them.")


@firmware.command("add")
@click.argument("image", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@REPO_OPTION
@OFFLINE_OPTION
def firmware_add(image: Path, repo: Path, offline: Path | None) -> None:
    """Sign IMAGE into targets (offline targets key) and publish snapshot and timestamp."""
    from meterguard.firmware.repository import FirmwareRepository

    r = _guarded(lambda: FirmwareRepository(repo, offline=offline))
    entry = _guarded(lambda: r.add_image(image.read_bytes(), now=_now()))
    click.echo(f"published {entry.name} ({entry.length} bytes, sha256 {entry.sha256})")


@firmware.command("publish")
@REPO_OPTION
def firmware_publish(repo: Path) -> None:
    """Re-sign snapshot and timestamp (online keys)."""
    from meterguard.firmware.repository import FirmwareRepository

    r = _guarded(lambda: FirmwareRepository(repo))
    _guarded(lambda: r.publish(now=_now()))
    click.echo("published snapshot and timestamp")


@firmware.command("timestamp")
@REPO_OPTION
@click.option(
    "--every",
    type=click.FloatRange(min=1.0),
    default=None,
    help="Re-sign every this many seconds until interrupted (default: once).",
)
def firmware_timestamp(repo: Path, every: float | None) -> None:
    """Re-sign the timestamp (short expiry: meters treat an expired one as a freeze)."""
    from meterguard.firmware.repository import FirmwareRepository

    r = _guarded(lambda: FirmwareRepository(repo))
    stop = _stop_on_signals() if every is not None else None
    while True:
        version = _guarded(lambda: r.refresh_timestamp(now=_now()))
        click.echo(f"timestamp v{version}")
        if stop is None or every is None or stop.wait(every):
            return


@firmware.command("rotate")
@click.argument("role", type=click.Choice(["root", "targets", "snapshot", "timestamp"]))
@REPO_OPTION
@OFFLINE_OPTION
def firmware_rotate(role: str, repo: Path, offline: Path | None) -> None:
    """Give ROLE a new key: root N+1 (signed by the old and new root key for root)."""
    from meterguard.firmware.repository import FirmwareRepository

    r = _guarded(lambda: FirmwareRepository(repo, offline=offline))
    version = _guarded(lambda: r.rotate(role, now=_now()))
    click.echo(f"{role} has a new key; root is now v{version}")


@firmware.command("show")
@REPO_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def firmware_show(repo: Path, as_json: bool) -> None:
    """What the repository publishes: roles (version, expiry, key ids) and images."""
    from meterguard.firmware.repository import FirmwareRepository

    r = _guarded(lambda: FirmwareRepository(repo))
    roles, targets = r.roles(), r.targets()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "roles": [
                        {
                            "role": x.role,
                            "version": x.version,
                            "expires": x.expires.isoformat(),
                            "keyids": list(x.keyids),
                            "online": x.online,
                        }
                        for x in roles
                    ],
                    "images": [
                        {"name": t.name, "sha256": t.sha256, "length": t.length, **t.custom}
                        for t in targets
                    ],
                },
                indent=2,
            )
        )
        return
    for x in roles:
        where = "online" if x.online else "offline"
        click.echo(
            f"{x.role:10} v{x.version:<4} expires {x.expires:%Y-%m-%d %H:%M} UTC  "
            f"{where:7} key {x.keyids[0][:16]}"
        )
    for t in targets:
        c = t.custom
        click.echo(
            f"{t.name}  {c.get('version')} security {c.get('security_version')}  "
            f"{t.length} bytes  sha256 {t.sha256[:16]}"
        )
