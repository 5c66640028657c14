"""A seeded synthetic grid for theft evaluation: homes behind feeders, confounders, thieves.

:func:`population` follows ANALYTICS.md §3.1: homes from the household model
(:mod:`meterguard.analytics.household`, one-minute simulation summed to ``slots`` a day),
grouped behind feeders (distribution transformers) of 8-30 homes whose feeder meter
measures the homes' net draw plus technical losses (no-load and load-squared) and its own
measurement noise; honest confounders (vacations with nobody home, a change in occupancy, a new
or removed appliance, missing readings, supply outages with their power-failure events);
thieves at a prevalence ``p`` whose attack starts in months 4-10 and lasts at least 30 days,
with the model drawn from a list; tamper events near the attack's start with probability
``q`` (physical: cover removed or a DC field; cyber: configuration change or failed
logins), and spurious fraud events on honest homes at 1% a year.

Everything is returned with its ground truth (:class:`Population`); the same arguments
give the same population. The data is synthetic, and says so wherever it is reported.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from meterguard.analytics.household import HouseholdModel
from meterguard.analytics.theft.attacks import MODELS, apply, draw
from meterguard.analytics.theft.features import CYBER_EVENTS, PHYSICAL_EVENTS, POWER_EVENTS

__all__ = [
    "CONFOUNDERS",
    "GENERATOR_VERSION",
    "Population",
    "feeder_losses",
    "population",
]

GENERATOR_VERSION = "meterguard-synthetic-grid/1"
CONFOUNDERS = ("vacation", "occupancy", "appliance", "missing", "outage")
START = dt.date(2021, 1, 4)  # a Monday: week w is days 7w .. 7w+6

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Population:
    """Homes, feeders, what was drawn and what was reported, and the ground truth."""

    seed: int
    slots: int
    """Slots a day (24: hourly)."""
    truth: F32
    """(homes, days, slots) kWh drawn from the grid (import)."""
    export: F32
    """(homes, days, slots) kWh exported (PV), reported honestly."""
    reported: F32
    """(homes, days, slots) kWh the meters reported; NaN where a reading is missing."""
    feeder_of: npt.NDArray[np.int64]
    """(homes,) the feeder each home is behind."""
    feeder: F32
    """(feeders, days, slots) kWh net measured at each feeder meter."""
    events: npt.NDArray[np.int64]
    """(n, 3) rows of (home, day, event code): the meters' fraud and standard log events."""
    attack: tuple[str, ...]
    """Each home's theft model, '' for an honest home."""
    attack_start: npt.NDArray[np.int64]
    attack_end: npt.NDArray[np.int64]
    """Days [start, end) of each thief's attack; -1 for honest homes."""
    confounders: tuple[tuple[int, str, int, int], ...] = field(default=())
    """(home, kind, first day, end day) of every confounder."""

    @property
    def homes(self) -> int:
        """How many homes."""
        return int(self.truth.shape[0])

    @property
    def days(self) -> int:
        """How many days."""
        return int(self.truth.shape[1])

    @property
    def feeders(self) -> int:
        """How many feeders."""
        return int(self.feeder.shape[0])

    def stolen_kwh(self) -> npt.NDArray[np.float64]:
        """(homes, days) energy drawn but not reported (missing readings are not theft)."""
        diff = self.truth.astype(np.float64) - np.nan_to_num(self.reported, nan=0.0)
        diff[np.isnan(self.reported)] = 0.0
        return np.asarray(np.maximum(diff, 0.0).sum(axis=2), dtype=np.float64)


def feeder_losses(
    net_kwh: npt.NDArray[np.float64], no_load_kwh: float, load_coefficient: float
) -> npt.NDArray[np.float64]:
    """Technical losses of a feeder in each slot: the transformer's no-load loss + r·P².

    ``net_kwh`` is the energy through the feeder in each slot; ``load_coefficient`` is the
    loss per kWh², per slot (copper losses grow with the square of the current).
    """
    return no_load_kwh + load_coefficient * np.square(net_kwh)


