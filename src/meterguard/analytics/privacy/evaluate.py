"""Protocol B (ANALYTICS.md §3.3): every export kind against every attacker, and DP error.

:func:`run` generates a cohort, applies each :class:`~.defences.Defence` (the export kinds
the product offers and the protocol's other cells), runs A0-A3 on each view with the floor
in the same run, and measures the utility cost; :func:`dp_errors` measures the error of
the differentially private aggregate for groups of 10, 50, 100 and 1 000 homes (1 000 by
synthetic repeats: home-days drawn with replacement) at each shipped ε, beside the analytic
expectation. :func:`write_plots` draws the leakage per defence and the error per aggregate
size. The only IO is :func:`write_plots`' files; every result says the data is synthetic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from meterguard.analytics.privacy.attackers import (
    Linking,
    Occupancy,
    link_bills,
    link_weeks,
    occupancy,
)
from meterguard.analytics.privacy.defences import (
    OFFERED,
    STUDIED,
    Defence,
    View,
    apply,
    coarsen,
)
from meterguard.analytics.privacy.dp import DpPlan, clipped_sums, nrmse, release
from meterguard.analytics.privacy.synthetic import GENERATOR_VERSION, Cohort, cohort

__all__ = [
    "DP_PLANS",
    "LEAKAGE_TARGET",
    "LINKING_TARGET",
    "SYNTHETIC_NOTE",
    "VALIDITY_BAND",
    "DpError",
    "Report",
    "Row",
    "dp_errors",
    "run",
    "write_plots",
]

SYNTHETIC_NOTE = f"synthetic data ({GENERATOR_VERSION}); not comparable with CER or ECO results"
LEAKAGE_TARGET = 0.02
LINKING_TARGET = 0.05
VALIDITY_BAND = (0.78, 0.94)
DP_PLANS = (DpPlan(10.0), DpPlan(1.0))
"""The ε the product ships: 10 or 1 per consumer and day on hourly slots (2 or 0.2 per slot)."""
DP_SIZES = (10, 50, 100, 1000)


@dataclass(frozen=True)
class Row:
    """One defence: what each attacker achieved and what it cost."""

    defence: str
    offered: bool
    control: bool
    """Offered as a privacy control (else: only under consent, as personal data)."""
    occupancy: Occupancy
    weeks: Linking
    bills: Linking
    info_loss: float
    """NRMSE of what the recipient gets against the truth at the same resolution (for an
    aggregate, against the true aggregate)."""

    @property
    def passes(self) -> bool:
        """ΔAUC ≤ 0.02, MCC within 0.02 of the floor, linking top-1 ≤ 5%."""
        o = self.occupancy
        linked = max(self.weeks.top1, 0.0 if math.isnan(self.bills.top1) else self.bills.top1)
        return (
            o.leakage <= LEAKAGE_TARGET
            and o.mcc - o.floor_mcc <= LEAKAGE_TARGET
            and linked <= LINKING_TARGET
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "defence": self.defence,
            "offered": self.offered,
            "privacy_control": self.control,
            "occupancy": asdict(self.occupancy) | {"leakage": self.occupancy.leakage},
            "link_weeks": asdict(self.weeks),
            "link_bills": asdict(self.bills),
            "info_loss": self.info_loss,
            "passes": self.passes,
        }


@dataclass(frozen=True, slots=True)
class DpError:
    """The DP aggregate's error for one group size and plan."""

    homes: int
    epsilon_slot: float
    epsilon_day: float
    bound_wh: int
    day_bound_wh: int
    nrmse: float
    peak_error: float
    analytic_nrmse: float
    """√2·scale over the mean true slot sum (noise only, no clipping bias)."""


@dataclass
class Report:
    """Everything :func:`run` measured."""

    homes: int
    days: int
    seed: int
    rows: list[Row]
    dp: list[DpError]
    seconds: float = 0.0
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "note": SYNTHETIC_NOTE,
            "generator": GENERATOR_VERSION,
            "homes": self.homes,
            "days": self.days,
            "seed": self.seed,
            "seconds": round(self.seconds, 1),
            "rows": [r.to_json() for r in self.rows],
            "dp": [asdict(e) for e in self.dp],
            "checks": self.checks,
        }


def _info_loss(c: Cohort, defence: Defence, view: View) -> float:
    truth = coarsen(c.load, defence.slots)
    values = view.values
    if view.groups is not None:  # an aggregate: its error against the true group mean
        n = int(view.groups.max()) + 1
        sums = np.zeros((n, *truth.shape[1:]))
        np.add.at(sums, view.groups, truth)
        truth = (sums / np.bincount(view.groups, minlength=n)[:, None, None])[view.groups]
    ok = ~np.isnan(values)
    err = np.sqrt(np.mean((values[ok] - truth[ok]) ** 2))
    return float(err / max(float(truth.mean()), 1e-9))


