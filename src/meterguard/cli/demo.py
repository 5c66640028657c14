"""``meterguard demo``: the whole system on this machine, with a live status table.

Each command parses its options, calls the library and prints; see :mod:`meterguard.cli.main`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meterguard.cli.common import SPEED_OPTION, _stop_on_signals
from meterguard.errors import MeterguardError

if TYPE_CHECKING:
    pass

STATUS_EVERY = 10.0
"""Seconds between status lines when the output is not a terminal."""


@click.command("demo")
@click.option(
    "--data",
    "data",
    default="./meterguard-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where everything is kept.",
)
@click.option(
    "--meters",
    default=200,
    show_default=True,
    type=click.IntRange(1, 5000),
    help="Meters in the fleet (one in every 21 is a feeder meter, at the end).",
)
@SPEED_OPTION
@click.option(
    "--duration", type=click.FloatRange(min=0.0), help="Run this many seconds, then exit 0."
)
@click.option(
    "--db", help="Database URL (default: SQLite in the data directory), e.g. postgresql://…"
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(0, 1),
    help="In-process ingest workers; 0 to run `meterguard ingest run` separately.",
)
@click.option(
    "--history-days",
    default=28,
    show_default=True,
    type=click.IntRange(0, 56),
    help="A new fleet starts this many simulated days back (history for theft scoring); with "
    "--workers 0 start `ingest run` first, or the catch-up waits in the meters' outboxes.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Where the dashboard and API listen (another address exposes them to the network).",
)
@click.option(
    "--port",
    default=0,
    type=click.IntRange(0, 65535),
    help="The dashboard's port [default: the one this data directory used last, else 8443,"
    " else any free port].",
)
def demo(
    data: Path,
    meters: int,
    speed: float,
    duration: float | None,
    db: str | None,
    workers: int,
    history_days: int,
    host: str,
    port: int,
) -> None:
    """Bring up CA, broker, head-end and a meter fleet on this machine; Ctrl-C stops it."""
    import time

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from meterguard.demo import DemoConfig, DemoSystem
    from meterguard.logs import log_json_to

    log_json_to(data / "logs" / "meterguard.jsonl")

    console = Console()
    system = DemoSystem(
        DemoConfig(
            data=data,
            meters=meters,
            speed=speed,
            db=db,
            workers=workers,
            history_days=history_days,
            web_host=host,
            web_port=port,
        )
    )
    stopping = _stop_on_signals()
    try:
        with console.status(f"starting PKI, broker, head-end and {meters} meters in {data} ..."):
            system.start(now=dt.datetime.now(dt.UTC))
    except MeterguardError as exc:  # one line; whatever had started is stopped already
        raise click.ClickException(str(exc)) from None
    assert system.fleet is not None and system.broker is not None  # noqa: S101
    layout = system.broker.layout
    console.print(
        f"[bold]meterguard demo[/] data in {data}; "
        f"broker devices {layout.host}:{layout.device_port}, "
        f"head-end {layout.host}:{layout.service_port}; database {system.config.db_url}"
    )
    console.print(
        f"tamper from another shell: meterguard meter tamper MGD0000000001 cover-open --data {data}"
    )
    console.print(
        f"[bold]dashboard: https://{'localhost' if host == '127.0.0.1' else host}:"
        f"{system.web_port}/login[/] "
        f"(API under /api/v1; TLS certificate from {data}/pki/root/root.pem)\n"
        f"log in as alice (consumer), olga (operator) or erik (engineer): passwords and the "
        f"TOTP enrolment URIs of olga and erik are in {data}/web/demo-accounts.txt (mode 0600). "
        f"A critical command proposed by olga must be approved by erik (or the reverse). "
        f"Utility users may add a security key or passkey (WebAuthn) on their dashboard."
    )
    console.print(
        f"metrics: /metrics (Prometheus; bearer token in {data}/web/metrics-token, or an"
        f" operator's session); health: /healthz; JSON logs: {data}/logs/meterguard.jsonl"
    )
    started = time.monotonic()
    meter_time = system.meter_time  # the fleet's clock, not the wall's
    assert meter_time is not None  # noqa: S101
    last_readings, last_t = 0, started

    def table() -> Table:
        nonlocal last_readings, last_t
        s = system.status()
        now = time.monotonic()
        rate = (s.get("readings", 0) - last_readings) / max(now - last_t, 1e-6)
        last_readings, last_t = s.get("readings", 0), now
        sim = system.fleet.now.isoformat(timespec="minutes") if system.fleet else ""
        t = Table(title=f"simulated {sim}")
        for col in (
            "meters online",
            "readings",
            "readings/s",
            "alarms",
            "security events",
            "rejected",
        ):
            t.add_column(col, justify="right")
        t.add_row(
            f"{s.get('meters_online', 0)}/{meters}",
            str(s.get("readings", 0)),
            f"{rate:.0f}",
            str(s.get("alarms", 0)),
            str(s.get("security_events", 0)),
            str(s.get("rejected_messages", 0)),
        )
        return t

    last_line = started - STATUS_EVERY  # the first line at once
    try:
        with Live(
            table(), console=console, refresh_per_second=2, transient=not console.is_terminal
        ) as live:
            while not stopping.is_set():
                elapsed = time.monotonic() - started
                if duration is not None and elapsed >= duration:
                    break
                system.tick(meter_time.now())
                for line in system.log:
                    console.print(line)
                system.log.clear()
                live.update(table())
                if not console.is_terminal and time.monotonic() - last_line >= STATUS_EVERY:
                    # A log file or a pipe gets no live table: a status line now and then.
                    last_line = time.monotonic()
                    console.print(f"status {elapsed:.0f} s: {json.dumps(system.status())}")
                time.sleep(0.5)
    finally:
        system.stop()
    console.print(f"stopped; status: {json.dumps(system.status())}")
