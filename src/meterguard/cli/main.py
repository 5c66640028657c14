"""``meterguard`` command-line entry point.

Each command parses its options, builds library objects and prints; the work
happens in the library. Keys given on the command line (or in ``MG_EK``,
``MG_AK``, ``MG_KEK`` — prefer the environment: argv is visible to other
users) are never echoed back.

Commands: ``meterguard cosem decode`` (the trace tool), ``meterguard meter serve``
(one meter over DLMS/TCP) and ``meterguard fleet run`` (many meters, accelerated).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from meterguard import __version__
from meterguard.cosem.trace import TraceDecoder
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    AuthenticationFailedError,
    ConfigurationError,
    MeterguardError,
    SecurityError,
)

if TYPE_CHECKING:
    from meterguard.system.config import RunInfo
    from meterguard.system.headend import HeadEnd

__all__ = ["main"]


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


@click.group()
@click.version_option(__version__, prog_name="meterguard")
def main() -> None:
    """meterguard: secure smart metering, DLMS/COSEM meters and head-end."""


@main.group()
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


@main.group()
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
    from meterguard.meter.transport.tcp import DlmsTcpServer

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
    server = DlmsTcpServer(device, host=host, port=port, max_receive_pdu_size=pdu)

    async def run() -> None:
        bound_host, bound_port = await server.start()
        click.echo(
            f"meter {identity.serial} (system title {title.hex().upper()}) "
            f"listening on {bound_host}:{bound_port}",
            err=False,
        )
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
    stopped = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    click.echo(f"meter {identity.serial} stopped at {stopped}")


@main.group()
def fleet() -> None:
    """Many simulated meters in one process."""


@fleet.command("run")
@click.option(
    "--meters", "count", default=200, show_default=True, type=click.IntRange(1, 1_000_000)
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


@main.group()
def pki() -> None:
    """The PKI: root, device and service CAs, meter enrolment, revocation."""


@pki.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def pki_init(directory: Path) -> None:
    """Create a root CA, a device CA and a service CA in DIRECTORY."""
    from meterguard.crypto.pki.store import Pki

    Pki.init(directory, now=dt.datetime.now(dt.UTC))
    click.echo(
        f"PKI created in {directory}; keep {directory / 'root' / 'root.key'} offline from now on"
    )


@pki.command("enroll")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--serial", required=True, help="10-digit meter serial.")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The meter's directory: its key is generated there and never leaves it.",
)
def pki_enroll(directory: Path, serial: str, out: Path) -> None:
    """Register SERIAL and enrol a meter: a factory certificate, then an operational one (EST)."""
    from cryptography import x509

    from meterguard.crypto.pki.authority import meter_id
    from meterguard.crypto.pki.store import Pki

    cert, _ = Pki.open(directory).enrol_meter(serial, out, now=dt.datetime.now(dt.UTC))
    operational = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    click.echo(
        f"meter {meter_id(serial)} enrolled: {cert} valid until "
        f"{operational.not_valid_after_utc.isoformat(timespec='minutes')}"
    )


@pki.command("service")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="Head-end worker name (its MQTT user name).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
def pki_service(directory: Path, name: str, out: Path) -> None:
    """Issue a head-end worker's client certificate (service CA)."""
    from meterguard.crypto.pki.store import Pki, pem

    store = Pki.open(directory)
    cert, key = store.issue_service_client(name, now=dt.datetime.now(dt.UTC), out=out)
    (out / "root.pem").write_bytes(pem(store.root))
    click.echo(f"service client {name}: {cert}, {key}")


