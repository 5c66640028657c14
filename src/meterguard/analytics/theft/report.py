"""Many seeds of the theft protocol, summarised as mean ± std, tables and plots.

:func:`run` evaluates one population per seed (:func:`~.evaluate.evaluate`) and
:func:`summarise` turns the results into rows of mean ± std per detector and attack model,
with the baselines beside them and the targets of ANALYTICS.md §3.2 checked;
:func:`write_plots` draws the ROC curves and a per-model bar chart (matplotlib, Agg) into
a directory. The only IO here is :func:`write_plots`' files; every table says that the
data is synthetic.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from meterguard.analytics.theft.attacks import MODELS
from meterguard.analytics.theft.evaluate import BASELINES, DETECTORS, Protocol, Result, evaluate
from meterguard.analytics.theft.synthetic import GENERATOR_VERSION, population

__all__ = ["SYNTHETIC_NOTE", "TARGETS", "Summary", "run", "summarise", "write_plots"]

SYNTHETIC_NOTE = f"synthetic data ({GENERATOR_VERSION}); not comparable with SGCC or CER results"
TARGETS = (
    ("fused", "h1-h6", "dr@0.01", 0.95, "DR ≥ 0.95 at 1% FPR over h1-h6"),
    ("fused", "h1", "dr@0.01", 0.80, "h1 DR ≥ 0.80 at 1% FPR"),
    ("fused", "all", "dr@0.05", 0.94, "DR ≥ 0.94 at 5% FPR, evasive and held-out confounder in"),
)


@dataclass
class Summary:
    """Mean and standard deviation over seeds."""

    seeds: list[int]
    homes: int
    metrics: dict[str, dict[str, dict[str, tuple[float, float]]]]
    customer: dict[str, dict[str, tuple[float, float]]]
    localisation: tuple[float, float]
    targets: list[dict[str, Any]]
    beats_baselines: dict[str, bool]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "note": SYNTHETIC_NOTE,
            "generator": GENERATOR_VERSION,
            "seeds": self.seeds,
            "homes": self.homes,
            "seconds": round(self.seconds, 1),
            "metrics": self.metrics,
            "customer": self.customer,
            "balance_localisation": self.localisation,
            "targets": self.targets,
            "beats_every_baseline": self.beats_baselines,
        }


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    threadpool_limits(1)


def _one(homes: int, seed: int, protocol: Protocol) -> Result:
    return evaluate(population(homes, seed=seed), protocol, seed=seed)


def run(
    homes: int,
    seeds: list[int],
    protocol: Protocol | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    processes: int | None = None,
) -> list[Result]:
    """One population and one evaluation per seed, the seeds spread over the CPU's cores."""
    protocol = protocol or Protocol()
    workers = max(1, min(len(seeds), processes or os.cpu_count() or 1))
    if workers == 1:
        out = []
        for seed in seeds:
            if progress:
                progress(f"seed {seed}: {homes} homes")
            out.append(_one(homes, seed, protocol))
        return out
    # Fresh interpreters (not forks: OpenMP's thread pool does not survive a fork), each with
    # one OpenMP thread, so the processes share the cores instead of oversubscribing them.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
        futures = [pool.submit(_one, homes, seed, protocol) for seed in seeds]
        results = []
        for seed, future in zip(seeds, futures, strict=True):
            results.append(future.result())
            if progress:
                progress(f"seed {seed}: done")
        return results


def _ms(values: list[float]) -> tuple[float, float]:
    v = [x for x in values if not math.isnan(x)]
    if not v:
        return math.nan, math.nan
    return float(np.mean(v)), float(np.std(v))


def summarise(results: list[Result], seeds: list[int], homes: int, seconds: float) -> Summary:
    """Mean ± std of every metric over the seeds, and the targets checked."""
    metrics: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for d in DETECTORS + BASELINES:
        metrics[d] = {}
        groups = {g for r in results for g in r.metrics.get(d, {})}
        for g in [*MODELS, "h1-h6", "all"]:
            if g not in groups:
                continue
            names = {k for r in results for k in r.metrics[d].get(g, {})}
            metrics[d][g] = {
                k: _ms([r.metrics[d][g][k] for r in results if g in r.metrics[d]])
                for k in sorted(names)
            }
    customer = {
        d: {k: _ms([r.customer[d][k] for r in results]) for k in results[0].customer[d]}
        for d in DETECTORS + BASELINES
    }
    targets = []
    for det, group, metric, floor, text in TARGETS:
        got = metrics[det].get(group, {}).get(metric, (math.nan, math.nan))[0]
        targets.append({"target": text, "value": got, "met": bool(got >= floor)})
    beats = {}
    for metric in ("auc", "dr@0.01"):
        fused = metrics["fused"]["all"][metric][0]
        beats[metric] = all(fused > metrics[b]["all"][metric][0] for b in BASELINES)
    return Summary(
        seeds=seeds,
        homes=homes,
        metrics=metrics,
        customer=customer,
        localisation=_ms([r.balance_localisation for r in results]),
        targets=targets,
        beats_baselines=beats,
        seconds=seconds,
    )


def write_plots(results: list[Result], summary: Summary, out: Path) -> list[Path]:
    """ROC curves (first seed) and DR@1% per model and detector, as PNG and SVG."""
    import matplotlib  # noqa: PLC0415 - plotting only when asked for, headless

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for d in DETECTORS + BASELINES:
        fpr, tpr = results[0].roc[d]
        auc = summary.metrics[d]["all"]["auc"][0]
        ax.plot(fpr, tpr, label=f"{d} (AUC {auc:.3f})", lw=2 if d == "fused" else 1)
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_xlabel("false-positive rate (customer-weeks, log scale)")
    ax.set_ylabel("detection rate")
    ax.set_title(
        f"Theft detection, all models, seed {summary.seeds[0]}\n{SYNTHETIC_NOTE}", fontsize=8
    )
    ax.legend(fontsize=7, loc="lower right")
    for ext in ("png", "svg"):
        p = out / f"theft-roc.{ext}"
        fig.savefig(p, dpi=120, bbox_inches="tight")
        written.append(p)
    plt.close(fig)
    models = [m for m in MODELS if m in summary.metrics["fused"]]
    dets = ["fused", "consumption", "balance", "gbtd", "cpbetd", "ratio"]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(dets)
    for k, d in enumerate(dets):
        vals = [summary.metrics[d].get(m, {}).get("dr@0.01", (0.0, 0.0)) for m in models]
        ax.bar(
            np.arange(len(models)) + k * width,
            [v[0] for v in vals],
            width,
            yerr=[v[1] for v in vals],
            label=d,
        )
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models, rotation=30, fontsize=8)
    ax.set_ylabel("detection rate at 1% FPR")
    ax.set_ylim(0, 1.05)
    ax.set_title(
        f"Per attack model, mean ± std over seeds {summary.seeds}; {SYNTHETIC_NOTE}", fontsize=8
    )
    ax.legend(fontsize=7, ncol=len(dets), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    for ext in ("png", "svg"):
        p = out / f"theft-models.{ext}"
        fig.savefig(p, dpi=120, bbox_inches="tight")
        written.append(p)
    plt.close(fig)
    return written
