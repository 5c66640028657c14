"""Protocol tools: ``cosem decode`` (the trace tool) and ``read`` (an on-demand DLMS read).

Each command parses its options, calls the library and prints; see :mod:`meterguard.cli.main`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meterguard.cli.common import _key, _lines
from meterguard.cosem.trace import TraceDecoder
from meterguard.errors import (
    AuthenticationFailedError,
    MeterguardError,
    SecurityError,
)

if TYPE_CHECKING:
    pass


@click.group()
def cosem() -> None:
    """DLMS/COSEM protocol tools."""


@cosem.command("decode")
@click.argument("apdu", required=False)
@click.option(
    "--file",
    "-f",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of hex APDUs or wrapper frames, one per line ('#' starts a comment).",
)
@click.option("--ek", envvar="MG_EK", help="Global unicast encryption key (hex) [env MG_EK].")
@click.option("--ak", envvar="MG_AK", help="Authentication key (hex) [env MG_AK].")
@click.option(
    "--kek", envvar="MG_KEK", help="Master key / KEK, to check key_transfer (hex) [env MG_KEK]."
)
@click.option("--dedicated-key", envvar="MG_DK", help="Dedicated key (hex) [env MG_DK].")
@click.option(
    "--system-title", help="Originator system title of service-specific APDUs (16 hex digits)."
)
def decode(
    apdu: str | None,
    path: Path | None,
    ek: str | None,
    ak: str | None,
    kek: str | None,
    dedicated_key: str | None,
    system_title: str | None,
) -> None:
    """Decode (and, with keys, decrypt and verify) DLMS APDUs or wrapper frames.

    A tag that does not verify prints "authentication failed", nothing decrypted,
    and exits with status 1.
    """
    title = None
    if system_title is not None:
        try:
            title = bytes.fromhex(system_title)
        except ValueError:
            raise click.BadParameter("not hex", param_hint="--system-title") from None
        if len(title) != 8:
            raise click.BadParameter("a system title is 8 bytes", param_hint="--system-title")
    decoder = TraceDecoder(
        unicast_key=_key(ek, "--ek"),
        authentication_key=_key(ak, "--ak"),
        master_key=_key(kek, "--kek"),
        dedicated_key=_key(dedicated_key, "--dedicated-key"),
        system_title=title,
    )
    if apdu is None and path is None:
        raise click.UsageError("give an APDU in hex or --file")
    if apdu is not None and path is not None:
        raise click.UsageError("give either an APDU or --file, not both")
    items = [apdu] if apdu is not None else _lines(path)
    failures = 0
    for n, item in enumerate(items, 1):
        if len(items) > 1:
            click.echo(f"--- {n}")
        try:
            lines = decoder.decode_hex(item)
        except AuthenticationFailedError as exc:
            failures += 1
            click.echo(f"error: authentication failed ({exc})", err=True)
            continue
        except SecurityError as exc:
            failures += 1
            click.echo(f"error: security check failed ({exc})", err=True)
            continue
        except MeterguardError as exc:
            failures += 1
            click.echo(f"error: {exc}", err=True)
            continue
        click.echo("\n".join(lines))
    if failures:
        sys.exit(1)


@click.command("read")
@click.argument("address")
@click.option("--ek", envvar="MG_EK", required=True, help="Meter's unicast key (hex) [env MG_EK].")
@click.option(
    "--ak", envvar="MG_AK", required=True, help="Meter's authentication key (hex) [env MG_AK]."
)
@click.option("--system-title", help="The meter's expected system title (16 hex digits).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def read(address: str, ek: str, ak: str, system_title: str | None, as_json: bool) -> None:
    """Read a meter on demand over DLMS/TCP at HOST:PORT (HLS-GMAC, counter bootstrap)."""
    from meterguard.cosem.trace import render
    from meterguard.headend.reader import read_meter

    host, _, port = address.rpartition(":")
    unicast, auth = _key(ek, "--ek"), _key(ak, "--ak")
    assert unicast is not None and auth is not None  # noqa: S101 - required options
    try:
        values = read_meter(
            host or "127.0.0.1",
            int(port),
            unicast_key=unicast,
            authentication_key=auth,
            expected_title=bytes.fromhex(system_title) if system_title else None,
        )
    except (MeterguardError, ValueError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    if as_json:
        click.echo(json.dumps({k: "\n".join(render(v)) for k, v in values.items()}))
        return
    for name, value in values.items():
        click.echo(f"{name}: " + " ".join(line.strip() for line in render(value)))