def dp_errors(
    c: Cohort, plans: tuple[DpPlan, ...] = DP_PLANS, sizes: tuple[int, ...] = DP_SIZES, *,
    curves: int = 60, seed: int = 0,
) -> list[DpError]:  # fmt: skip
    """Error of released daily curves of groups of ``sizes`` homes (synthetic repeats)."""
    rng = np.random.default_rng([seed, 0xD9])
    out = []
    for plan in plans:
        hourly = np.round(coarsen(c.load, plan.slots) * 1000).astype(np.int64)
        for n in sizes:
            true = np.empty((curves, plan.slots), dtype=np.int64)
            sums = np.empty_like(true)
            for i in range(curves):
                homes = rng.choice(c.homes, size=n, replace=n > c.homes)
                days = rng.integers(0, c.days, size=n)
                wh = hourly[homes, days]
                true[i] = wh.sum(axis=0)
                sums[i] = clipped_sums(wh, np.zeros(n, dtype=np.int64), 1, plan)[0]
            noisy = release(sums, plan)
            err, peak = nrmse(true, noisy)
            analytic = math.sqrt(2) * plan.scale / max(float(true.mean()), 1e-9)
            out.append(
                DpError(
                    n,
                    plan.epsilon_slot,
                    plan.accounted_day,
                    plan.bound_wh,
                    plan.day_bound_wh,
                    err,
                    peak,
                    analytic,
                )
            )
    return out


def run(
    homes: int = 100,
    days: int = 364,
    seed: int = 0,
    *,
    defences: tuple[Defence, ...] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """The whole protocol on one cohort."""
    started = time.monotonic()
    c = cohort(homes, days, seed)
    chosen = defences if defences is not None else STUDIED + OFFERED
    rows = []
    for d in chosen:
        view = apply(d, c.load, seed)
        row = Row(
            d.name,
            d in OFFERED,
            d.control,
            occupancy(c, view, seed=seed),
            link_weeks(view, seed=seed),
            link_bills(c, view, seed=seed),
            _info_loss(c, d, view),
        )
        rows.append(row)
        if progress is not None:
            progress(f"{d.name}: ΔAUC {row.occupancy.leakage:+.3f}, top-1 {row.weeks.top1:.2f}")
    report = Report(homes, days, seed, rows, dp_errors(c, seed=seed))
    raw = next((r for r in rows if r.defence.startswith("raw")), None)
    if raw is not None:
        lo, hi = VALIDITY_BAND
        report.checks.append(
            {
                "check": "A2 accuracy on raw 30-minute data in the published 78-94% band",
                "value": raw.occupancy.accuracy,
                "met": lo <= raw.occupancy.accuracy <= hi,
            }
        )
    for r in rows:
        if r.offered and not r.control:
            report.checks.append(
                {
                    "check": f"{r.defence}: shared only under consent, not offered as a privacy "
                    f"control (ΔAUC {r.occupancy.leakage:+.3f}, linking top-1 "
                    f"{max(r.weeks.top1, np.nan_to_num(r.bills.top1)):.3f})",
                    "value": r.occupancy.leakage,
                    "met": True,
                    "consent_only": True,
                }
            )
        elif r.offered:
            report.checks.append(
                {
                    "check": f"{r.defence}: ΔAUC ≤ {LEAKAGE_TARGET}, MCC within "
                    f"{LEAKAGE_TARGET} of the floor, linking top-1 ≤ {LINKING_TARGET:.0%}",
                    "value": r.occupancy.leakage,
                    "met": r.passes,
                }
            )
    report.seconds = time.monotonic() - started
    return report


def write_plots(report: Report, out: Path) -> list[Path]:
    """leakage.png/svg (ΔAUC and linking per defence) and dp-error.png/svg; the paths."""
    import matplotlib  # noqa: PLC0415 - plotting only when asked for, headless

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    written = []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.45 * len(report.rows) + 2), sharey=True)
    names = [r.defence + ("" if r.offered else " (studied)") for r in report.rows]
    y = np.arange(len(names))
    ax1.barh(y, [r.occupancy.leakage for r in report.rows], color="tab:red")
    ax1.axvline(LEAKAGE_TARGET, color="k", linestyle="--", label="target 0.02")
    ax1.set_yticks(y, names, fontsize=8)
    ax1.set_xlabel("occupancy leakage ΔAUC = AUC(A2) - AUC(A0)")
    ax1.legend(loc="lower right")
    ax2.barh(y - 0.2, [r.weeks.top1 for r in report.rows], height=0.4, label="weeks top-1")
    ax2.barh(
        y + 0.2, [np.nan_to_num(r.bills.top1) for r in report.rows], height=0.4, label="bills top-1"
    )
    ax2.axvline(LINKING_TARGET, color="k", linestyle="--", label="target 5%")
    ax2.set_xlabel("linking accuracy (A3)")
    ax2.legend(loc="lower right")
    fig.suptitle(f"Privacy leakage per export kind, {report.homes} homes — {SYNTHETIC_NOTE}")
    fig.tight_layout()
    for ext in ("png", "svg"):
        p = out / f"privacy-leakage.{ext}"
        fig.savefig(p, dpi=110)
        written.append(p)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for eps in sorted({e.epsilon_day for e in report.dp}):
        rows = [e for e in report.dp if e.epsilon_day == eps]
        ax.plot([e.homes for e in rows], [e.nrmse for e in rows], "o-", label=f"ε_day={eps:g}")
        ax.plot([e.homes for e in rows], [e.analytic_nrmse for e in rows], ":", color="gray")
    ax.axhline(0.05, color="k", linestyle="--", label="NRMSE 5%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("homes in the aggregate")
    ax.set_ylabel("NRMSE of the hourly curve (dotted: analytic)")
    ax.set_title(f"DP aggregate error — {SYNTHETIC_NOTE}", fontsize=8)
    ax.legend()
    fig.tight_layout()
    for ext in ("png", "svg"):
        p = out / f"privacy-dp-error.{ext}"
        fig.savefig(p, dpi=110)
        written.append(p)
    plt.close(fig)
    return written
