"""The evaluation protocol on a small seeded population: splits, labels, and a real result.

CI runs this small version: it asserts that the fused detector beats the ratio baseline
(not an absolute figure), and that the protocol keeps its promises — feeder-disjoint folds,
training thieves made only from the homes given, labels from the ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from meterguard.analytics.theft.evaluate import Protocol, augment, evaluate, map_at_n, samples
from meterguard.analytics.theft.features import FEATURES
from meterguard.analytics.theft.synthetic import population


@pytest.fixture(scope="module")
def pop():  # type: ignore[no-untyped-def]
    return population(120, seed=11)


def test_the_population_has_its_ground_truth(pop) -> None:  # type: ignore[no-untyped-def]
    thieves = [h for h, a in enumerate(pop.attack) if a]
    assert len(thieves) == round(0.085 * 120)
    for h in thieves:
        s, e = int(pop.attack_start[h]), int(pop.attack_end[h])
        assert s >= 90 and e - s >= 30  # months 4-10, at least 30 days
    stolen = pop.stolen_kwh()
    honest = [h for h, a in enumerate(pop.attack) if not a]
    assert stolen[honest].sum() == 0  # confounders are not theft
    # The feeder meter measures the homes' net draw plus losses, not what they reported.
    members = pop.feeder_of == 0
    net = (pop.truth[members] - pop.export[members]).sum(axis=0)
    assert np.median(pop.feeder[0] - net) > 0


def test_samples_are_labelled_from_the_truth(pop) -> None:  # type: ignore[no-untyped-def]
    data = samples(pop, Protocol())
    assert data.x.shape[1] == len(FEATURES) and np.isfinite(data.x).all()
    for h in np.unique(data.home[data.label == 1]):
        assert pop.attack[h]


def test_training_thieves_come_only_from_the_homes_given(pop) -> None:  # type: ignore[no-untyped-def]
    homes = np.arange(0, 40)
    aug = augment(pop, homes, np.random.default_rng(0), Protocol())
    attacked = aug.home[aug.label == 1]
    assert set(attacked.tolist()) <= set(homes.tolist())
    assert (aug.week < Protocol().cutoff_week).all()  # inside the training period only


def test_map_at_n() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert map_at_n(scores, np.array([1, 0, 1, 0]), 3) == pytest.approx((1 + 2 / 3) / 2)
    assert map_at_n(scores, np.array([0, 0, 0, 1]), 2) == 0.0


def test_the_fused_detector_beats_the_ratio_baseline(pop) -> None:  # type: ignore[no-untyped-def]
    res = evaluate(pop, Protocol(folds=3), seed=11)
    fused, ratio = res.metrics["fused"]["all"], res.metrics["ratio"]["all"]
    assert fused["auc"] > ratio["auc"]
    assert fused["dr@0.05"] > ratio["dr@0.05"]
    assert res.customer["fused"]["auc"] > res.customer["ratio"]["auc"]
