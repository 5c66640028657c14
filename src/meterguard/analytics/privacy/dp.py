"""Differentially private aggregate load curves: bounded per-home days with OpenDP noise.

A release is the sum over a group of homes (a feeder, a region) of each home's energy in
each slot of a day, with noise. Each home's day is bounded here before summing: every slot
clipped to ``[0, bound_wh]``, and the day scaled down (integer floor) when its total
exceeds ``day_bound_wh``, so no home moves one released value by more than ``bound_wh``
nor the whole curve by more than ``min(day_bound_wh, slots·bound_wh)`` in L1. OpenDP adds
discrete Laplace noise to the integer sums — noise that is safe against the floating-point
attacks on naive Laplace sampling (Mironov 2012) — and does the privacy accounting: the
measurement's privacy map turns those L1 bounds into ε.

What one release of a day costs one consumer (add/remove-one-home neighbours):

* per slot, ``epsilon_slot`` = map(bound_wh);
* per day, ``epsilon_day`` = map(min(day_bound_wh, slots·bound_wh)).

The head-end keeps the ledger of those costs per consumer and day and refuses a release
that would exceed the budget (:mod:`meterguard.headend.services.releases`); this module only
computes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DpPlan", "bound_days", "clipped_sums", "nrmse", "release"]

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class DpPlan:
    """How a day's aggregate curve is released: its ε per day and the contribution bounds."""

    epsilon_day: float
    bound_wh: int = 8000
    """Each home's energy per slot is clipped to [0, bound_wh]."""
    day_bound_wh: int = 40000
    """Each home's day is scaled down to at most this total."""
    slots: int = 24
    """Slots a day (24: hourly)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon_day) and 0 < self.epsilon_day <= 100):
            raise ValueError("epsilon_day must be in (0, 100]")
        if not 1 <= self.bound_wh <= 100_000 or not 1 <= self.day_bound_wh <= 1_000_000:
            raise ValueError("the bounds must be positive Wh (slot ≤ 100 000, day ≤ 10^6)")
        if self.slots not in (1, 2, 4, 6, 8, 12, 24, 48, 96):
            raise ValueError("slots must divide a day of 96 readings")

    @property
    def sensitivity_day(self) -> int:
        """The L1 bound of one home's whole day, Wh."""
        return min(self.day_bound_wh, self.slots * self.bound_wh)

    @property
    def scale(self) -> float:
        """The Laplace scale, Wh."""
        return self.sensitivity_day / self.epsilon_day

    @property
    def epsilon_slot(self) -> float:
        """What one released slot costs a consumer (OpenDP's privacy map)."""
        return float(_measurement(self.scale).map(self.bound_wh))

    @property
    def accounted_day(self) -> float:
        """What a whole released day costs a consumer (OpenDP's privacy map)."""
        return float(_measurement(self.scale).map(self.sensitivity_day))


@cache
def _measurement(scale: float) -> Any:
    import opendp.prelude as dp  # noqa: PLC0415 - a 265 MB library, loaded when used

    dp.enable_features("contrib")
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
    return dp.m.make_laplace(*space, scale=scale)


def bound_days(wh: npt.NDArray[np.integer[Any]], plan: DpPlan) -> I64:
    """(homes, slots) Wh with every slot clipped and every day scaled to the plan's bounds."""
    clipped = np.clip(wh.astype(np.int64), 0, plan.bound_wh)
    total = clipped.sum(axis=1, keepdims=True)
    over = total > plan.day_bound_wh
    scaled = (clipped * plan.day_bound_wh) // np.maximum(total, 1)
    return np.where(over, scaled, clipped)


def clipped_sums(wh: npt.NDArray[np.integer[Any]], groups: I64, n_groups: int, plan: DpPlan) -> I64:
    """(n_groups, slots) sums of the bounded (homes, slots) days, per group."""
    out = np.zeros((n_groups, wh.shape[1]), dtype=np.int64)
    np.add.at(out, groups, bound_days(wh, plan))
    return out


def release(sums: I64, plan: DpPlan) -> I64:
    """The noisy sums (same shape), from OpenDP's discrete Laplace mechanism."""
    flat = [int(v) for v in sums.reshape(-1)]
    noisy = _measurement(plan.scale)(flat)
    return np.asarray(noisy, dtype=np.int64).reshape(sums.shape)


def nrmse(true: npt.NDArray[Any], noisy: npt.NDArray[Any]) -> tuple[float, float]:
    """(NRMSE, peak error) of released curves against the truth.

    NRMSE is the root-mean-square error over the mean true value; the peak error is the
    error at each curve's true peak slot over that peak, averaged over curves.
    """
    t = np.asarray(true, dtype=np.float64).reshape(-1, true.shape[-1])
    n = np.asarray(noisy, dtype=np.float64).reshape(t.shape)
    rmse = float(np.sqrt(np.mean((n - t) ** 2)))
    peak = np.argmax(t, axis=1)
    rows = np.arange(len(t))
    top = np.maximum(t[rows, peak], 1e-9)
    return rmse / max(float(t.mean()), 1e-9), float(
        np.mean(np.abs(n[rows, peak] - t[rows, peak]) / top)
    )
