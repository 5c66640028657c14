"""``meterguard privacy``: share data with third parties through the one sharing service.

Recipients, exports and differentially private releases go through
:class:`~meterguard.headend.services.sharing.DataSharing` — the service the API calls —
so consent, the access log, pseudonyms and the privacy budget hold alike. Whoever runs
these commands holds the data directory (its key store and database) and acts as a
privacy officer, audited by OS user. ``verify-export`` checks a delivered export against
the export key and needs no data directory: it is what a recipient runs.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meterguard.cli.common import EXISTING_DATA_OPTION, _cli_actor, _guarded, _join

if TYPE_CHECKING:
    from meterguard.headend.services.accounts import Principal

__all__ = ["privacy"]

_USES = click.Choice(["research", "energy-services", "grid-operator"])


def _officer() -> Principal:
    from meterguard.headend.services.accounts import Principal

    return Principal(0, _cli_actor(), "privacy_officer")


def _day(text: str) -> int:
    try:
        d = dt.date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)") from None
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp())


@click.group()
def privacy() -> None:
    """Share data with third parties: recipients, pseudonymised exports, DP aggregates."""


@privacy.command("recipient-add")
@click.argument("name")
@click.option("--use", required=True, type=_USES, help="What the recipient receives data for.")
@EXISTING_DATA_OPTION
def recipient_add(name: str, use: str, data: Path) -> None:
    """Define a third-party RECIPIENT for one use (audited)."""
    he, _ = _join(data)
    sharing = he.open_sharing()
    rid = _guarded(lambda: sharing.add_recipient(_officer(), name, use, now=int(time.time())))
    click.echo(f"recipient {rid}: {name} ({use})")


@privacy.command("recipients")
@EXISTING_DATA_OPTION
def recipients(data: Path) -> None:
    """List the recipients."""
    he, _ = _join(data)
    for r in _guarded(lambda: he.open_sharing().recipients(_officer())):
        click.echo(f"{r.id:4}  {r.name:32} {r.use:16} by {r.created_by}")


@privacy.command("export")
@click.option(
    "--recipient",
    "recipient_id",
    required=True,
    type=click.IntRange(1, 2**53),
    help="The recipient's id (see `meterguard privacy recipients`).",
)
@click.option("--start", required=True, help="First day, YYYY-MM-DD (UTC).")
@click.option("--end", required=True, help="Day after the last, YYYY-MM-DD (UTC).")
@click.option(
    "--granularity",
    default="day",
    show_default=True,
    type=click.Choice(["interval", "hour", "day", "month"]),
    help="How fine the exported values are (each meter only as fine as its consent).",
)
@click.option(
    "--rotation",
    default="week",
    show_default=True,
    type=click.Choice(["day", "week", "month"]),
    help="How often each meter's pseudonym changes.",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    default=("import_wh",),
    show_default=True,
    type=click.Choice(["import_wh", "export_wh"]),
    help="A register to export (repeat for both).",
)
@click.option(
    "--k",
    default=0,
    show_default=True,
    type=click.IntRange(0, 100),
    help="k-anonymous microaggregation: groups of at least k meters (0: none; else 10-100).",
)
@EXISTING_DATA_OPTION
def export(
    recipient_id: int,
    start: str,
    end: str,
    granularity: str,
    rotation: str,
    fields: tuple[str, ...],
    k: int,
    data: Path,
) -> None:
    """Export consenting consumers' data to a recipient: signed CSV + Parquet, pseudonymised."""
    from meterguard.headend.services.sharing import ExportRequest

    he, _ = _join(data)
    req = ExportRequest(
        recipient_id, _day(start), _day(end), granularity, rotation, tuple(fields), k
    )
    view = _guarded(lambda: he.open_sharing().create_export(_officer(), req, now=int(time.time())))
    click.echo(
        f"export {view.id}: {view.included} consumers included, {view.refused} refused "
        f"(no consent to this use at {granularity}); files in {view.path}"
    )


@privacy.command("verify-export")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option(
    "--key",
    "key_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The export public key the utility publishes (the demo's: DATA/headend/export-key.pub).",
)
def verify_export_command(directory: Path, key_file: Path) -> None:
    """Check a delivered export: the manifest's signature and every file's hash."""
    from meterguard.cli.operations import _public_key
    from meterguard.headend.services.sharing import verify_export

    manifest = _guarded(lambda: verify_export(directory, _public_key(key_file, "export key")))
    click.echo(
        f"export {manifest['export']} for {manifest['recipient']} verifies: "
        f"{manifest['included']} consumers, {manifest['granularity']}, pseudonyms rotated "
        f"per {manifest['rotation']}; {manifest['privacy']}"
    )


@privacy.command("release")
@click.option("--scope", default="all", show_default=True, help="all, or feeder:NAME.")
@click.option("--day", required=True, help="The UTC day, YYYY-MM-DD.")
@click.option(
    "--epsilon",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.0, min_open=True, max=10.0),
    help="Privacy cost per consumer for the day (debited in the ledger).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the release as JSON.")
@EXISTING_DATA_OPTION
def release(scope: str, day: str, epsilon: float, as_json: bool, data: Path) -> None:
    """Release a differentially private hourly load curve of a feeder or the region."""
    he, _ = _join(data)
    r = _guarded(
        lambda: he.open_sharing().release(
            _officer(), scope, _day(day), epsilon, now=int(time.time())
        )
    )
    curve = json.loads(r.curve)
    if as_json:
        click.echo(json.dumps({"id": r.id, "scope": r.scope, "day": day, **curve}))
        return
    click.echo(
        f"release {r.id}: {r.scope} on {day}, {r.homes} homes, ε per day {epsilon:g} "
        f"(per slot {curve['epsilon_slot']:g}), noise scale {curve['noise_scale_wh']:.0f} Wh"
    )
    click.echo("hour  kWh (noisy)")
    for h, wh in enumerate(curve["import_wh"]):
        click.echo(f"{h:4}  {wh / 1000:8.1f}")


@privacy.command("erase")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@EXISTING_DATA_OPTION
def erase(username: str, yes: bool, data: Path) -> None:
    """Forget consumer USERNAME: destroy their meters' data keys, anonymise the account."""
    if not yes:
        click.confirm(
            f"Erase {username}? Their readings become unreadable for good (bills stay)",
            abort=True,
        )
    he, _ = _join(data)
    meters = _guarded(
        lambda: he.open_retention().erase_consumer(_officer(), username, now=int(time.time()))
    )
    click.echo(
        f"erased {username}: the data keys of {', '.join(meters) or 'no meter'} are destroyed, "
        "their readings unreadable; bills kept and still verify. A running head-end stops "
        "using the old keys within 30 s."
    )


@privacy.command("retention")
@EXISTING_DATA_OPTION
def retention(data: Path) -> None:
    """Apply the retention limits now (the head-end also does it every hour)."""
    he, _ = _join(data)
    r = he.open_retention()
    deleted = _guarded(lambda: r.run(_officer(), now=int(time.time())))
    limits = r.limits
    click.echo(
        f"kept: interval data {limits.interval_days} days, access log "
        f"{limits.access_log_days} days, bills {limits.bills_days} days; the audit log is "
        "never deleted (hash-chained)"
    )
    for kind, n in deleted.items():
        click.echo(f"deleted {n:8} {kind}")
