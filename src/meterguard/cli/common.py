"""Shared pieces of the CLI: options, keys, one-line errors, joining a running system.

Each command parses its options, calls the library and prints; see :mod:`meterguard.cli.main`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    ConfigurationError,
    MeterguardError,
)

if TYPE_CHECKING:
    from meterguard.system.config import RunInfo
    from meterguard.system.headend import HeadEnd


EXISTING_DATA_OPTION = click.option(
    "--data",
    "data",
    default="./meterguard-demo",
    show_default=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The data directory of a demo.",
)
SPEED_OPTION = click.option(
    "--speed",
    default=900.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Simulated seconds per real second.",
)


def _key(value: str | None, name: str) -> SecretKey | None:
    if value is None:
        return None
    try:
        return SecretKey.from_hex(value)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


T = TypeVar("T")


def _guarded(work: Callable[[], T]) -> T:
    """Run ``work``; a meterguard error becomes one clear line and exit 1, never a traceback."""
    try:
        return work()
    except MeterguardError as exc:
        raise click.ClickException(str(exc)) from None


def _run_info(data: Path) -> RunInfo:
    """What the system in ``data`` published (one line and exit 1 if there is none)."""
    from meterguard.system.config import RunInfo

    return _guarded(lambda: RunInfo.read(data))


def _join(data: Path) -> tuple[HeadEnd, RunInfo]:
    """The head-end of the system in ``data`` (its database, key store and PKI)."""
    from meterguard.system.headend import HeadEnd

    return _guarded(lambda: HeadEnd.join(data))


CLI_ROLE = "security_admin"
"""Whoever can run the CLI on a data directory holds its PKI and key-encryption key: the
lifecycle service treats them as a security administrator, and audits them by OS user."""


def _cli_actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"[:64]


def _stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, for long-running commands to stop cleanly."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        del signum, frame
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stopping


def _lines(path: Path | None) -> list[str]:
    assert path is not None  # noqa: S101 - checked by the caller
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            out.append(text)
    return out
