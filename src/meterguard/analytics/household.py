"""A seeded household consumption model at one-minute resolution, with its ground truth.

:class:`HouseholdModel` simulates one home: who is in (asleep, home, away),
appliances with realistic cycles (fridge compressor, standby, lighting that
follows daylight, cooking, laundry, electric heating in winter and cooling in
summer, optional EV charging and rooftop PV that exports), and returns per-minute
import and export energy plus the ground truth (occupancy per minute and every
appliance run) that privacy and theft analytics are evaluated against later.

Every day is generated from its own random stream, seeded by ``(seed, day)``,
so any window can be computed on its own, in any order, with the same result:
a meter keeps no series in memory, only its seed. A year of one home takes
well under a second (numpy, vectorised per day; see ``bench/fleet.py``).

This module does not know about registers, OBIS codes or time zones beyond a
fixed offset; the meter integrates its output into registers and profiles.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["ApplianceRun", "DaySeries", "HouseholdModel", "Occupancy"]

MINUTES_PER_DAY = 1440
EPOCH = dt.date(2020, 1, 1)


class Occupancy:
    """Occupancy codes of the ground truth."""

    ASLEEP = 0
    HOME = 1
    AWAY = 2


@dataclass(frozen=True, slots=True)
class ApplianceRun:
    """One appliance run of the ground truth: minutes from the day's start, and power."""

    appliance: str
    start_minute: int
    duration_minutes: int
    watts: float


@dataclass(frozen=True, slots=True)
class DaySeries:
    """One simulated day (local time, 1440 minutes)."""

    day: dt.date
    import_wh: npt.NDArray[np.float64]
    """Energy drawn from the grid in each minute, Wh."""
    export_wh: npt.NDArray[np.float64]
    """Energy exported (PV surplus) in each minute, Wh."""
    occupancy: npt.NDArray[np.int8]
    runs: tuple[ApplianceRun, ...] = field(default=())

    @property
    def import_total_wh(self) -> float:
        """The day's imported energy."""
        return float(self.import_wh.sum())

    @property
    def export_total_wh(self) -> float:
        """The day's exported energy."""
        return float(self.export_wh.sum())


def _daylight(day: dt.date, latitude: float) -> tuple[float, float]:
    """Sunrise and sunset in minutes after local midnight (simple declination model)."""
    doy = day.timetuple().tm_yday
    decl = -23.44 * math.cos(2 * math.pi * (doy + 10) / 365)
    x = -math.tan(math.radians(latitude)) * math.tan(math.radians(decl))
    half = math.degrees(math.acos(max(-1.0, min(1.0, x)))) / 15 * 60  # minutes
    noon = 12 * 60 + 10
    return noon - half, noon + half


