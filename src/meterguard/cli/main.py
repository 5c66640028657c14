"""``meterguard`` command-line entry point: the root group and its commands.

The commands live by area — :mod:`~meterguard.cli.protocol`, :mod:`~meterguard.cli.devices`,
:mod:`~meterguard.cli.operations`, :mod:`~meterguard.cli.demo` — over the helpers of
:mod:`~meterguard.cli.common`.

Each command parses its options, builds library objects and prints; the work
happens in the library. Keys given on the command line (or in ``MG_EK``,
``MG_AK``, ``MG_KEK`` — prefer the environment: argv is visible to other
users) are never echoed back.

Commands: ``meterguard cosem decode`` (the trace tool), ``meterguard meter serve``
(one meter over DLMS/TCP) and ``meterguard fleet run`` (many meters, accelerated).
"""

from __future__ import annotations

import click

from meterguard import __version__
from meterguard.cli.analytics import analytics
from meterguard.cli.attack import attack
from meterguard.cli.demo import demo
from meterguard.cli.devices import fleet, meter
from meterguard.cli.firmware import firmware
from meterguard.cli.operations import audit, bill, broker, ingest, pki, status
from meterguard.cli.privacy import privacy
from meterguard.cli.protocol import cosem, read

__all__ = ["main"]


@click.group()
@click.version_option(__version__, prog_name="meterguard")
def main() -> None:
    """meterguard: secure smart metering, DLMS/COSEM meters and head-end."""


for _command in (
    cosem,
    read,
    meter,
    fleet,
    firmware,
    pki,
    broker,
    status,
    audit,
    bill,
    ingest,
    demo,
    analytics,
    privacy,
    attack,
):
    main.add_command(_command)