def _day(rng: np.random.Generator, lo: int, hi: int, days: int) -> int:
    """A day in [lo, hi), the range clamped to a short population's days."""
    lo = max(0, min(lo, days - 1))
    return int(rng.integers(lo, max(hi, lo + 1)))


def _home_days(
    seed: int, days: int, slots: int, away: frozenset[int] = frozenset()
) -> tuple[F32, F32]:
    model = HouseholdModel.for_meter(seed)
    imp = np.empty((days, slots), dtype=np.float32)
    exp = np.empty((days, slots), dtype=np.float32)
    per = 1440 // slots
    for d in range(days):
        s = model.day(START + dt.timedelta(days=d), away=d in away)
        imp[d] = s.import_wh.reshape(slots, per).sum(axis=1) / 1000.0
        exp[d] = s.export_wh.reshape(slots, per).sum(axis=1) / 1000.0
    return imp, exp


def population(
    homes: int,
    *,
    seed: int = 0,
    days: int = 364,
    slots: int = 24,
    prevalence: float = 0.085,
    models: tuple[str, ...] = tuple(MODELS),
    evidence: float = 0.3,
    feeder_size: tuple[int, int] = (8, 30),
) -> Population:
    """A synthetic grid of ``homes`` homes over ``days`` days (ANALYTICS.md §3.1)."""
    rng = np.random.default_rng([seed, 0x7EF7])
    # Vacations first (1-2 a year for 30% of homes, 3-21 days): the household model's days
    # with nobody home (fridge, standby), drawn into the home's series itself.
    vacations: dict[int, list[tuple[int, int]]] = {}
    for h in range(homes):
        if rng.random() < 0.3:
            for _ in range(int(rng.integers(1, 3))):
                d0 = _day(rng, 14, days - 21, days)
                vacations.setdefault(h, []).append((d0, min(days, d0 + int(rng.integers(3, 22)))))
    truth = np.empty((homes, days, slots), dtype=np.float32)
    export = np.empty((homes, days, slots), dtype=np.float32)
    for h in range(homes):
        away = frozenset(d for d0, d1 in vacations.get(h, []) for d in range(d0, d1))
        truth[h], export[h] = _home_days(seed * 1_000_003 + h, days, slots, away)
    # Feeders: consecutive homes in groups of 8..30.
    feeder_of = np.empty(homes, dtype=np.int64)
    h = f = 0
    while h < homes:
        n = int(rng.integers(feeder_size[0], feeder_size[1] + 1))
        feeder_of[h : h + n] = f
        h, f = h + n, f + 1
    feeders = f
    events: list[tuple[int, int, int]] = []
    conf: list[tuple[int, str, int, int]] = []
    reported_mask = np.zeros((homes, days, slots), dtype=bool)  # True: reading missing
    day_min = truth.min(axis=2)
    for h in range(homes):
        conf += [(h, "vacation", d0, d1) for d0, d1 in vacations.get(h, [])]
        if rng.random() < 0.1:  # occupancy change: someone moves out or in
            d0 = _day(rng, 28, days - 28, days)
            factor = rng.uniform(0.55, 0.8) if rng.random() < 0.5 else rng.uniform(1.2, 1.6)
            truth[h, d0:] *= factor
            conf.append((h, "occupancy", d0, days))
        if rng.random() < 0.15:  # a new or removed appliance: ±10-40% of the variable load
            d0 = _day(rng, 28, days - 28, days)
            delta = rng.uniform(0.1, 0.4) * (1 if rng.random() < 0.5 else -1)
            base = day_min[h, d0:, None]
            truth[h, d0:] = base + (truth[h, d0:] - base) * (1 + delta)
            conf.append((h, "appliance", d0, days))
        if rng.random() < 0.3:  # missing readings: communication gaps of 1-72 h
            for _ in range(int(rng.integers(1, 4))):
                start = int(rng.integers(0, days * slots - 72))
                length = int(rng.integers(1, 73)) * slots // 24
                flat = reported_mask[h].reshape(-1)
                flat[start : start + max(length, 1)] = True
                conf.append((h, "missing", start // slots, (start + length) // slots + 1))
        if rng.random() < 0.01 * days / 365:  # a spurious fraud event (a loose cover, a bump)
            events.append(
                (h, int(rng.integers(0, days)), int(rng.choice(PHYSICAL_EVENTS + CYBER_EVENTS)))
            )
    # Supply outages per feeder: nothing flows, every home logs power failure and return.
    for f in range(feeders):
        members = np.flatnonzero(feeder_of == f)
        for _ in range(int(rng.poisson(1.0))):
            d = int(rng.integers(0, days))
            s0 = int(rng.integers(0, slots))
            s1 = min(slots, s0 + max(1, int(rng.integers(1, 9)) * slots // 24))
            truth[members, d, s0:s1] = 0.0
            export[members, d, s0:s1] = 0.0
            for member in members.tolist():
                events += [(member, d, POWER_EVENTS[0]), (member, d, POWER_EVENTS[1])]
                conf.append((member, "outage", d, d + 1))
    reported = truth.copy()
    # Thieves.
    attack = [""] * homes
    a_start = np.full(homes, -1, dtype=np.int64)
    a_end = np.full(homes, -1, dtype=np.int64)
    count = max(1, round(prevalence * homes)) if prevalence > 0 else 0
    thieves = rng.choice(homes, size=count, replace=False)
    daily = truth.sum(axis=2).mean(axis=1)
    for k, h in enumerate(sorted(int(t) for t in thieves)):
        name = models[k % len(models)] if len(thieves) >= len(models) else str(rng.choice(models))
        lo = min(90, max(0, days - 30))
        d0 = int(rng.integers(lo, max(lo, min(300, days - 30)) + 1))
        d1 = min(days, _day(rng, d0 + 30, days + 1, days + 1))
        params = draw(name, rng, slots)
        donor = None
        if name == "substitute":
            light = np.flatnonzero(daily <= 0.4 * daily[h])
            other = int(rng.choice(light)) if light.size else int(np.argmin(daily))
            donor = truth[other, d0:d1].astype(np.float64)
        reported[h, d0:d1] = apply(
            name,
            truth[h, d0:d1].astype(np.float64),
            rng,
            params,
            history=reported[h, max(0, d0 - 28) : d0].astype(np.float64),
            offset=np.arange(d1 - d0),
            duration=d1 - d0,
            donor=donor,
        )
        attack[h], a_start[h], a_end[h] = name, d0, d1
        if rng.random() < evidence:
            codes = PHYSICAL_EVENTS if MODELS[name].kind == "physical" else CYBER_EVENTS
            events.append((h, d0 + int(rng.integers(0, 3)), int(rng.choice(codes))))
    reported[reported_mask] = np.nan
    # Feeder meters: the homes' net draw, plus losses, plus the feeder meter's own noise.
    net = truth.astype(np.float64) - export
    feeder = np.empty((feeders, days, slots), dtype=np.float32)
    for f in range(feeders):
        flow = net[feeder_of == f].sum(axis=0)
        peak = max(float(np.percentile(flow, 99)), 1e-6)
        loss = feeder_losses(
            flow, rng.uniform(0.1, 0.3) * 24 / slots, rng.uniform(0.02, 0.04) / peak
        )
        loss[np.isclose(flow, 0.0)] = 0.0  # an outage: no flow, no losses
        noise = rng.normal(0.0, 0.002, size=flow.shape) * np.abs(flow)
        feeder[f] = flow + loss + noise
    return Population(
        seed=seed,
        slots=slots,
        truth=truth,
        export=export,
        reported=reported.astype(np.float32),
        feeder_of=feeder_of,
        feeder=feeder,
        events=np.array(events, dtype=np.int64).reshape(-1, 3),
        attack=tuple(attack),
        attack_start=a_start,
        attack_end=a_end,
        confounders=tuple(conf),
    )
