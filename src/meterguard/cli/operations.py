"""Operations on a system: pki, the meter lifecycle, broker, status, audit, bill, ingest.

Each command parses its options, calls the library and prints; see :mod:`meterguard.cli.main`.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meterguard.cli.common import (
    CLI_ROLE,
    EXISTING_DATA_OPTION,
    _cli_actor,
    _guarded,
    _join,
    _run_info,
    _stop_on_signals,
)
from meterguard.cli.devices import meter
from meterguard.errors import ConfigurationError, MeterguardError

if TYPE_CHECKING:
    from meterguard.crypto.ecc import VerifyingKey


@click.group()
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
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the certificate, its key and the root to pin.",
)
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


@pki.command("revoke-service")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--name", required=True, help="The head-end identity (its certificate's CN).")
def pki_revoke_service(directory: Path, name: str) -> None:
    """Revoke a head-end identity's client certificates (the service CA's CRL).

    The broker's service listener refuses them from its next reload (a running system's
    watch reloads it within seconds) and its ACL no longer names the identity. In a
    system's data directory the revocation is audited.
    """
    import time

    from meterguard.crypto.pki.store import Pki
    from meterguard.system.layout import DataLayout

    if DataLayout(directory.parent).info.exists():  # a system's PKI: through its service
        headend, _ = _join(directory.parent)
        count = _guarded(
            lambda: headend.meters.revoke_service(
                _cli_actor(), CLI_ROLE, name, now=int(time.time())
            )
        )
        crl = headend.pki.service_crl_path
    else:
        store = _guarded(lambda: Pki.open(directory))
        count = _guarded(lambda: store.revoke_service(name, now=dt.datetime.now(dt.UTC)))
        crl = store.service_crl_path
    click.echo(f"revoked {count} certificate(s) of service {name}; CRL at {crl}")


def _move(data: Path, mid: str, action: str) -> None:
    """A lifecycle move through the one service the API also calls."""
    import time

    headend, _ = _join(data)
    state = _guarded(
        lambda: headend.meters.move(_cli_actor(), CLI_ROLE, mid, action, now=int(time.time()))
    )
    click.echo(f"meter {mid} is {state}; {_MOVE_OUTCOME[action]}")


_REFUSED = "running ingest workers refuse its messages within seconds"
_MOVE_OUTCOME = {
    "disable": _REFUSED,
    "enable": "running ingest workers accept its messages again within seconds",
    "quarantine": f"{_REFUSED}; its certificates are on hold and the broker reloads the CRL",
    "release": "its messages are accepted again; the hold leaves the CRL the broker reloads",
    "decommission": f"{_REFUSED}; its certificates are revoked and the broker reloads the CRL",
    "revoke": f"{_REFUSED}; its certificates are revoked and the broker reloads the CRL",
}


def _lifecycle_command(action: str, summary: str) -> None:
    @meter.command(action, help=summary)
    @click.argument("meter_id")
    @EXISTING_DATA_OPTION
    def command(meter_id: str, data: Path) -> None:
        _move(data, meter_id, action)


for _action, _summary in (
    ("disable", "Refuse a meter's messages at ingest until it is enabled again."),
    ("enable", "Accept a disabled meter's messages again."),
    ("quarantine", "Suspend a meter: certificates on hold (CRL), its messages refused."),
    ("release", "Lift a quarantine: the hold leaves the CRL, its messages are accepted."),
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


@click.group()
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
@click.option(
    "--pki",
    "pki_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The PKI directory (server certificate, trust files, CRL come from it).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--device-port",
    default=8883,
    show_default=True,
    type=int,
    help="The meters' listener (device CA client certificates).",
)
@click.option(
    "--service-port",
    default=8884,
    show_default=True,
    type=int,
    help="The head-end services' listener (service CA client certificates).",
)
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


@click.command("status")
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


def _public_key(path: Path, what: str) -> VerifyingKey:
    """A public key from a file holding it as hex x||y (one line and exit 1 if unusable)."""
    from meterguard.crypto.ecc import VerifyingKey

    try:
        return VerifyingKey.from_bytes(bytes.fromhex(path.read_text().strip()))
    except (OSError, ValueError, MeterguardError) as exc:
        raise click.ClickException(f"no usable {what} at {path}: {exc}") from None


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@EXISTING_DATA_OPTION
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The auditor's pinned tree head and audit key (default: a file for DATA under "
    "~/.local/state/meterguard/auditor/, outside the directory operators write).",
)
@click.option("--db", help="Database URL (default: the system's).")
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The audit public key, hex x||y (default: DATA/audit/audit-key.pub; pinned on the "
    "first run and required to match after).",
)
@click.option(
    "--full", is_flag=True, help="Re-read every entry, not only those added since the pin."
)
@click.option(
    "--witness-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The audit witness's public key: only heads it cosigned are trusted (default: "
    "DATA/witness/witness-key.pub when it exists; pinned, and required to match after).",
)
def audit_verify(
    data: Path,
    state: Path | None,
    db: str | None,
    key: Path | None,
    full: bool,
    witness_key: Path | None,
) -> None:
    """Check the audit log: entries, signed tree heads, consistency with the last verified head.

    From the pinned head on, only the entries added since are read (--full reads all).
    Exits 1 and lists every problem if an entry was changed, removed or reordered, or a head
    does not verify — also when the log was rewritten and re-signed with the audit key; exits
    2 when there is no signed tree head to verify yet.
    """
    from sqlalchemy.exc import OperationalError

    from meterguard.audit.auditor import Auditor, default_state
    from meterguard.headend.store.db import open_database

    url = db or _run_info(data).db
    key_path = key or data / "audit" / "audit-key.pub"
    public = _public_key(key_path, "audit public key")
    witness_path = witness_key
    if witness_path is None and (data / "witness" / "witness-key.pub").exists():
        witness_path = data / "witness" / "witness-key.pub"
    witness = None if witness_path is None else _public_key(witness_path, "witness public key")
    engine = _guarded(lambda: open_database(url, migrate_schema=False))
    interactive = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if total >= 100_000 or interactive:
            click.echo(f"  {done:,} of {total:,} entries verified", err=True)

    auditor = Auditor(engine, public, state or default_state(data), witness=witness)
    try:
        report = _guarded(lambda: auditor.run(full=full, progress=progress))
    except OperationalError:
        raise click.ClickException("the audit log's database is unreachable") from None
    finally:
        engine.dispose()
    click.echo(
        f"{report.entries} entries ({report.checked} read in this run), {report.heads} signed"
        f" tree heads; pinned head {report.pinned_before} -> {report.pinned_now}"
    )
    for problem in report.problems:
        click.echo(f"PROBLEM: {problem}")
    if not report.ok:
        sys.exit(1)
    if report.pinned_before is None:
        click.echo(f"nothing was pinned before this run ({auditor.state})")
    if report.uncovered:
        what = "a cosigned head" if witness is not None else "a signed head"
        click.echo(f"{report.uncovered} newest entries are not yet covered by {what}")
    if report.unwitnessed:
        click.echo(f"{report.unwitnessed} signed heads are not cosigned by the witness (yet)")
    if not report.verified:
        click.echo("nothing verified: the log has no signed tree head yet, and nothing is pinned")
        sys.exit(2)
    click.echo("audit log verified")


@audit.group("witness")
def audit_witness() -> None:
    """A witness that cosigns the log's tree heads only if they extend what it saw (LOG-4).

    Run it under other people than the head-end, ideally on another machine: a rewrite of
    the log then needs the audit key and the witness's key.
    """


WITNESS_STATE_OPTION = click.option(
    "--state",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The witness's directory (its key, the log's key, its record).",
)


@audit_witness.command("init")
@WITNESS_STATE_OPTION
@click.option(
    "--log-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The audit public key of the log to witness (hex x||y; DATA/audit/audit-key.pub).",
)
def audit_witness_init(directory: Path, log_key: Path) -> None:
    """Create a witness (its own key) for the log signed by LOG_KEY; print its public key."""
    from meterguard.audit.witness import Witness

    public = _public_key(log_key, "audit public key")
    w = _guarded(lambda: Witness.init(directory, public))
    click.echo(f"witness in {directory}; its public key (give it to auditors):")
    click.echo(w.public_key.to_bytes().hex())


@audit_witness.command("serve")
@WITNESS_STATE_OPTION
def audit_witness_serve(directory: Path) -> None:
    """Answer cosigning requests on stdin/stdout, one JSON object per line (run over ssh)."""
    import time

    from meterguard.audit.witness import Witness, handle

    w = _guarded(lambda: Witness.open(directory))
    for line in sys.stdin.buffer:
        if len(line) > 80 * 1_000_000:
            answer: dict[str, object] = {"error": "bad_request", "detail": "request too large"}
        else:
            try:
                request = json.loads(line)
            except ValueError:
                request = None
            if isinstance(request, dict):
                try:
                    answer = handle(w, request, now=int(time.time()))
                except MeterguardError as exc:  # its own state is unreadable: say so, go on
                    answer = {"error": "witness_failed", "detail": str(exc)}
            else:
                answer = {"error": "bad_request", "detail": "one JSON object per line"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


@audit_witness.command("show")
@WITNESS_STATE_OPTION
def audit_witness_show(directory: Path) -> None:
    """What the witness has cosigned: its key, the log's key, the newest head."""
    from meterguard.audit.witness import Witness

    w = _guarded(lambda: Witness.open(directory))
    frontier, root = _guarded(w.seen)
    record = directory / "cosigned.jsonl"
    count = sum(1 for _ in record.open()) if record.exists() else 0
    click.echo(f"witness key  {w.public_key.to_bytes().hex()}")
    click.echo(f"log key      {w.log_key.to_bytes().hex()}")
    click.echo(f"cosigned     {count} heads; newest of size {frontier.size}, root {root.hex()}")


