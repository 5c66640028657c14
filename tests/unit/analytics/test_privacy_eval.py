"""The privacy attackers and defences on a small synthetic cohort (ANALYTICS.md §3.3).

Each test can fail: the attackers must find what raw data shows, the defences must remove
it, and the DP mechanism's accounting and noise must be what OpenDP says.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterguard.analytics.privacy.attackers import link_bills, link_weeks, occupancy
from meterguard.analytics.privacy.defences import Defence, apply, microaggregate
from meterguard.analytics.privacy.dp import DpPlan, bound_days, release
from meterguard.analytics.privacy.evaluate import run
from meterguard.analytics.privacy.synthetic import cohort


@pytest.fixture(scope="module")
def small():
    return cohort(40, 63, seed=3)


def test_cohort_is_deterministic_and_has_its_secrets(small):
    again = cohort(40, 63, seed=3)
    assert np.array_equal(small.load, again.load)
    assert 0.3 < small.presence.mean() < 0.8
    assert small.away.any()  # vacations happen
    assert set(np.unique(small.size)) <= {1, 2, 3, 4, 5}
    bills = small.bills()
    assert bills.shape[0] == 40 and (bills >= 0).all()


def test_the_attacker_sees_occupancy_in_raw_data(small):
    raw = apply(Defence("raw", slots=48, rotate_days=0), small.load)
    o = occupancy(small, raw, day_step=2)
    assert o.auc > o.floor_auc + 0.08  # the supervised attacker beats the time-of-day floor
    assert 0.7 < o.accuracy < 0.99
    assert link_weeks(raw).top1 == 1.0  # real identities link trivially


def test_an_aggregate_hides_occupancy_and_identity(small):
    view = apply(Defence("dp", slots=24, dp=DpPlan(10.0), group=10), small.load)
    o = occupancy(small, view, day_step=2)
    assert o.leakage < 0.03
    assert link_weeks(view).top1 <= 0.15  # four groups of ten: chance is 1/10


def test_pseudonyms_alone_do_not_stop_linking(small):
    view = apply(Defence("hourly", slots=24), small.load)
    weeks = link_weeks(view)
    assert weeks.top1 > 3 * weeks.chance  # why an export is not called anonymous
    bills = link_bills(small, apply(Defence("monthly", slots=24, rotate_days=28), small.load))
    assert bills.top1 > 3 * bills.chance


def test_microaggregation_groups_have_at_least_k_rows():
    rng = np.random.default_rng(0)
    x = rng.random((53, 7))
    labels = microaggregate(x, 10)
    assert np.bincount(labels).min() >= 10
    with pytest.raises(ValueError, match="k"):
        microaggregate(x, 60)


def test_dp_accounting_is_opendps_and_the_noise_has_its_scale():
    plan = DpPlan(10.0)  # 24 slots of ≤ 8 kWh, a day of ≤ 40 kWh
    assert plan.sensitivity_day == 40000
    assert plan.accounted_day == pytest.approx(10.0)
    assert plan.epsilon_slot == pytest.approx(2.0)
    noisy = release(np.zeros((200, 24), dtype=np.int64), plan)
    # discrete Laplace of scale b: variance ≈ 2 b²
    assert np.var(noisy) == pytest.approx(2 * plan.scale**2, rel=0.15)
    assert noisy.any()
    with pytest.raises(ValueError):
        DpPlan(0.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(10**6), 10**6), min_size=24, max_size=24))
def test_one_home_never_moves_a_release_beyond_its_bounds(day):
    plan = DpPlan(1.0)
    bounded = bound_days(np.array([day]), plan)[0]
    assert (bounded >= 0).all() and (bounded <= plan.bound_wh).all()
    assert bounded.sum() <= plan.day_bound_wh


def test_the_evaluation_reports_floor_leakage_and_checks():
    report = run(24, 42, seed=1, defences=(
        Defence("raw 30 min (validity check)", slots=48, rotate_days=0),
        Defence("daily", slots=1),
    ))  # fmt: skip
    raw = report.rows[0]
    assert raw.defence.startswith("raw")
    assert not raw.passes  # raw data is no privacy control
    assert report.checks[0]["check"].startswith("A2 accuracy")
    assert {e.homes for e in report.dp} == {10, 50, 100, 1000}
    big = [e for e in report.dp if e.homes == 1000 and e.epsilon_day == 10]
    small = [e for e in report.dp if e.homes == 10 and e.epsilon_day == 10]
    assert big[0].nrmse < small[0].nrmse  # error falls with the aggregate's size
    assert report.to_json()["note"].startswith("synthetic")