@pki.command("revoke")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--serial", required=True, help="10-digit meter serial.")
def pki_revoke(directory: Path, serial: str) -> None:
    """Revoke every certificate of a meter and re-publish the CRL.

    When DIRECTORY is the PKI of a system's data directory, this is the same operation as
    `meterguard meter revoke` (and the API's): the meter is marked revoked in the head-end's
    registry, audited, refused by running ingest workers and the broker reloads its CRL.
    """
    from meterguard.identity import meter_id
    from meterguard.system.layout import DataLayout

    if DataLayout(directory.parent).info.exists():
        _move(directory.parent, _guarded(lambda: meter_id(serial)), "revoke")
        return
    from meterguard.crypto.pki.store import Pki

    store = Pki.open(directory)
    count = store.revoke_meter(serial, now=dt.datetime.now(dt.UTC))
    click.echo(f"revoked {count} certificate(s) of meter {serial}; CRL at {store.crl_path}")


def _move(data: Path, mid: str, action: str) -> None:
    """A lifecycle move through the one service the API also calls."""
    import time

    headend, _ = _join(data)
    state = _guarded(
        lambda: headend.meters.move(_cli_actor(), CLI_ROLE, mid, action, now=int(time.time()))
    )
    click.echo(
        f"meter {mid} is {state}; running ingest workers refuse its messages within seconds"
        + (
            "; its certificates are revoked and the broker reloads the CRL"
            if action in ("revoke", "decommission")
            else ""
        )
    )


def _lifecycle_command(action: str, summary: str) -> None:
    @meter.command(action, help=summary)
    @click.argument("meter_id")
    @EXISTING_DATA_OPTION
    def command(meter_id: str, data: Path) -> None:
        _move(data, meter_id, action)


for _action, _summary in (
    ("disable", "Refuse a meter's messages at ingest until it is enabled again."),
    ("enable", "Accept a disabled meter's messages again."),
    ("decommission", "Retire a meter: its certificates are revoked, its messages refused."),
    ("revoke", "Revoke a meter's certificates (a compromised meter): CRL, broker, ingest."),
):
    _lifecycle_command(_action, _summary)


@meter.command("provision")
@click.argument("serial")
@EXISTING_DATA_OPTION
def meter_provision(serial: str, data: Path) -> None:
    """Register a new meter by its 10-digit SERIAL: PKI record, DLMS keys, database, ingest."""
    import time

    headend, _ = _join(data)
    mid = _guarded(
        lambda: headend.meters.provision(_cli_actor(), CLI_ROLE, serial, now=int(time.time()))
    )
    click.echo(f"meter {mid} provisioned: it may enrol; its keys stay in the key store")


@main.group()
def broker() -> None:
    """The managed Mosquitto broker."""


@broker.command("run")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Broker directory (configuration, server certificate, log).",
)
@click.option("--pki", "pki_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--device-port", default=8883, show_default=True, type=int)
@click.option("--service-port", default=8884, show_default=True, type=int)
@click.option("--duration", type=click.FloatRange(min=0.0), help="Stop after this many seconds.")
def broker_run(
    directory: Path,
    pki_dir: Path,
    host: str,
    device_port: int,
    service_port: int,
    duration: float | None,
) -> None:
    """Run Mosquitto with the generated TLS configuration; reload it when the CRL or ACLs change."""
    import time

    from meterguard.broker.process import ManagedBroker
    from meterguard.crypto.pki.store import Pki

    store = Pki.open(pki_dir)
    managed = ManagedBroker.prepare(
        directory,
        store,
        host=host,
        device_port=device_port,
        service_port=service_port,
        now=dt.datetime.now(dt.UTC),
    )
    managed.start()
    click.echo(
        f"broker up: devices on {host}:{managed.layout.device_port}, "
        f"head-end on {host}:{managed.layout.service_port}; log {directory / 'mosquitto.log'}"
    )
    stopping = _stop_on_signals()
    watched = store.directory / "registry.json"
    seen = watched.stat().st_mtime_ns
    started = time.monotonic()
    try:
        while not stopping.is_set() and (duration is None or time.monotonic() - started < duration):
            time.sleep(0.5)
            if managed.proc is None or managed.proc.poll() is not None:
                raise click.ClickException(f"mosquitto stopped: {managed.log_tail()}")
            mtime = watched.stat().st_mtime_ns
            if mtime != seen:  # a revocation or a new service client: new CRL/ACL, reload
                seen = mtime
                managed.sync(Pki.open(pki_dir))
                click.echo("registry changed: CRL and ACLs reloaded")
    finally:
        managed.stop()


