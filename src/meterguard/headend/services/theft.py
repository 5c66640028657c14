"""Revenue protection: the grid's topology, theft scores on a schedule, suspects and cases.

Every rule of theft detection in the running system lives here, and every entry point (API,
dashboard, demo, scheduler) reaches it through :class:`RevenueProtection`:

* **the grid**: feeders, each with its feeder meter and the meters behind it
  (:meth:`~RevenueProtection.set_feeder`); visible to utility roles (:data:`GRID_ROLES`);
* **scoring** (:meth:`~RevenueProtection.score`): for each feeder, the stored, verified
  readings of its meters over the last :data:`SPAN_DAYS` days (hourly kWh; an hour with a
  missing quarter is missing), its feeder meter's, and its meters' fraud-log alarms go to
  the fused detector (:mod:`meterguard.analytics.theft.detect`, the one the evaluation
  measures, trained on synthetic homes at first use); each meter keeps its latest score and
  the evidence (the week's daily kWh against its history, the feeder's gap and how much of
  it the meter explains, the events);
* **suspicion is restricted**: only the ``investigator`` role (revenue protection) may list
  suspects, read a score or work a case (:data:`INVESTIGATOR_ROLES`); a consumer never sees
  it, and a score never changes a bill — billing does not read this module;
* **cases**: an investigator opens a case on a meter, assigns it to an investigator and
  closes it with an outcome; each step is audited with who and when.

No SQL here (:mod:`meterguard.headend.store.theft`), and no web framework.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from meterguard.analytics.theft.detect import TheftScorer, train
from meterguard.analytics.theft.features import event_counts
from meterguard.errors import AccessDeniedError, ConflictError, InvalidValueError, NotFoundError
from meterguard.headend.services.accounts import UTILITY_ROLES, Principal
from meterguard.headend.store.theft import CaseView, FeederView, ScoreView, TheftStore

__all__ = [
    "GRID_ROLES",
    "INVESTIGATOR_ROLES",
    "OUTCOMES",
    "SPAN_DAYS",
    "SUSPECT_THRESHOLD",
    "RevenueProtection",
    "Suspect",
]

INVESTIGATOR_ROLES = frozenset({"investigator"})
"""Who may see suspicion and work cases (revenue protection)."""
GRID_ROLES = UTILITY_ROLES
"""Who may see the grid's topology: every utility role."""
OUTCOMES = ("confirmed", "no-theft", "inconclusive")
SUSPECT_THRESHOLD = 0.5
"""A score at or above this is shown as a suspect (the fused detector's probability)."""
SPAN_DAYS = 49
"""Days of readings a score looks at (the week, its recent weeks, a baseline before them)."""
MIN_DAYS = 14
DAY = 86400

Readings = Callable[[str, int, int], list[tuple[int, int, int]]]


@dataclass(frozen=True, slots=True)
class Suspect:
    """A meter's score with its evidence and open case, as an investigator sees it."""

    meter_id: str
    score: float
    week_end: int
    scored_at: int
    evidence: dict[str, object]
    case: CaseView | None


def _hourly(
    rows: list[tuple[int, int, int]], start: int, days: int
) -> tuple[np.ndarray, np.ndarray]:
    """(days, 24) kWh imported and exported from register readings; NaN where missing."""
    quarters = days * 96
    imp = np.full(quarters, np.nan)
    exp = np.full(quarters, np.nan)
    prev: tuple[int, int, int] | None = None
    for t, i, e in rows:
        if prev is not None and t - prev[0] == 900:  # the registers' rise over interval t
            k = (t - start) // 900
            if 0 <= k < quarters:
                imp[k], exp[k] = (i - prev[1]) / 1000.0, (e - prev[2]) / 1000.0
        prev = (t, i, e)
    return imp.reshape(days, 24, 4).sum(axis=2), exp.reshape(days, 24, 4).sum(axis=2)


