"""``meterguard attack list | run``: the red-team scenarios against a running system.

``run`` needs an explicit ``--data`` of a running system on loopback (the demo's data
directory): from it the command builds the :class:`~meterguard.attacks.target.Target` — the
ports the system published, each attacker capability's material, and the secrets the
captures and copies are searched for (read here with the data directory's own keys, and
never printed) — plays the chosen scenarios and prints the scorecard. ``--json`` prints the
report for CI, ``--report FILE.html`` writes the self-contained HTML report, and the last run
is kept in ``DATA/attacks/last-run.json`` for the security administrators' dashboard page.
Exit status 1 when a scenario did not pass.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from meterguard.cli.common import _guarded, _run_info
from meterguard.errors import ConfigurationError

if TYPE_CHECKING:
    from meterguard.attacks.firmware import Range
    from meterguard.attacks.scenario import Result
    from meterguard.attacks.target import Secrets, Target

__all__ = ["attack"]

ROLES = {
    "victim": 1,
    "compromised": 2,
    "neighbour": 3,
    "thief": 4,
    "cloned": 5,
    "powercut": 6,
}
"""Which of the fleet's meters (by serial) play which part."""
ACCOUNTS = {"consumer": "alice", "insider": "mallory", "investigator": "rita", "admin": "sven"}


@click.group()
def attack() -> None:
    """Red-team scenarios for every threat, against a running system on loopback."""


