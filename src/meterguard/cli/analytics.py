"""``meterguard analytics``: the evaluations of the detectors, run and printed.

``theft-eval`` generates synthetic populations (one per seed), runs the theft protocol of
ANALYTICS.md §3.2 on each and prints, per attack model and detector, the mean ± std over
the seeds of the customer-week AUC, the detection rate at 1% and 5% false positives, the
detection delay and the stolen-kWh recall, with the baselines in the same run and the
targets checked. ``privacy-eval`` runs the privacy attackers of §3.3 (occupancy A0-A2,
linking A3) against raw data and every export kind the product offers, with the floor in
the same run, and the DP aggregate's error per group size. ``--json`` prints the same as
JSON, ``--out DIR`` writes the plots.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

__all__ = ["analytics"]


@click.group()
def analytics() -> None:
    """Evaluate the analytics (theft detection, privacy) on synthetic data."""


def _fmt(v: tuple[float, float], digits: int = 3) -> str:
    mean, std = v
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


@analytics.command("theft-eval")
@click.option(
    "--homes",
    default=400,
    show_default=True,
    type=click.IntRange(60, 20000),
    help="Homes in each synthetic population.",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(0, 2**31),
    help="The first seed; seeds are SEED, SEED+1, …",
)
@click.option(
    "--seeds",
    "count",
    default=5,
    show_default=True,
    type=click.IntRange(1, 20),
    help="How many seeds (populations) to average over.",
)
@click.option(
    "--folds",
    default=5,
    show_default=True,
    type=click.IntRange(2, 10),
    help="Feeder-disjoint folds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write ROC curves and a per-model bar chart (PNG and SVG) here.",
)
def theft_eval(
    homes: int, seed: int, count: int, folds: int, as_json: bool, out: Path | None
) -> None:
    """Run the theft-detection protocol with its baselines and print the tables."""
    from meterguard.analytics.theft.evaluate import BASELINES, DETECTORS, Protocol
    from meterguard.analytics.theft.report import SYNTHETIC_NOTE, run, summarise, write_plots

    console = Console(stderr=as_json)
    seeds = list(range(seed, seed + count))
    started = time.monotonic()
    results = run(homes, seeds, Protocol(folds=folds), progress=None if as_json else console.log)
    summary = summarise(results, seeds, homes, time.monotonic() - started)
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=1))
    else:
        models = list(summary.metrics["fused"])
        for d in DETECTORS + BASELINES:
            table = Table(
                title=f"{d}: customer-weeks, mean ± std over seeds {seeds}, {homes} homes"
                f" — {SYNTHETIC_NOTE}",
                title_justify="left",
            )
            for col in (
                "model", "n", "AUC", "AUPRC", "DR@1%", "DR@5%", "delay (days)", "stolen-kWh recall",
            ):  # fmt: skip
                table.add_column(col)
            for g in models:
                m = summary.metrics[d].get(g)
                if m is None:
                    continue
                table.add_row(
                    g,
                    f"{m['n'][0]:.0f}",
                    _fmt(m["auc"]),
                    _fmt(m["auprc"]),
                    _fmt(m["dr@0.01"]),
                    _fmt(m["dr@0.05"]),
                    _fmt(m["delay_days"], 1),
                    _fmt(m["stolen_recall"], 2),
                )
            console.print(table)
        cust = Table(
            title=f"customer level (one score per customer) — {SYNTHETIC_NOTE}",
            title_justify="left",
        )
        for col in ("detector", "AUC", "MAP@⌈0.24%·n⌉", "MAP@⌈0.47%·n⌉", "MAP@#thieves"):
            cust.add_column(col)
        for d in DETECTORS + BASELINES:
            c = summary.customer[d]
            cust.add_row(
                d, _fmt(c["auc"]), _fmt(c["map@n1"]), _fmt(c["map@n2"]), _fmt(c["map@thieves"])
            )
        console.print(cust)
        console.print(
            f"energy balance: the balance detector ranks a thief first behind "
            f"{_fmt(summary.localisation)} of unbalanced feeder-weeks with a thief"
        )
        for t in summary.targets:
            mark = "met" if t["met"] else "NOT met"
            console.print(f"target {t['target']}: {t['value']:.3f} — {mark}")
        console.print(
            f"fused beats every baseline on AUC: {summary.beats_baselines['auc']}, "
            f"on DR@1%: {summary.beats_baselines['dr@0.01']}"
        )
        console.print(f"{summary.seconds:.0f} s")
    if out is not None:
        for p in write_plots(results, summary, out):
            console.print(f"wrote {p}")


@analytics.command("privacy-eval")
@click.option(
    "--homes",
    default=100,
    show_default=True,
    type=click.IntRange(20, 5000),
    help="Homes in the synthetic cohort (linking chance is 1/homes).",
)
@click.option(
    "--days",
    default=364,
    show_default=True,
    type=click.IntRange(28, 730),
    help="Days simulated per home.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**31), help="Seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the leakage and DP-error plots (PNG and SVG) here.",
)
def privacy_eval(homes: int, days: int, seed: int, as_json: bool, out: Path | None) -> None:
    """Run the privacy attackers against raw data and every export kind; print the leakage."""
    from meterguard.analytics.privacy.evaluate import SYNTHETIC_NOTE, run, write_plots

    console = Console(stderr=as_json, width=None if sys.stdout.isatty() else 200)
    report = run(homes, days, seed, progress=None if as_json else console.log)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=1))
    else:
        table = Table(
            title=f"occupancy (07:00-23:00 slots) and linking, {homes} homes x {days} days, "
            f"seed {seed} — {SYNTHETIC_NOTE}",
            title_justify="left",
        )
        for col in (
            "export kind", "offered", "A0 AUC (floor)", "A1 AUC", "A2 AUC", "ΔAUC",
            "A2 MCC (floor)", "A2 acc.", "link weeks top-1/5", "link bills top-1/5", "info loss",
            "passes",
        ):  # fmt: skip
            table.add_column(col)
        for r in report.rows:
            o = r.occupancy
            table.add_row(
                r.defence,
                ("control" if r.control else "consent only") if r.offered else "studied",
                f"{o.floor_auc:.3f}",
                f"{o.niom_auc:.3f}",
                f"{o.auc:.3f}",
                f"{o.leakage:+.3f}",
                f"{o.mcc:.3f} ({o.floor_mcc:.3f})",
                f"{o.accuracy:.3f}",
                f"{r.weeks.top1:.2f} / {r.weeks.top5:.2f}",
                "-" if math.isnan(r.bills.top1) else f"{r.bills.top1:.2f} / {r.bills.top5:.2f}",
                f"{r.info_loss:.3f}",
                "yes" if r.passes else "NO",
            )
        console.print(table)
        console.print(
            f"chance linking top-1 = 1/{homes} = {1 / homes:.3f}; occupied share "
            f"{report.rows[0].occupancy.prior:.2f}; billing error on the billing path: 0 (bills "
            "are computed from the registers, never from an export)"
        )
        dp = Table(
            title=f"DP aggregate error (hourly curve of a day) — {SYNTHETIC_NOTE}",
            title_justify="left",
        )
        for col in (
            "homes", "ε per day", "ε per slot", "bounds (slot / day Wh)", "NRMSE", "peak error",
            "analytic NRMSE (noise only)",
        ):  # fmt: skip
            dp.add_column(col)
        for e in report.dp:
            dp.add_row(
                str(e.homes),
                f"{e.epsilon_day:g}",
                f"{e.epsilon_slot:g}",
                f"{e.bound_wh} / {e.day_bound_wh}",
                f"{e.nrmse:.3f}",
                f"{e.peak_error:.3f}",
                f"{e.analytic_nrmse:.3f}",
            )
        console.print(dp)
        for c in report.checks:
            if c.get("consent_only"):
                console.print(f"not a privacy control: {c['check']}")
                continue
            console.print(
                f"check {c['check']}: {c['value']:.3f} — {'met' if c['met'] else 'NOT met'}"
            )
        console.print(f"{report.seconds:.0f} s")
    if out is not None:
        for p in write_plots(report, out):
            console.print(f"wrote {p}")
