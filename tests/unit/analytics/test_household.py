"""The household model: deterministic per seed and day, plausible, with consistent ground truth."""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from meterguard.analytics.household import MINUTES_PER_DAY, HouseholdModel, Occupancy

DAY = dt.date(2026, 1, 14)


@settings(max_examples=25)
@given(st.integers(0, 2**31), st.integers(0, 3000))
def test_same_seed_and_day_same_series(seed: int, offset: int) -> None:
    day = dt.date(2024, 1, 1) + dt.timedelta(days=offset)
    a, b = HouseholdModel.for_meter(seed).day(day), HouseholdModel.for_meter(seed).day(day)
    assert np.array_equal(a.import_wh, b.import_wh)
    assert np.array_equal(a.occupancy, b.occupancy)
    assert a.runs == b.runs
    assert a.import_wh.shape == (MINUTES_PER_DAY,)
    assert (a.import_wh >= 0).all() and (a.export_wh >= 0).all()
    # Import and export are never both non-zero in the same minute (net metering).
    assert not ((a.import_wh > 0) & (a.export_wh > 0)).any()


def test_days_are_independent_of_order() -> None:
    m = HouseholdModel.for_meter(11)
    forward = [m.day(DAY + dt.timedelta(days=i)).import_total_wh for i in range(5)]
    backward = [m.day(DAY + dt.timedelta(days=i)).import_total_wh for i in reversed(range(5))]
    assert forward == list(reversed(backward))


def test_different_homes_differ() -> None:
    a, b = HouseholdModel.for_meter(1).day(DAY), HouseholdModel.for_meter(2).day(DAY)
    assert not np.array_equal(a.import_wh, b.import_wh)


def test_yearly_consumption_is_household_sized() -> None:
    totals = []
    for seed in range(8):
        m = HouseholdModel.for_meter(seed)
        totals.append(sum(d.import_total_wh for d in m.days(dt.date(2025, 1, 1), 365)) / 1000)
    assert all(1000 < kwh < 12000 for kwh in totals), totals


def test_ground_truth_explains_the_load() -> None:
    m = HouseholdModel(seed=5, occupants=3)
    day = m.day(DAY)
    # Appliance runs only happen while someone is home.
    for run in day.runs:
        assert day.occupancy[run.start_minute] == Occupancy.HOME
    # Cooking shows up in the metered energy: the run's minutes are well above the day's median.
    for run in (r for r in day.runs if r.appliance == "cooking"):
        window = day.import_wh[run.start_minute : run.start_minute + run.duration_minutes]
        assert window.mean() > np.median(day.import_wh) + run.watts / 60 * 0.8
    # Asleep at 03:00, and away days leave only the base load.
    assert day.occupancy[180] == Occupancy.ASLEEP or day.occupancy[180] == Occupancy.AWAY


def test_pv_exports_around_noon_in_summer() -> None:
    m = HouseholdModel(seed=3, has_pv=True, pv_peak_w=5000)
    summer = m.days(dt.date(2026, 6, 1), 14)
    assert sum(d.export_total_wh for d in summer) > 0
    noon = sum(d.export_wh[660:780].sum() for d in summer)
    night = sum(d.export_wh[:240].sum() for d in summer)  # before 04:00
    assert noon > 0 and night == 0