@main.command("demo")
@click.option(
    "--data",
    "data",
    default="./meterguard-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where everything is kept.",
)
@click.option("--meters", default=200, show_default=True, type=click.IntRange(1, 5000))
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
def demo(
    data: Path, meters: int, speed: float, duration: float | None, db: str | None, workers: int
) -> None:
    """Bring up CA, broker, head-end and a meter fleet on this machine; Ctrl-C stops it."""
    import time

    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from meterguard.demo import DemoConfig, DemoSystem

    console = Console()
    system = DemoSystem(DemoConfig(data=data, meters=meters, speed=speed, db=db, workers=workers))
    stopping = _stop_on_signals()
    with console.status(f"starting PKI, broker, head-end and {meters} meters in {data} ..."):
        system.start(now=dt.datetime.now(dt.UTC))
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
        f"[bold]dashboard: https://localhost:{system.web_port}/login[/] "
        f"(API under /api/v1; TLS certificate from {data}/pki/root/root.pem)\n"
        f"log in as alice (consumer), olga (operator) or erik (engineer): passwords and the "
        f"TOTP enrolment URIs of olga and erik are in {data}/web/demo-accounts.txt (mode 0600). "
        f"A critical command proposed by olga must be approved by erik (or the reverse). "
        f"Utility users may add a security key or passkey (WebAuthn) on their dashboard."
    )
    started = time.monotonic()
    sim_start = system.fleet.now
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

    try:
        with Live(
            table(), console=console, refresh_per_second=2, transient=not console.is_terminal
        ) as live:
            while not stopping.is_set():
                elapsed = time.monotonic() - started
                if duration is not None and elapsed >= duration:
                    break
                system.tick(sim_start + dt.timedelta(seconds=elapsed * speed))
                for line in system.log:
                    console.print(line)
                system.log.clear()
                live.update(table())
                time.sleep(0.5)
    finally:
        system.stop()
    console.print(f"stopped; status: {json.dumps(system.status())}")


@main.command("status")
@EXISTING_DATA_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(data: Path, as_json: bool) -> None:
    """Counts of a demo's data: meters, readings, alarms, security events, rejected messages."""
    from meterguard.headend.store.db import open_database
    from meterguard.headend.store.repository import Store

    info = _run_info(data)
    counts = _guarded(lambda: Store(open_database(info.db)).counts())
    if as_json:
        click.echo(json.dumps(counts))
    else:
        for k, v in counts.items():
            click.echo(f"{k:18} {v}")


@main.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@EXISTING_DATA_OPTION
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The auditor's pinned tree head (default: DATA/auditor/state.json). Keep it where "
    "the operators cannot write.",
)
@click.option("--db", help="Database URL (default: the demo's).")
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The audit public key, hex x||y (default: DATA/audit/audit-key.pub).",
)
def audit_verify(data: Path, state: Path | None, db: str | None, key: Path | None) -> None:
    """Check the audit log: entries, signed tree heads, consistency with the last verified head.

    Exits 1 and lists every problem if an entry was changed, removed or reordered, or a head
    does not verify — also when the log was rewritten and re-signed with the audit key.
    """
    from meterguard.audit.auditor import Auditor
    from meterguard.crypto.ecc import VerifyingKey
    from meterguard.headend.store.db import open_database

    url = db or _run_info(data).db
    public = VerifyingKey.from_bytes(
        bytes.fromhex((key or data / "audit" / "audit-key.pub").read_text().strip())
    )
    report = Auditor(
        open_database(url, migrate_schema=False), public, state or data / "auditor" / "state.json"
    ).run()
    click.echo(
        f"{report.entries} entries, {report.heads} signed tree heads; pinned head "
        f"{report.pinned_before} -> {report.pinned_now}"
    )
    for problem in report.problems:
        click.echo(f"PROBLEM: {problem}")
    if not report.ok:
        sys.exit(1)
    click.echo("audit log verified")


