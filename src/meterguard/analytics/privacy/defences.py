"""What a recipient sees: each export kind and release as a transformation of the load.

A :class:`Defence` names one way data leaves the head-end — an export at a granularity,
with pseudonyms rotated every so many days, optionally rounded or with readings omitted;
a k-anonymous microaggregated research extract; a differentially private aggregate over
groups of homes — and :func:`apply` turns the cohort's 15-minute load into the
:class:`View` its recipient gets: one series per home and day at the export's resolution
(for an aggregate or a microaggregate, the group's series, shared by every member), and
how often the pseudonyms rotate. :data:`OFFERED` is what the product offers a third
party, :data:`STUDIED` the rest of the protocol's matrix.

The transformations used by the product's exports (:func:`coarsen`, :func:`round_to`,
:func:`microaggregate`) are the functions the export service calls; pseudonyms here are
modelled as what they are to an attacker without the key — a fresh random label per
rotation period — so the attacker must link traces by their content.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meterguard.analytics.privacy.dp import DpPlan, clipped_sums, release

__all__ = [
    "OFFERED",
    "STUDIED",
    "Defence",
    "View",
    "apply",
    "coarsen",
    "microaggregate",
    "round_to",
]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Defence:
    """One export or release kind."""

    name: str
    slots: int = 96
    """Values per day the recipient gets (96: 15-minute, 24: hourly, 1: daily)."""
    rotate_days: int = 7
    """Pseudonyms change every this many days (0: the real identity is shown)."""
    round_kwh: float = 0.0
    omit: float = 0.0
    """Fraction of values withheld at random."""
    k: int = 0
    """Microaggregation: each home is replaced by the mean of a group of at least k."""
    dp: DpPlan | None = None
    group: int = 0
    """Aggregate over groups (feeders) of this many homes."""
    month: bool = False
    """Monthly totals only (one value per billing period)."""
    control: bool = True
    """Offered as a privacy control (False: shared only under the consumer's consent, as
    personal data; the manifest and the documentation say it is not anonymous)."""


@dataclass(frozen=True)
class View:
    """What the recipient has: (homes, days, slots) values, NaN where withheld."""

    defence: Defence
    values: F64
    rotate_days: int
    groups: npt.NDArray[np.int64] | None = None
    """For an aggregate, the group (feeder) of each home."""


def coarsen(load: npt.NDArray[np.floating], slots: int) -> F64:
    """Sum (…, 96) 15-minute values into ``slots`` equal buckets a day."""
    per = load.shape[-1] // slots
    x = np.asarray(load, dtype=np.float64).reshape(*load.shape[:-1], slots, per)
    return np.asarray(x.sum(axis=-1), dtype=np.float64)


def round_to(values: F64, step: float) -> F64:
    """Round to a multiple of ``step`` (no-op for 0)."""
    return values if step <= 0 else np.round(values / step) * step


def microaggregate(vectors: F64, k: int) -> npt.NDArray[np.int64]:
    """Group labels putting every row of ``vectors`` in a group of k to 2k-1 similar rows.

    MDAV-style: rows are ordered along their first principal component and cut into runs
    of k (the last run takes the remainder), so similar homes share a group.
    """
    n = len(vectors)
    if k < 2 or n < k:
        raise ValueError("microaggregation needs 2 <= k <= rows")
    x = np.nan_to_num(vectors - np.nanmean(vectors, axis=0))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    order = np.argsort(x @ vt[0], kind="stable")
    labels = np.empty(n, dtype=np.int64)
    groups = n // k
    labels[order] = np.minimum(np.arange(n) // k, groups - 1)
    return labels


def apply(defence: Defence, load: npt.NDArray[np.float32], seed: int = 0) -> View:
    """The recipient's view of ``load`` (homes, days, 96) under ``defence``."""
    rng = np.random.default_rng([seed, 0xDEF])
    homes, days, _ = load.shape
    if defence.month:
        raise ValueError("monthly totals are evaluated by the linking attacker only")
    values = coarsen(load, defence.slots)
    if defence.dp is not None:
        plan = defence.dp
        groups = rng.permutation(homes) % max(1, homes // defence.group)
        n_groups = int(groups.max()) + 1
        wh = np.round(coarsen(load, plan.slots) * 1000).astype(np.int64)
        out = np.empty((n_groups, days, plan.slots))
        for d in range(days):
            out[:, d] = release(clipped_sums(wh[:, d], groups, n_groups, plan), plan)
        counts = np.bincount(groups, minlength=n_groups)[:, None, None]
        values = (out / 1000.0 / counts)[groups]
        return View(defence, values, defence.rotate_days, groups)
    if defence.k:
        out = np.empty_like(values)
        period = max(defence.rotate_days, 1)
        for first in range(0, days, period):
            block = values[:, first : first + period].reshape(homes, -1)
            labels = microaggregate(block, defence.k)
            means = np.stack([block[labels == g].mean(axis=0) for g in range(labels.max() + 1)])
            out[:, first : first + period] = means[labels].reshape(homes, -1, defence.slots)
        values = out
    values = round_to(values, defence.round_kwh)
    if defence.omit > 0:
        values = values.copy()
        values[rng.random(values.shape) < defence.omit] = np.nan
    return View(defence, values, defence.rotate_days)


OFFERED = (
    Defence("export interval (15 min), weekly pseudonyms", slots=96, control=False),
    Defence("export hourly, weekly pseudonyms", slots=24, control=False),
    Defence("export daily, weekly pseudonyms", slots=1, control=False),
    Defence(
        "export daily, rounded 1 kWh, weekly pseudonyms", slots=1, round_kwh=1.0, control=False
    ),
    Defence("research extract, hourly, k=10 microaggregation", slots=24, k=10),
    Defence("research extract, daily, k=10 microaggregation", slots=1, k=10),
    Defence("DP aggregate N=50, ε_day=10", slots=24, dp=DpPlan(10.0), group=50),
    Defence("DP aggregate N=100, ε_day=1", slots=24, dp=DpPlan(1.0), group=100),
)
"""What the product lets a third party have, each evaluated against the targets."""

STUDIED = (
    Defence("raw 30 min (validity check)", slots=48, rotate_days=0),
    Defence("export hourly, pseudonyms rotated daily", slots=24, rotate_days=1),
    Defence("export hourly, rounded 0.5 kWh, 10% omitted", slots=24, round_kwh=0.5, omit=0.1),
    Defence("export 4-hourly, weekly pseudonyms", slots=6),
    Defence("research extract, hourly, k=20 microaggregation", slots=24, k=20),
    Defence("research extract, daily, k=5 microaggregation", slots=1, k=5),
    Defence("DP aggregate N=10, ε_day=10", slots=24, dp=DpPlan(10.0), group=10),
)
"""The protocol's other cells, measured for the record, not offered as controls."""