@click.group()
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
    from meterguard.errors import InvalidValueError, SignatureInvalidError
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


@click.group()
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
@click.option(
    "--metrics-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Serve this worker's /metrics and /healthz over HTTPS on this port of the system's host,"
    " for a scraper with the bearer token in DATA/web/metrics-token (0: none).",
)
def ingest_run(data: Path, client_id: str, duration: float | None, metrics_port: int) -> None:
    """Run an ingest worker for a demo's data directory (scale-out: several side by side)."""
    import time

    from meterguard.logs import log_json_to

    log_json_to(data / "logs" / f"ingest-{client_id}.jsonl")
    headend, info = _join(data)
    if metrics_port and headend.metrics is not None:
        import hashlib

        from meterguard.headend.api.observe import create_metrics_app
        from meterguard.system.headend import scrape_token
        from meterguard.system.layout import DataLayout
        from meterguard.system.web import serve_https

        web = DataLayout(data).web
        app = create_metrics_app(
            headend.metrics,
            hashlib.sha256(scrape_token(web).encode()).digest(),
            headend.store.healthy,
        )
        _guarded(
            lambda: serve_https(app, info.host, metrics_port, web / "web.pem", web / "web.key")
        )
        click.echo(f"metrics: https://{info.host}:{metrics_port}/metrics")
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