class RevenueProtection:
    """The grid, theft scores, suspects and cases."""

    def __init__(
        self,
        store: TheftStore,
        readings: Readings,
        *,
        scorer: Callable[[], TheftScorer] = train,
    ) -> None:
        self._store, self._readings, self._make_scorer = store, readings, scorer
        self._scorer: TheftScorer | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RevenueProtection(scorer={self._scorer!r})"

    # -- the grid -------------------------------------------------------------------------------

    def set_feeder(
        self, name: str, meter_id: str, members: Sequence[str], *, actor: str, now: int
    ) -> int:
        """Record a feeder, its feeder meter and the meters behind it.

        Raises:
            InvalidValueError: an empty or overlong name, or the feeder meter among its homes.
        """
        if not 0 < len(name) <= 64:
            raise InvalidValueError("a feeder's name has 1 to 64 characters")
        if meter_id in members:
            raise InvalidValueError("a feeder meter is not behind its own feeder")
        return self._store.put_feeder(name, meter_id, list(members), actor=actor, now=now)

    def feeders(self, who: Principal) -> list[FeederView]:
        """The topology.

        Raises:
            AccessDeniedError: not a utility role.
        """
        if who.role not in GRID_ROLES:
            raise AccessDeniedError("the grid's topology is for utility roles")
        return self._store.feeders()

    # -- scoring --------------------------------------------------------------------------------

    def scorer(self) -> TheftScorer:
        """The fused detector, trained on first use."""
        with self._lock:
            if self._scorer is None:
                self._scorer = self._make_scorer()
            return self._scorer

    def scorer_if_ready(self) -> TheftScorer | None:
        """The fused detector if it has been trained (it never trains here)."""
        return self._scorer

    def score(self, *, meter_now: float, now: int) -> int:
        """Score every meter behind every feeder for the week ending at the last whole day.

        Returns how many meters were scored. A feeder with fewer than :data:`MIN_DAYS` days
        of readings is skipped until it has them.
        """
        end_day = int(meter_now) // DAY  # the day in progress is not scored
        scored: list[ScoreView] = []
        for feeder in self._store.feeders():
            scored += self._score_feeder(feeder, end_day, now)
        self._store.put_scores(scored)
        return len(scored)

    def _score_feeder(self, feeder: FeederView, end_day: int, now: int) -> list[ScoreView]:
        members = list(feeder.members)
        if not members:
            return []
        span = self._readings(feeder.meter_id, (end_day - SPAN_DAYS) * DAY - 900, end_day * DAY)
        if not span:
            return []
        start_day = max(end_day - SPAN_DAYS, span[0][0] // DAY + 1)
        days = end_day - start_day
        if days < MIN_DAYS:
            return []
        start = start_day * DAY
        f_imp, f_exp = _hourly(span, start, days)  # readings before `start` only lead in
        imp = np.empty((len(members), days, 24))
        exp = np.empty((len(members), days, 24))
        for k, m in enumerate(members):
            imp[k], exp[k] = _hourly(self._readings(m, start - 900, end_day * DAY), start, days)
        scorer = self.scorer()  # trained only once a feeder has the history to be scored
        index = {m: k for k, m in enumerate(members)}
        events = np.array(
            [
                (index[m], (t - start) // DAY, code)
                for m, code, t in self._store.fraud_events(members, start)
            ],
            dtype=np.int64,
        ).reshape(-1, 3)
        counts = event_counts(events, len(members), days)
        feeder_net = np.nan_to_num(f_imp - f_exp)
        windows = scorer.windows
        out = scorer.score_feeder(imp, np.nan_to_num(exp), feeder_net, counts, days)
        rows = []
        c0 = days - windows.current
        for k, (m, s) in enumerate(zip(members, out, strict=True)):
            with np.errstate(invalid="ignore"):
                week = np.nansum(imp[k, c0:], axis=1)
                history = float(
                    np.nanmean(np.nansum(imp[k, max(0, c0 - windows.recent) : c0], axis=1))
                )
            evidence = {
                "feeder": feeder.name,
                "feeder_meter": feeder.meter_id,
                "week_kwh": [round(float(v), 2) for v in week],
                "history_kwh_per_day": round(history, 2),
                **s.evidence,
            }
            rows.append(ScoreView(m, round(s.score, 4), end_day * DAY, now, json.dumps(evidence)))
        return rows

    # -- suspicion (investigators only) ---------------------------------------------------------

    @staticmethod
    def _entitled(who: Principal) -> None:
        if who.role not in INVESTIGATOR_ROLES:
            raise AccessDeniedError("theft suspicion is for revenue protection (investigator)")

    def suspects(self, who: Principal, *, limit: int = 50) -> list[Suspect]:
        """The highest scores first, with evidence and each meter's latest case.

        Raises:
            AccessDeniedError: not an investigator.
        """
        self._entitled(who)
        cases: dict[str, CaseView] = {}
        for c in self._store.cases(limit=1000):
            cases.setdefault(c.meter_id, c)
        return [
            Suspect(s.meter_id, s.score, s.week_end, s.scored_at, json.loads(s.evidence),
                    cases.get(s.meter_id))
            for s in self._store.scores(limit=max(1, min(limit, 500)))
        ]  # fmt: skip

    def open_case(self, who: Principal, meter_id: str, *, note: str, now: int) -> int:
        """Open a case on a scored meter.

        Raises:
            AccessDeniedError: not an investigator.
            NotFoundError: the meter has no score.
            ConflictError: the meter already has a case that is not closed.
        """
        self._entitled(who)
        scores = self._store.scores(limit=1, meter_id=meter_id)
        if not scores:
            raise NotFoundError(f"no score for meter {meter_id[:32]}")
        if any(c.state != "closed" for c in self._store.cases(meter_id=meter_id)):
            raise ConflictError("this meter already has a case that is not closed")
        return self._store.open_case(
            meter_id, scores[0].score, actor=who.actor, note=note[:500], now=now
        )

    def assign(self, who: Principal, case_id: int, assignee: str, *, now: int) -> None:
        """Assign an open case.

        Raises:
            AccessDeniedError: not an investigator.
            InvalidValueError: no assignee.
            NotFoundError: no open or assigned case with that id.
        """
        self._entitled(who)
        if not 0 < len(assignee) <= 64:
            raise InvalidValueError("name the investigator the case goes to")
        if self._store.move_case(
            case_id, from_states=("open", "assigned"), actor=who.actor, now=now,
            action="theft.case.assign", detail=f"to {assignee}", state="assigned",
            assignee=assignee,
        ) is None:  # fmt: skip
            raise NotFoundError(f"no open case {case_id}")

    def close(self, who: Principal, case_id: int, outcome: str, *, note: str, now: int) -> None:
        """Close a case with an outcome (:data:`OUTCOMES`).

        Raises:
            AccessDeniedError: not an investigator.
            InvalidValueError: an unknown outcome.
            NotFoundError: no case that is not closed with that id.
        """
        self._entitled(who)
        if outcome not in OUTCOMES:
            raise InvalidValueError(f"outcome is one of {', '.join(OUTCOMES)}")
        if self._store.move_case(
            case_id, from_states=("open", "assigned"), actor=who.actor, now=now,
            action="theft.case.close", detail=f"{outcome}: {note[:400]}", state="closed",
            closed_by=who.actor, closed_at=now, outcome=outcome, note=note[:500],
        ) is None:  # fmt: skip
            raise NotFoundError(f"no open case {case_id}")

    def cases(self, who: Principal) -> list[CaseView]:
        """Every case, newest first.

        Raises:
            AccessDeniedError: not an investigator.
        """
        self._entitled(who)
        return self._store.cases()