@main.group()
def bill() -> None:
    """Signed bills."""


@bill.command("verify")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_hex",
    required=True,
    help="The billing public key your utility publishes (hex x||y, or a file holding it; the "
    "demo's is DATA/headend/billing-key.pub). A key carried inside the bill proves nothing.",
)
def bill_verify(path: Path, key_hex: str) -> None:
    """Check a bill (JSON from the API: one bill, or a meter's list) against the billing key.

    Exits 1 if a signature does not verify or the charges do not add up to the total.
    """
    from meterguard.crypto.ecc import VerifyingKey
    from meterguard.errors import ConfigurationError, InvalidValueError, SignatureInvalidError
    from meterguard.headend.services.billing import verify_bill

    data = json.loads(path.read_text())
    bills = data.get("bills", [data])
    if Path(key_hex).is_file():
        key_hex = Path(key_hex).read_text().strip()
    try:
        key = VerifyingKey.from_bytes(bytes.fromhex(key_hex))
    except (ValueError, ConfigurationError):
        raise click.BadParameter("not a P-256 public key (hex x||y)", param_hint="--key") from None
    bad = 0
    for b in bills:
        doc = b["document"]
        period = f"{doc['period']['start']}..{doc['period']['end']}"
        try:
            verify_bill(doc, bytes.fromhex(b["signature"]), key)
        except (SignatureInvalidError, InvalidValueError, ValueError, KeyError) as exc:
            bad += 1
            click.echo(f"INVALID bill {doc.get('meter_id')} {period}: {exc}")
            continue
        total = doc["total_e4"] / 10000
        click.echo(
            f"valid bill {doc['meter_id']} {period}: {total:.2f} {doc['tariff']['currency']}"
        )
    sys.exit(1 if bad else 0)


@meter.command("tamper")
@click.argument("meter_id")
@click.argument("kind")
@EXISTING_DATA_OPTION
def meter_tamper(meter_id: str, kind: str, data: Path) -> None:
    """Fire a tamper sensor (e.g. cover-open, magnetic-field) on a meter of a running demo."""
    from meterguard.demo import request_tamper
    from meterguard.errors import ConfigurationError
    from meterguard.meter.device import TamperKind

    try:
        sensor = TamperKind.parse(kind)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="KIND") from None
    request_tamper(data, meter_id, sensor)
    click.echo(f"tamper {sensor.label} requested on {meter_id}")


@main.command("read")
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


@main.group()
def ingest() -> None:
    """Head-end ingest workers."""


@ingest.command("run")
@EXISTING_DATA_OPTION
@click.option(
    "--client-id",
    default="headend-ingest-2",
    show_default=True,
    help="Distinct per worker; the same id resumes that worker's session.",
)
@click.option("--duration", type=click.FloatRange(min=0.0), help="Stop after this many seconds.")
def ingest_run(data: Path, client_id: str, duration: float | None) -> None:
    """Run an ingest worker for a demo's data directory (scale-out: several side by side)."""
    import time

    headend, info = _join(data)
    headend.start_watch()  # revocations from any process reach this worker (PKI-5)
    worker = headend.worker(info, client_id, ("data", "alarms", "events", "status"))
    stopping = _stop_on_signals()
    if duration is not None:
        timer = threading.Timer(duration, stopping.set)
        timer.daemon = True  # a signal before the duration ends the process at once
        timer.start()
    click.echo(f"ingest worker {client_id} running")
    sys.stdout.flush()
    started = time.monotonic()
    try:
        worker.run(stopping)
    finally:
        headend.stop()
    click.echo(
        f"ingest worker {client_id}: {worker.committed} messages committed in "
        f"{time.monotonic() - started:.1f} s; {worker.processor.stats}; "
        f"duplicates {worker.duplicates}, reconnects {worker.reconnects}, "
        f"database failures {worker.db_failures}"
    )
