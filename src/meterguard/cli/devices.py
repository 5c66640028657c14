"""Meters: ``meter serve`` (one meter over DLMS/TCP), ``meter tamper``, ``fleet run``.

Each command parses its options, calls the library and prints; see :mod:`meterguard.cli.main`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meterguard.cli.common import (
    EXISTING_DATA_OPTION,
    SPEED_OPTION,
    _join,
    _key,
    _stop_on_signals,
)
from meterguard.errors import ConfigurationError, MeterguardError

if TYPE_CHECKING:
    from meterguard.meter.device import Meter


@click.group()
def meter() -> None:
    """The simulated smart meter."""


@meter.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=4059, show_default=True, type=int, help="TCP port (0 picks a free one)."
)
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory (keys, counters, log books); created on first start.",
)
@click.option("--system-title", help="16 hex digits; first start only (default MGD + serial 1).")
@click.option(
    "--ek", envvar="MG_EK", help="Global unicast key (hex), first start only [env MG_EK]."
)
@click.option(
    "--ak", envvar="MG_AK", help="Authentication key (hex), first start only [env MG_AK]."
)
@click.option(
    "--kek", envvar="MG_KEK", help="Master key / KEK (hex), first start only [env MG_KEK]."
)
@click.option(
    "--pdu", default=1024, show_default=True, type=int, help="Server max receive PDU size."
)
@click.option("--verbose", "-v", is_flag=True, help="Log connections and security events.")
def serve(
    host: str,
    port: int,
    state_dir: Path,
    system_title: str | None,
    ek: str | None,
    ak: str | None,
    kek: str | None,
    pdu: int,
    verbose: bool,
) -> None:
    """Run one meter serving DLMS/COSEM over TCP (wrapper) until interrupted."""
    from meterguard.clock import SystemClock
    from meterguard.meter.device import Meter, MeterIdentity
    from meterguard.meter.state import STATE_FILE, load_state

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    existing = load_state(state_dir / STATE_FILE)
    if existing is not None:
        title = bytes.fromhex(existing["system_title"])
        identity = MeterIdentity(existing["serial"], title, int(existing["seed"]))
        keys = existing["keys"]
        ek, ak, kek = keys["ek"], keys["ak"], keys["kek"]
    else:
        title = bytes.fromhex(system_title) if system_title else b"MGD" + (1).to_bytes(5, "big")
        if len(title) != 8:
            raise click.BadParameter("a system title is 8 bytes", param_hint="--system-title")
        if not (ek and ak and kek):
            raise click.UsageError(
                "first start needs --ek, --ak and --kek (or MG_EK, MG_AK, MG_KEK)"
            )
        serial = int.from_bytes(title[3:], "big")
        identity = MeterIdentity(f"{serial:010d}", title, serial)
    unicast, auth, master = _key(ek, "--ek"), _key(ak, "--ak"), _key(kek, "--kek")
    assert unicast is not None and auth is not None and master is not None  # noqa: S101
    device = Meter(
        identity,
        clock=SystemClock(),
        unicast_key=unicast,
        authentication_key=auth,
        master_key=master,
        state_dir=state_dir,
    )
    _serve_device(
        device, host, port, pdu, f"meter {identity.serial} (system title {title.hex().upper()})"
    )
    stopped = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    click.echo(f"meter {identity.serial} stopped at {stopped}")


def _serve_device(device: Meter, host: str, port: int, pdu: int, label: str) -> None:
    """Serve one meter over DLMS/TCP until SIGINT or SIGTERM; print where it listens."""
    from meterguard.meter.transport.tcp import DlmsTcpServer

    server = DlmsTcpServer(device, host=host, port=port, max_receive_pdu_size=pdu)

    async def run() -> None:
        bound_host, bound_port = await server.start()
        click.echo(f"{label} listening on {bound_host}:{bound_port}")
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(server.serve_forever())
        await stop.wait()
        task.cancel()
        await server.close()

    asyncio.run(run())


@click.group()
def fleet() -> None:
    """Many simulated meters in one process."""


@fleet.command("serve")
@click.argument("meter_id")
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The fleet's state directory (fleet.npz), e.g. DATA/fleet of a stopped demo.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, type=int, help="TCP port (0: a free one).")
@click.option(
    "--pdu", default=1024, show_default=True, type=int, help="Server max receive PDU size."
)
@click.option("--verbose", "-v", is_flag=True, help="Log connections and security events.")
def fleet_serve(
    meter_id: str, state_dir: Path, host: str, port: int, pdu: int, verbose: bool
) -> None:
    """Serve one fleet meter over DLMS/TCP, readable by any DLMS client with its keys.

    The same meter — identity, keys, consumption — that the fleet pushes for. It runs on
    the fleet's simulated clock from where the fleet stopped, at real speed, with invocation
    counters the fleet sets aside for it (never reused by the fleet's pushes).
    """
    from meterguard.clock import SimulatedClock
    from meterguard.identity import serial_of
    from meterguard.meter.fleet import FLEET_FILE, Fleet

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        serial = int(serial_of(meter_id))
        fleet = Fleet.load(state_dir / FLEET_FILE)
        index = serial - int(fleet.a["serial"][0])
        if not 0 <= index < len(fleet):
            raise ConfigurationError(f"no meter {meter_id} in the fleet in {state_dir}")
        device = fleet.device(
            index, clock=SimulatedClock(fleet.now), state_dir=state_dir / "served" / meter_id
        )
    except (MeterguardError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    _serve_device(device, host, port, pdu, f"fleet meter {meter_id}")


@fleet.command("run")
@click.option(
    "--meters",
    "count",
    default=200,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Meters to run.",
)
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory (fleet.npz: keys, counters, positions).",
)
@SPEED_OPTION
@click.option(
    "--duration", type=click.FloatRange(min=0.0), help="Stop after this many real seconds."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append every protected push as 'serial hex-apdu' lines to this file.",
)
def fleet_run(
    count: int, state_dir: Path, speed: float, duration: float | None, out: Path | None
) -> None:
    """Simulate the fleet on accelerated time; every 15-minute reading is a protected push."""
    import time

    from meterguard.meter.fleet import Fleet

    fleet_obj = Fleet.open(state_dir, count, now=dt.datetime.now(dt.UTC))
    sink = out.open("a", encoding="ascii") if out is not None else None
    pushes = 0

    def push(i: int, apdu: bytes) -> None:
        nonlocal pushes
        pushes += 1
        if sink is not None:
            sink.write(f"{int(fleet_obj.a['serial'][i]):010d} {apdu.hex()}\n")

    started = time.monotonic()
    sim_start = fleet_obj.now
    stopping = _stop_on_signals()
    click.echo(
        f"fleet of {len(fleet_obj)} meters "
        f"({fleet_obj.nbytes / len(fleet_obj):.0f} B each at rest), "
        f"simulated time {sim_start.isoformat(timespec='minutes')}, speed x{speed:g}"
    )
    try:
        while not stopping.is_set():
            elapsed = time.monotonic() - started
            if duration is not None and elapsed >= duration:
                break
            target = sim_start + dt.timedelta(seconds=elapsed * speed)
            stats = fleet_obj.step(target, push)
            lag = (target - fleet_obj.now).total_seconds()
            click.echo(
                f"sim {fleet_obj.now.isoformat(timespec='minutes')}  readings +{stats.readings}  "
                f"pushes {pushes}  lag {max(lag, 0):.0f}s"
            )
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started - elapsed)))
    finally:
        fleet_obj.save()
        if sink is not None:
            sink.close()
    click.echo(f"stopped; {pushes} protected pushes; state in {state_dir}")


@meter.command("tamper")
@click.argument("meter_id")
@click.argument("kind")
@EXISTING_DATA_OPTION
def meter_tamper(meter_id: str, kind: str, data: Path) -> None:
    """Fire a tamper sensor (e.g. cover-open, magnetic-field) on a meter of a running demo."""
    from meterguard.demo import request_tamper
    from meterguard.meter.device import TamperKind

    try:
        sensor = TamperKind.parse(kind)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="KIND") from None
    headend, _ = _join(data)
    if headend.store.registry.state(meter_id) is None:
        raise click.ClickException(f"no meter {meter_id[:20]} in the system in {data}")
    request_tamper(data, meter_id, sensor)
    click.echo(f"tamper {sensor.label} requested on {meter_id}")


def _known_meter(data: Path, meter_id: str) -> None:
    headend, _ = _join(data)
    if headend.store.registry.state(meter_id) is None:
        raise click.ClickException(f"no meter {meter_id[:20]} in the system in {data}")


@meter.command("steal")
@click.argument("meter_id")
@click.option(
    "--model",
    "model_name",
    default="h1",
    show_default=True,
    help="Theft model: h1..h6, zero, cap, subtract, progressive, intermittent, peakshift, "
    "band or profile (evasive).",
)
@click.option(
    "--evidence",
    default=0.3,
    show_default=True,
    type=click.FloatRange(0.0, 1.0),
    help="Probability that the theft leaves tamper evidence in the meter's logs.",
)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Seed of the model's parameters.")
@EXISTING_DATA_OPTION
def meter_steal(
    meter_id: str, model_name: str, evidence: float, seed: int | None, data: Path
) -> None:
    """Make a home of a running demo a thief: its meter reports per a theft model.

    The feeder meter keeps measuring what the home really draws; the demo keeps the ground
    truth. Undo with `meterguard meter honest`.
    """
    from meterguard.analytics.theft.attacks import model
    from meterguard.demo import request

    try:
        model(model_name)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--model") from None
    _known_meter(data, meter_id)
    payload: dict[str, object] = {"meter": meter_id, "steal": model_name, "evidence": evidence}
    if seed is not None:
        payload["seed"] = seed
    request(data, payload)
    click.echo(f"{meter_id} asked to steal ({model_name})")


@meter.command("honest")
@click.argument("meter_id")
@EXISTING_DATA_OPTION
def meter_honest(meter_id: str, data: Path) -> None:
    """A thief of a running demo registers honestly again."""
    from meterguard.demo import request

    _known_meter(data, meter_id)
    request(data, {"meter": meter_id, "honest": True})
    click.echo(f"{meter_id} asked to register honestly")


@meter.command("vacation")
@click.argument("meter_id")
@click.option(
    "--days",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1, 60.0),
    help="Simulated days the household is away.",
)
@EXISTING_DATA_OPTION
def meter_vacation(meter_id: str, days: float, data: Path) -> None:
    """The household of a running demo goes away: the home draws its base load (a confounder)."""
    from meterguard.demo import request

    _known_meter(data, meter_id)
    request(data, {"meter": meter_id, "vacation_days": days})
    click.echo(f"{meter_id}'s household away for {days:g} simulated days")


@meter.command("scenario")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@EXISTING_DATA_OPTION
def meter_scenario(file: Path, data: Path) -> None:
    """Apply a scenario file to a running demo: a JSON list of requests.

    Each entry names a ``meter`` and one of ``steal`` (a model, with optional ``evidence``
    and ``seed``), ``honest``, ``vacation_days`` or ``tamper`` (a sensor), e.g.
    ``[{"meter": "MGD0000000003", "steal": "h1"}, {"meter": "MGD0000000004",
    "vacation_days": 14}]``.
    """
    import json

    from meterguard.demo import REQUESTS, request

    try:
        entries = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"{file} is not JSON: {exc}") from None
    if not isinstance(entries, list) or len(entries) > 10_000:
        raise click.ClickException("a scenario is a JSON list of at most 10 000 requests")
    keys = set(REQUESTS)
    for n, e in enumerate(entries, start=1):
        if not isinstance(e, dict) or not isinstance(e.get("meter"), str):
            raise click.ClickException(f'entry {n}: an object with a "meter"')
        if len(keys & e.keys()) != 1:
            raise click.ClickException(f"entry {n}: exactly one of {', '.join(sorted(keys))}")
    for e in entries:
        _known_meter(data, e["meter"])
    for e in entries:
        request(data, e)
    click.echo(f"{len(entries)} requests sent to the demo in {data}")
