"""The fused theft detector as the head-end runs it: trained on synthetic homes, explained.

:func:`train` fits the ``fused`` detector of the evaluation (:mod:`.evaluate`: gradient
boosting over the own-history, peer, feeder-balance and event evidence of
:mod:`.features`) on a synthetic population, with training thieves made from its honest
homes exactly as the protocol does — the same code, so what runs is what was measured.
:meth:`TheftScorer.score_feeder` scores the homes behind one feeder for the week ending on
a day and returns, with each score, the evidence a revenue-protection analyst reads: the
week against the home's history and its peers, the feeder's gap, how much of it the home
explains, and the fraud-log events.

Pure: arrays in, scores out. The head-end's service turns stored readings into arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier

from meterguard.analytics.theft.evaluate import Protocol, Samples, augment, fit_fused, samples
from meterguard.analytics.theft.features import FEATURES, Windows, event_week, feeder_week
from meterguard.analytics.theft.synthetic import population

__all__ = ["EVIDENCE", "Suspicion", "TheftScorer", "train"]

F64 = npt.NDArray[np.float64]
EVIDENCE = (
    "level_recent",
    "level_base_peer",
    "baseload_base_peer",
    "feeder_gap",
    "missing_share",
    "comovement",
    "onset",
    "balance",
    "physical_28d",
    "cyber_28d",
)
"""The evidence shown beside a score (a subset of :data:`~.features.FEATURES`)."""


@dataclass(frozen=True, slots=True)
class Suspicion:
    """One home's score for one week and the evidence behind it."""

    score: float
    evidence: dict[str, float]


@dataclass(frozen=True)
class TheftScorer:
    """A fitted fused detector."""

    model: HistGradientBoostingClassifier
    windows: Windows
    trained_on: str

    def __repr__(self) -> str:
        return f"TheftScorer({self.trained_on})"

    def __str__(self) -> str:
        return f"gradient boosting trained on {self.trained_on}"

    def score_feeder(
        self,
        reported: F64,
        export: F64,
        feeder: F64,
        events: F64,
        end: int,
    ) -> list[Suspicion]:
        """Score the homes behind one feeder for the window ending at day ``end``.

        ``reported``/``export``: (homes, days, 24) kWh, NaN where missing; ``feeder``: (days,
        24) kWh net at the feeder meter; ``events``: (homes, days, 3) daily counts of
        physical, cyber and power-failure events (:func:`~.features.event_counts`).
        """
        feats = feeder_week(reported, export, feeder, end, self.windows)
        feats |= event_week(events, end, self.windows)
        x = np.column_stack([feats[n] for n in FEATURES])
        p = self.model.predict_proba(x)[:, 1]
        return [
            Suspicion(float(p[k]), {n: round(float(feats[n][k]), 4) for n in EVIDENCE})
            for k in range(len(p))
        ]


def train(homes: int = 60, *, seed: int = 7, days: int = 84) -> TheftScorer:
    """Fit the fused detector on a synthetic population (about 5 s for 60 homes on this machine)."""
    pop = population(homes, seed=seed, days=days)
    protocol = Protocol(cutoff_week=days // 7)
    rng = np.random.default_rng([seed, 0x7A1])
    data: Samples = samples(pop, protocol)
    aug = augment(pop, np.arange(pop.homes), rng, protocol)
    model = fit_fused(Samples.concat([data, aug]), seed)
    return TheftScorer(
        model, protocol.windows, f"{homes} synthetic homes, seed {seed}, {days} days"
    )
