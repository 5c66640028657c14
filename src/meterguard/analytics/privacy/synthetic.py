"""A seeded synthetic cohort for privacy evaluation: load curves and the secrets they hide.

:func:`cohort` simulates homes with the household model
(:mod:`meterguard.analytics.household`) at 15-minute resolution, with vacations of 3-21
days spent away, and keeps the secrets of ANALYTICS.md §3.3 as ground truth:

1. slot-level presence: is an active occupant (awake and home) present for at least half
   of each 30-minute slot between 07:00 and 23:00 (night is excluded: sleep looks like
   absence);
2. days away altogether;
3. the household size (1-5);
4. identity: the home index itself, which pseudonyms hide.

It also gives each home's monthly bills (energy rounded to 1 kWh, as printed on a bill),
which a linking attacker uses as identified side information. The data is synthetic and
says so wherever it is reported.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meterguard.analytics.household import HouseholdModel, Occupancy

__all__ = ["GENERATOR_VERSION", "PRESENCE_SLOTS", "START", "Cohort", "cohort"]

GENERATOR_VERSION = "meterguard-synthetic-cohort/1"
START = dt.date(2021, 1, 4)  # a Monday
SLOTS = 96  # 15-minute readings, as the meters store them
PRESENCE_FIRST = 14  # 07:00 in 30-minute slots
PRESENCE_SLOTS = 32  # 07:00 .. 23:00

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Cohort:
    """Homes' 15-minute load and the secrets it hides."""

    seed: int
    load: F32
    """(homes, days, 96) kWh imported per 15 minutes."""
    presence: npt.NDArray[np.bool_]
    """(homes, days, 32) an active occupant present in each 30-minute slot 07:00-23:00."""
    away: npt.NDArray[np.bool_]
    """(homes, days) nobody home all day."""
    size: npt.NDArray[np.int64]
    """(homes,) occupants."""
    weekend: npt.NDArray[np.bool_]
    """(days,) Saturday or Sunday."""
    month: npt.NDArray[np.int64]
    """(days,) the billing period (calendar month index from the start) each day is in."""

    @property
    def homes(self) -> int:
        """How many homes."""
        return int(self.load.shape[0])

    @property
    def days(self) -> int:
        """How many days."""
        return int(self.load.shape[1])

    def bills(self) -> npt.NDArray[np.float64]:
        """(homes, months) energy billed per full calendar month, kWh rounded to 1 kWh."""
        months = np.unique(self.month)
        full = [
            m for m in months if (self.month == m).sum() >= 28 and m not in (months[0], months[-1])
        ] or list(months)
        totals = np.stack([self.load[:, self.month == m].sum(axis=(1, 2)) for m in full], axis=1)
        return np.asarray(np.round(totals.astype(np.float64)), dtype=np.float64)


def cohort(homes: int = 100, days: int = 364, seed: int = 0) -> Cohort:
    """Simulate ``homes`` homes for ``days`` days from :data:`START`; seeded, deterministic."""
    if homes < 2 or days < 14:
        raise ValueError("a cohort needs at least 2 homes and 14 days")
    rng = np.random.default_rng([seed, 0x9E1F])
    load = np.empty((homes, days, SLOTS), dtype=np.float32)
    presence = np.empty((homes, days, PRESENCE_SLOTS), dtype=np.bool_)
    away = np.zeros((homes, days), dtype=np.bool_)
    size = np.empty(homes, dtype=np.int64)
    dates = [START + dt.timedelta(days=d) for d in range(days)]
    for h in range(homes):
        model = dataclasses.replace(
            HouseholdModel.for_meter(int(rng.integers(0, 2**31))),
            activity=float(rng.uniform(0.3, 0.9)),
        )
        size[h] = model.occupants
        vacation = np.zeros(days, dtype=np.bool_)
        for _ in range(int(rng.integers(0, 3))):
            length = int(rng.integers(3, 22))
            first = int(rng.integers(0, max(1, days - length)))
            vacation[first : first + length] = True
        for d, day in enumerate(dates):
            s = model.day(day, away=bool(vacation[d]))
            load[h, d] = s.import_wh.reshape(SLOTS, 15).sum(axis=1) / 1000.0
            active = (s.occupancy == Occupancy.HOME).reshape(48, 30).mean(axis=1) >= 0.5
            presence[h, d] = active[PRESENCE_FIRST : PRESENCE_FIRST + PRESENCE_SLOTS]
            away[h, d] = bool((s.occupancy == Occupancy.AWAY).all())
    weekend = np.array([d.weekday() >= 5 for d in dates])
    month = np.array([(d.year - START.year) * 12 + d.month - START.month for d in dates])
    return Cohort(seed, load, presence, away, size, weekend, month)