@attack.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the scenarios as JSON.")
def list_(as_json: bool) -> None:
    """List every scenario: threat, attacker capability, what must happen."""
    from meterguard.attacks.catalog import SCENARIOS

    if as_json:
        doc = [s.describe() for s in SCENARIOS]
        click.echo(json.dumps(doc, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(SCENARIOS)} attack scenarios")
    for col in ("threat", "scenario", "attacker", "must happen", "requirements"):
        table.add_column(col, no_wrap=col == "scenario")
    for s in SCENARIOS:
        table.add_row(
            s.threat.value, s.id, s.capability.value, s.expected, ", ".join(s.requirements)
        )
    Console().print(table)


@attack.command("run")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Run every scenario.")
@click.option(
    "--data",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The data directory of the running system to attack (required: nothing is implied).",
)
@click.option(
    "--profile",
    type=click.Choice(["ci", "full"]),
    default="ci",
    show_default=True,
    help="How hard floods push: ci is small and quick, full is the real test.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--mitmdump",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="MITMDUMP",
    help="mitmproxy's mitmdump for the man-in-the-middle scenarios (default: $MITMDUMP, or"
    " mitmdump on PATH; without it a forged TLS listener of our own stands in).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML report here.",
)
def run(
    names: tuple[str, ...],
    everything: bool,
    data: Path,
    profile: str,
    as_json: bool,
    mitmdump: Path | None,
    report_path: Path | None,
) -> None:
    """Run scenarios (ids, threats, or --all) against the system in --data."""
    from meterguard.attacks import scenario as sc
    from meterguard.attacks.catalog import select
    from meterguard.attacks.scorecard import html, report

    if not names and not everything:
        raise click.UsageError("name scenarios or threats, or give --all")
    chosen = _guarded(lambda: select(names, everything=everything))
    with tempfile.TemporaryDirectory(prefix="meterguard-attack-") as tmp:
        target = _guarded(lambda: _target(data, Path(tmp)))
        target.mitmdump = mitmdump or _on_path("mitmdump")
        t0 = time.monotonic()

        def progress(r: Result) -> None:
            if not as_json:
                ttd = "" if r.detection is None else f" (seen after {r.detection:.1f} s)"
                click.echo(f"{r.outcome.value:>6}  {r.scenario.id}{ttd}", err=True)

        try:
            results = sc.run(
                chosen, target, target.evidence, sc.PROFILES[profile], progress=progress
            )
        finally:
            target.evidence.engine.dispose()
            if isinstance(target.firmware_range, _FirmwareRanges):
                target.firmware_range.stop()
    doc = report(results, target=f"{data}", profile=profile, took=time.monotonic() - t0)
    out = data / "attacks"
    out.mkdir(exist_ok=True)
    tmp_file = out / "last-run.tmp"
    tmp_file.write_text(json.dumps(doc, indent=1))
    os.replace(tmp_file, out / "last-run.json")
    if report_path is not None:
        report_path.write_text(html(doc), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        _table(results, doc)
    if not doc["passed"]:
        raise SystemExit(1)


def _table(results: list[Result], doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"meterguard attack run ({doc['profile']}, {doc['duration_s']} s)")
    for col in ("threat", "scenario", "outcome", "detected", "evidence"):
        table.add_column(col, overflow="fold", no_wrap=col in ("scenario", "outcome"))
    for r in results:
        evidence = "; ".join(r.found) or r.scenario.no_record
        if r.missing:
            evidence = "MISSING " + "; ".join(r.missing) + f" — {r.attempt.detail}"
        elif r.outcome.value != "passed":
            evidence = r.attempt.detail
        table.add_row(
            r.scenario.threat.value,
            r.scenario.id,
            r.outcome.value,
            "" if r.detection is None else f"{r.detection:.1f} s",
            evidence[:300],
        )
    Console().print(table)
    for threat, counts in doc["summary"].items():
        click.echo(f"{threat}: {counts['passed']} passed, {counts['failed']} failed,"
                   f" {counts['error']} errors")  # fmt: skip


def _target(data: Path, work: Path) -> Target:
    """The running system in ``data``, as the plays see it."""
    from meterguard.attacks.target import Target
    from meterguard.headend.store.db import open_database
    from meterguard.headend.store.evidence import EvidenceReader
    from meterguard.identity import meter_id
    from meterguard.system.headend import INGEST_IDENTITY
    from meterguard.system.layout import DataLayout

    info = _run_info(data)
    layout = DataLayout(data)
    if info.meters < max(ROLES.values()) + 1:
        raise ConfigurationError(f"attacks need a fleet of at least {max(ROLES.values()) + 1}")
    roles = {role: meter_id(serial) for role, serial in ROLES.items()} | ACCOUNTS
    db_file = Path(info.db.removeprefix("sqlite:///")) if info.db.startswith("sqlite") else None

    def ask(payload: dict[str, Any]) -> None:
        from meterguard.demo import request

        request(data, payload)

    return Target(
        host=info.host,
        device_port=info.device_port,
        service_port=info.service_port,
        web_port=info.web_port,
        firmware_port=info.firmware_port,
        root=layout.trust_root,
        db_file=db_file,
        keystore=layout.keystore,
        kek=layout.kek,
        broker_log=layout.broker / "mosquitto.log",
        accounts_file=layout.web / "demo-accounts.txt",
        firmware_dir=layout.firmware,
        meter_dir=layout.meter,
        service_identity=layout.service(INGEST_IDENTITY),
        roles=roles,
        secrets=_secrets(data, roles),
        request=ask,
        release=partial(_release, data),
        evidence=EvidenceReader(open_database(info.db, migrate_schema=False)),
        db_url=info.db,
        workdir=work,
        firmware_range=_FirmwareRanges(work),
        speed=info.speed,
        fleet=tuple(meter_id(serial) for serial in range(1, info.meters + 1)),
    )


def _on_path(name: str) -> Path | None:
    import shutil

    found = shutil.which(name)
    return Path(found) if found else None


def _release(data: Path, mid: str) -> str:
    """Release ``mid`` from quarantine as the CLI's security administrator (audited)."""
    from meterguard.cli.common import CLI_ROLE, _cli_actor
    from meterguard.system.headend import HeadEnd

    he, _ = HeadEnd.join(data)
    try:
        state = he.meters.move(_cli_actor(), CLI_ROLE, mid, "release", now=int(time.time()))
    finally:
        he.stop()
    return f"released by the attack run (audited): {state}"


def _secrets(data: Path, roles: dict[str, str]) -> Secrets:
    """What no capture or copy may show: read with the data directory's own keys."""
    import re

    from meterguard.attacks.target import Secrets
    from meterguard.crypto.keystore import read_key_file
    from meterguard.system.headend import HeadEnd
    from meterguard.system.layout import DataLayout

    layout = DataLayout(data)
    s = Secrets()
    he, _ = HeadEnd.join(data)
    try:
        for role in ("victim", "compromised"):
            _title, ek, ak = he.keys.meter_keys(roles[role])
            s.add(f"the {role} meter's DLMS keys", ek.expose_secret(), ak.expose_secret())
        rows = he.store.readings(roles["victim"], 0, 2**40)[-200:]
        s.add_series("the victim's reading values", [imp for _s, imp, _e in rows if imp >= 100_000])
    finally:
        he.stop()
    s.add("the key-encryption key", read_key_file(layout.kek).expose_secret())
    text = (layout.web / "demo-accounts.txt").read_text(encoding="utf-8")
    for name, password in re.findall(r"^(\w+) \(\w+\) password: (.*)$", text, re.M):
        s.add("a password", password.encode())
        if name == roles["consumer"]:
            s.add("a consumer's name", name.encode())
    for secret in re.findall(r"secret=([A-Z2-7]+)", text):
        s.add("a TOTP secret", secret.encode(), base64.b32decode(secret + "=" * (-len(secret) % 8)))
    return s


class _FirmwareRanges:
    """Firmware ranges of the run's own: one HTTPS endpoint, a fresh repository and meter each."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self._server: Any = None
        self._thread: Any = None

    def _endpoint(self) -> tuple[Path, Path, Path, Path, int]:
        from meterguard.broker.process import free_port
        from meterguard.crypto.pki.store import Pki, pem
        from meterguard.headend.api.firmware import create_firmware_app
        from meterguard.system.web import serve_https

        base = self.work / "firmware-endpoint"
        if self._server is None:
            now = dt.datetime.now(dt.UTC)
            pki = Pki.init(base / "pki", now=now)
            cert, key = pki.issue_server("firmware", hosts=["127.0.0.1"], now=now, out=base)
            trust = base / "device-trust.pem"
            trust.write_bytes(pem(pki.device_root) + pem(pki.device.certificate))
            (base / "served").mkdir()
            pki.enrol_meter("0000000001", base / "meter-cred", now=now)
            self.port = free_port()
            self._server, self._thread = serve_https(
                create_firmware_app(base / "served"), "127.0.0.1", self.port, cert, key,
                client_ca=trust,
            )  # fmt: skip
        cred = base / "meter-cred"
        return base / "served", base / "pki" / "root" / "root.pem", cred, cred, self.port

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Range]:
        from meterguard.attacks.firmware import Range
        from meterguard.cosem.eventcodes import EventCode
        from meterguard.firmware.repository import FirmwareRepository
        from meterguard.meter.firmware import FirmwareAgent, Hardware, HttpsFetcher

        served, root, cred, _, port = self._endpoint()
        base = Path(tempfile.mkdtemp(dir=self.work))
        now = dt.datetime.now(dt.UTC)
        repo = FirmwareRepository.create(base / "repo", now=now)
        hw = Hardware()
        events: list[EventCode] = []
        agent = FirmwareAgent(
            base / "meter",
            meter="MGD0000000001",
            hardware=hw,
            bootstrap=repo.root_bytes(),
            fetcher=HttpsFetcher(root, cred / "tls.pem", cred / "tls.key", timeout=5),
            base_url=f"https://127.0.0.1:{port}/firmware/",
            log=events.append,
            alarm=lambda _bit: None,
        )
        rng = Range(repo, served, agent, hw, events)
        rng.sync()
        yield rng

    def stop(self) -> None:
        """Stop the endpoint (if one was started)."""
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(10)