@dataclass(frozen=True, slots=True)
class HouseholdModel:
    """One home's consumption model; deterministic for a seed."""

    seed: int
    latitude: float = 52.0
    occupants: int = 2
    has_ev: bool = False
    has_pv: bool = False
    pv_peak_w: float = 3500.0
    electric_heating: bool = True
    activity: float = 1.0
    """Share of 20-minute blocks at home in which someone uses small appliances (1: all)."""

    @classmethod
    def for_meter(cls, seed: int) -> HouseholdModel:
        """Draw a household's fixed traits (size, EV, PV, heating) from ``seed``."""
        rng = np.random.default_rng([seed, 0xFEED])
        return cls(
            seed=seed,
            occupants=int(rng.integers(1, 6)),
            has_ev=bool(rng.random() < 0.15),
            has_pv=bool(rng.random() < 0.2),
            pv_peak_w=float(rng.uniform(2000, 6000)),
            electric_heating=bool(rng.random() < 0.5),
        )

    def day(self, day: dt.date, *, away: bool = False) -> DaySeries:
        """Simulate one local day; ``away``: nobody is home all day (a vacation)."""
        rng = np.random.default_rng([self.seed, (day - EPOCH).days & 0xFFFFFFFF])
        t = np.arange(MINUTES_PER_DAY)
        weekend = day.weekday() >= 5
        runs: list[ApplianceRun] = []

        # Occupancy: asleep until wake, maybe away during the day, asleep after bedtime.
        wake = int(np.clip(rng.normal(450 if not weekend else 510, 35), 300, 660))
        bed = int(np.clip(rng.normal(1380, 40), 1260, 1439))
        occupancy = np.full(MINUTES_PER_DAY, Occupancy.HOME, dtype=np.int8)
        occupancy[:wake] = Occupancy.ASLEEP
        occupancy[bed:] = Occupancy.ASLEEP
        leave = back = -1
        if rng.random() < (0.25 if weekend else 0.75):
            leave = int(np.clip(rng.normal(wake + 60, 20), wake + 20, 720))
            back = int(np.clip(rng.normal(1050 if not weekend else 900, 60), leave + 60, bed - 30))
            occupancy[leave:back] = Occupancy.AWAY
        home = occupancy == Occupancy.HOME
        if rng.random() < 0.05 or away:  # a day away altogether (holiday)
            occupancy[:] = Occupancy.AWAY
            home[:] = False

        # Always-on standby and the fridge compressor cycle.
        watts = np.full(MINUTES_PER_DAY, rng.uniform(60, 150))
        period = int(rng.integers(40, 60))
        on = int(rng.integers(12, 22))
        phase = int(rng.integers(0, period))
        fridge_w = float(rng.uniform(90, 150))
        watts += np.where((t + phase) % period < on, fridge_w, 0.0)

        # Lighting: home, awake and dark.
        sunrise, sunset = _daylight(day, self.latitude)
        dark = (t < sunrise + 20) | (t > sunset - 30)
        light_w = 60.0 + 50.0 * self.occupants
        watts += np.where(home & dark, light_w * rng.uniform(0.6, 1.4), 0.0)
        # Small appliances while home (TV, computer, kettle spikes).
        busy = home
        if self.activity < 1.0:  # quiet time at home: reading, a nap, out in the garden
            quiet = np.random.default_rng([self.seed, (day - EPOCH).days & 0xFFFFFFFF, 0xAC7])
            busy = home & np.repeat(quiet.random(MINUTES_PER_DAY // 20) < self.activity, 20)
        watts += np.where(busy, rng.gamma(2.0, 35.0 + 15.0 * self.occupants, MINUTES_PER_DAY), 0.0)

        def run(name: str, start: int, duration: int, w: float) -> None:
            start = max(0, min(MINUTES_PER_DAY - 1, start))
            end = min(MINUTES_PER_DAY, start + duration)
            watts[start:end] += w
            runs.append(ApplianceRun(name, start, end - start, round(w, 1)))

        # Cooking: breakfast and dinner when someone is home then.
        if home[min(wake + 30, MINUTES_PER_DAY - 1)]:
            run(
                "cooking",
                wake + int(rng.integers(10, 40)),
                int(rng.integers(8, 20)),
                rng.uniform(1200, 2000),
            )
        dinner = int(np.clip(rng.normal(1110, 30), 1020, 1260))
        if home[dinner]:
            run("cooking", dinner, int(rng.integers(25, 60)), rng.uniform(1500, 2600))
        # Laundry: a few times a week, heating phase then motor.
        if rng.random() < 0.12 * self.occupants:
            start = int(rng.integers(wake + 30, max(wake + 31, bed - 120)))
            if home[start]:
                run("washing-machine heat", start, 15, rng.uniform(1800, 2200))
                run("washing-machine motor", start + 15, 60, rng.uniform(200, 400))
        # Heating and cooling by season (northern hemisphere).
        doy = day.timetuple().tm_yday
        season = math.cos(2 * math.pi * (doy - 15) / 365)  # +1 mid-January, -1 mid-July
        if self.electric_heating and season > 0.2:
            duty = 0.25 + 0.5 * season
            cycle = (t + int(rng.integers(0, 30))) % 30 < duty * 30
            watts += np.where(cycle & (occupancy != Occupancy.AWAY), rng.uniform(1500, 2500), 0.0)
        if season < -0.6 and rng.random() < 0.6:
            afternoon = (t > 780) & (t < 1200) & home
            watts += np.where(afternoon & ((t % 20) < 12), rng.uniform(800, 1400), 0.0)
        # EV charging on arrival in the evening.
        if self.has_ev and back > 0 and rng.random() < 0.5:
            run("ev-charger", back + int(rng.integers(0, 20)), int(rng.integers(90, 200)), 7400.0)

        watts = np.maximum(watts, 0.0)
        consumption_wh = watts / 60.0
        export_wh = np.zeros(MINUTES_PER_DAY)
        if self.has_pv:
            clouds = rng.uniform(0.15, 0.95)
            daylen = max(sunset - sunrise, 1.0)
            sun = np.sin(np.pi * np.clip((t - sunrise) / daylen, 0.0, 1.0))
            pv_wh = self.pv_peak_w * clouds * sun * (0.35 + 0.65 * (1 - season) / 2) * 0.8 / 60.0
            net = consumption_wh - pv_wh
            export_wh = np.maximum(-net, 0.0)
            consumption_wh = np.maximum(net, 0.0)
        return DaySeries(day, consumption_wh, export_wh, occupancy, tuple(runs))

    def days(self, start: dt.date, count: int) -> list[DaySeries]:
        """Simulate ``count`` consecutive days from ``start``."""
        return [self.day(start + dt.timedelta(days=i)) for i in range(count)]
