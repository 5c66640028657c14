"""The theft evaluation protocol (ANALYTICS.md §3.2) and its metrics, with the baselines.

:func:`samples` turns a :class:`~.synthetic.Population` into customer-weeks (one row of
:data:`~.features.FEATURES` per home and week, with the week's raw readings for the
baselines that want them, its label, attack model and stolen energy). :func:`augment`
makes training thieves out of *training* homes only: it applies a model to an honest
home's true draw from a start inside the training period and recomputes that home's week
with its feeder, as a real attack would change it. :func:`evaluate` runs one population:

* **splits**: feeder-disjoint (so customer-disjoint) GroupKFold; models are fitted on the
  weeks before a cut-off and scored on the weeks after it; the held-out confounder's homes
  never reach training; nothing is oversampled, and no attack is injected before the split;
* **detectors**: ``events`` (fraud-log evidence alone), ``consumption`` (own history and
  peers, gradient boosting), ``balance`` (the feeder energy-balance evidence alone, gradient
  boosting),
  ``fused`` (all three, gradient boosting) — and the baselines ``ratio`` (week against its
  recent weeks), ``iforest`` (IsolationForest on the weekly features), ``cpbetd``
  (a per-customer RBF SVM trained on that customer's own weeks and their h1-h6 versions,
  after Jokar et al.) and ``gbtd`` (global gradient boosting on daily mean, std, min and
  max, after Punmiya & Choe);
* **metrics** per attack model: customer-week AUC, detection rate at 1% and 5% false
  positives, detection delay in days and stolen-kWh recall (at the 1% threshold), plus
  customer-level AUC and MAP@N over all models; and how often the balance detector ranks a
  thief first behind an unbalanced feeder.

Pure computation (scikit-learn, numpy): no files, no printing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from sklearn.model_selection import GroupKFold
from sklearn.svm import SVC

from meterguard.analytics.theft.attacks import BASIC, MODELS, apply, draw
from meterguard.analytics.theft.features import (
    CYBER_EVENTS,
    EVENT_FEATURES,
    FEATURES,
    FEEDER_FEATURES,
    OWN_FEATURES,
    PHYSICAL_EVENTS,
    Windows,
    event_counts,
    event_week,
    feeder_week,
)
from meterguard.analytics.theft.synthetic import Population

__all__ = [
    "BASELINES",
    "DETECTORS",
    "Protocol",
    "Result",
    "Samples",
    "augment",
    "dr_at_fpr",
    "evaluate",
    "fit_fused",
    "map_at_n",
    "samples",
]

DETECTORS = ("events", "consumption", "balance", "fused")
BASELINES = ("ratio", "iforest", "cpbetd", "gbtd")
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Protocol:
    """The protocol's choices (defaults: ANALYTICS.md §3.2)."""

    folds: int = 5
    cutoff_week: int = 26
    first_week: int = 3
    held_out: str = "appliance"
    augment_per_home: int = 2
    windows: Windows = Windows()
    fpr: tuple[float, ...] = (0.01, 0.05)


@dataclass
class Samples:
    """Customer-weeks: features, raw readings, labels."""

    x: F64
    raw: F64
    """(n, 7, slots): the week's readings (NaN as 0) for the raw-data baselines."""
    home: npt.NDArray[np.int64]
    feeder: npt.NDArray[np.int64]
    week: npt.NDArray[np.int64]
    label: npt.NDArray[np.int64]
    """1: attacked on at least 4 days of the week; 0: not attacked; -1: 1-3 days (ignored)."""
    model: npt.NDArray[np.str_]
    stolen: F64
    start: npt.NDArray[np.int64]

    def take(self, keep: npt.NDArray[np.bool_]) -> Samples:
        """The rows where ``keep``."""
        return Samples(**{k: v[keep] for k, v in self.__dict__.items()})

    @staticmethod
    def concat(parts: list[Samples]) -> Samples:
        """Rows of several sample sets."""
        return Samples(
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in Samples.__annotations__}
        )


def _label(start: int, end: int, d0: int, d1: int) -> int:
    days = max(0, min(end, d1) - max(start, d0)) if start >= 0 else 0
    return 1 if days >= 4 else (-1 if days else 0)


def _rows(
    pop: Population,
    members: npt.NDArray[np.int64],
    rep: F64,
    w: int,
    counts: F64,
    windows: Windows,
) -> F64:
    end = 7 * (w + 1)
    f = int(pop.feeder_of[members[0]])
    feats = feeder_week(
        rep, pop.export[members].astype(np.float64), pop.feeder[f].astype(np.float64), end, windows
    )
    feats |= event_week(counts, end, windows)
    return np.column_stack([feats[n] for n in FEATURES])


def samples(pop: Population, protocol: Protocol = Protocol()) -> Samples:
    """Every home's weeks from ``first_week`` on, with labels from the ground truth."""
    counts = event_counts(pop.events, pop.homes, pop.days)
    rep = pop.reported.astype(np.float64)
    stolen = pop.stolen_kwh()
    parts: list[Samples] = []
    for f in range(pop.feeders):
        members = np.flatnonzero(pop.feeder_of == f)
        for w in range(protocol.first_week, pop.days // 7):
            x = _rows(pop, members, rep[members], w, counts[members], protocol.windows)
            d0, d1 = 7 * w, 7 * w + 7
            parts.append(
                Samples(
                    x=x,
                    raw=np.nan_to_num(rep[members, d0:d1]),
                    home=members,
                    feeder=np.full(len(members), f),
                    week=np.full(len(members), w),
                    label=np.array(
                        [
                            _label(int(pop.attack_start[h]), int(pop.attack_end[h]), d0, d1)
                            for h in members
                        ]
                    ),
                    model=np.array([pop.attack[h] for h in members]),
                    stolen=stolen[members, d0:d1].sum(axis=1),
                    start=pop.attack_start[members],
                )
            )
    return Samples.concat(parts)


def augment(
    pop: Population,
    homes: npt.NDArray[np.int64],
    rng: np.random.Generator,
    protocol: Protocol = Protocol(),
    *,
    models: tuple[str, ...] = tuple(MODELS),
    evidence: float = 0.3,
) -> Samples:
    """Training thieves made from the honest ``homes``, inside the training period only."""
    counts = event_counts(pop.events, pop.homes, pop.days)
    rep_all = pop.reported.astype(np.float64)
    cut = 7 * protocol.cutoff_week
    parts: list[Samples] = []
    for h in homes:
        if pop.attack[h]:
            continue
        members = np.flatnonzero(pop.feeder_of == pop.feeder_of[h])
        k = int(np.flatnonzero(members == h)[0])
        for _ in range(protocol.augment_per_home):
            name = str(rng.choice(models))
            d0 = int(rng.integers(7 * (protocol.first_week + 1), cut - 7))
            d1 = cut
            rep = rep_all[members].copy()
            truth = pop.truth[h, d0:d1].astype(np.float64)
            params = draw(name, rng, pop.slots)
            donor = None
            if name == "substitute":
                daily = pop.truth[:, d0:d1].sum(axis=(1, 2))
                light = np.flatnonzero(daily <= 0.4 * daily[h])
                donor = pop.truth[
                    int(rng.choice(light)) if light.size else int(np.argmin(daily)), d0:d1
                ]
            attacked = apply(
                name,
                truth,
                rng,
                params,
                history=rep[k, max(0, d0 - 28) : d0],
                offset=np.arange(d1 - d0),
                duration=d1 - d0,
                donor=None if donor is None else donor.astype(np.float64),
            )
            missing = np.isnan(rep[k, d0:d1])
            rep[k, d0:d1] = np.where(missing, np.nan, attacked)
            c = counts[members].copy()
            if rng.random() < evidence:
                codes = PHYSICAL_EVENTS if MODELS[name].kind == "physical" else CYBER_EVENTS
                c[
                    k,
                    min(d0 + int(rng.integers(0, 3)), pop.days - 1),
                    0 if codes is PHYSICAL_EVENTS else 1,
                ] += 1
            first = d0 // 7 + (1 if d0 % 7 > 3 else 0)
            weeks = rng.choice(
                np.arange(first, protocol.cutoff_week),
                size=min(2, protocol.cutoff_week - first),
                replace=False,
            )
            for w in weeks:
                # The whole feeder's week: the thief, and its neighbours who now sit behind
                # an unbalanced feeder without stealing (so a gap alone accuses no one).
                x = _rows(pop, members, rep, int(w), c, protocol.windows)
                d_0, d_1 = 7 * int(w), 7 * int(w) + 7
                s = np.maximum(pop.truth[h, d_0:d_1] - np.nan_to_num(rep[k, d_0:d_1]), 0).sum()
                labels = np.array(
                    [
                        1
                        if j == k
                        else _label(int(pop.attack_start[m]), int(pop.attack_end[m]), d_0, d_1)
                        for j, m in enumerate(members)
                    ]
                )
                stolen = np.zeros(len(members))
                stolen[k] = s
                parts.append(
                    Samples(
                        x=x,
                        raw=np.nan_to_num(rep[:, d_0:d_1]),
                        home=members,
                        feeder=np.full(len(members), pop.feeder_of[h]),
                        week=np.full(len(members), int(w)),
                        label=labels,
                        model=np.array(
                            [name if j == k else pop.attack[m] for j, m in enumerate(members)]
                        ),
                        stolen=stolen,
                        start=np.array(
                            [d0 if j == k else pop.attack_start[m] for j, m in enumerate(members)]
                        ),
                    )
                )
    return Samples.concat(parts) if parts else Samples.concat([])


# ---------------------------------------------------------------------------- metrics


def dr_at_fpr(scores_pos: F64, scores_neg: F64, fpr: float) -> tuple[float, float]:
    """(detection rate, threshold) at the threshold where ``fpr`` of negatives score above."""
    if not len(scores_neg) or not len(scores_pos):
        return math.nan, math.inf
    thr = float(np.quantile(scores_neg, 1.0 - fpr, method="higher"))
    return float(np.mean(scores_pos > thr)), thr


def map_at_n(scores: F64, labels: npt.NDArray[np.int64], n: int) -> float:
    """Zheng et al.'s MAP@N: mean precision at the ranks of the true thieves in the top N."""
    order = np.argsort(-scores, kind="stable")[:n]
    hits = labels[order] == 1
    if not hits.any():
        return 0.0
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


# ---------------------------------------------------------------------------- detectors


def _gbm(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_iter=300,
        learning_rate=0.06,
        max_leaf_nodes=31,
        l2_regularization=1.0,
        random_state=seed,
    )


def fit_fused(train: Samples, seed: int) -> HistGradientBoostingClassifier:
    """The ``fused`` detector: gradient boosting over every feature, on labelled weeks."""
    use = train.label >= 0
    return _gbm(seed).fit(train.x[use], train.label[use])


def _daily_stats(raw: F64, x: F64) -> F64:
    day = raw.reshape(raw.shape[0], 7, -1)
    cols = [day.mean(axis=2), day.std(axis=2), day.min(axis=2), day.max(axis=2)]
    ratio = x[:, [FEATURES.index("level_recent"), FEATURES.index("level_base")]]
    return np.column_stack([*cols, ratio])


def _columns(names: tuple[str, ...]) -> list[int]:
    return [FEATURES.index(n) for n in names]


def _cpbetd(train_raw: dict[int, F64], test: Samples, rng: np.random.Generator, slots: int) -> F64:
    """Per-customer RBF SVM on the customer's own (normalised) weeks and their h1-h6 versions."""
    out = np.zeros(len(test.home))
    for h in np.unique(test.home):
        own = train_raw.get(int(h))
        rows = test.home == h
        if own is None or len(own) < 2:
            continue
        scale = max(float(own.mean()), 1e-6)
        pos = [
            apply(name, week.reshape(7, slots), rng, draw(name, rng, slots)).reshape(-1)
            for week in own
            for name in BASIC
        ]
        xs = np.vstack([own.reshape(len(own), -1), np.array(pos)]) / scale
        ys = np.r_[np.zeros(len(own)), np.ones(len(pos))]
        svm = SVC(kernel="rbf", C=1.0, gamma="scale", class_weight="balanced").fit(xs, ys)
        out[rows] = svm.decision_function(test.raw[rows].reshape(int(rows.sum()), -1) / scale)
    return out


@dataclass
class Result:
    """One population's scores and metrics."""

    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """detector -> attack model (or 'h1-h6', 'all') -> metric -> value."""
    customer: dict[str, dict[str, float]] = field(default_factory=dict)
    """detector -> customer-level metric (AUC, MAP@N) -> value."""
    balance_localisation: float = math.nan
    """Share of unbalanced feeder-weeks with a thief whose top balance score is a thief's."""
    roc: dict[str, tuple[F64, F64]] = field(default_factory=dict)
    """detector -> (false-positive rates, true-positive rates) over all models."""


def _score_fold(train: Samples, test: Samples, seed: int) -> dict[str, F64]:
    lab = train.label
    use = lab >= 0
    x, y = train.x[use], lab[use]
    scores: dict[str, F64] = {}
    col = {n: FEATURES.index(n) for n in FEATURES}
    scores["ratio"] = 1.0 - test.x[:, col["level_recent"]]
    ev = _columns(EVENT_FEATURES[:4])
    scores["events"] = (
        test.x[:, ev] @ np.array([2.0, 1.0, 2.0, 1.0]) - 0.01 * test.x[:, col["power_week"]]
    )
    feeder = _columns(FEEDER_FEATURES)
    scores["balance"] = _gbm(seed).fit(x[:, feeder], y).predict_proba(test.x[:, feeder])[:, 1]
    own = _columns(OWN_FEATURES)
    honest = x[y == 0][:, own]
    forest = IsolationForest(n_estimators=200, random_state=seed).fit(honest)
    scores["iforest"] = -forest.score_samples(test.x[:, own])
    scores["consumption"] = _gbm(seed).fit(x[:, own], y).predict_proba(test.x[:, own])[:, 1]
    scores["fused"] = fit_fused(train, seed).predict_proba(test.x)[:, 1]
    scores["gbtd"] = (
        _gbm(seed)
        .fit(_daily_stats(train.raw[use], x), y)
        .predict_proba(_daily_stats(test.raw, test.x))[:, 1]
    )
    return scores


def evaluate(pop: Population, protocol: Protocol = Protocol(), *, seed: int = 0) -> Result:
    """Run the protocol on one population."""
    rng = np.random.default_rng([seed, 0xE7A1])
    data = samples(pop, protocol)
    held = {h for h, kind, _, _ in pop.confounders if kind == protocol.held_out}
    groups = data.feeder
    feeders = np.unique(groups)
    folds = GroupKFold(n_splits=min(protocol.folds, len(feeders)))
    before = data.week < protocol.cutoff_week
    after = ~before
    scores = {d: np.full(len(data.home), np.nan) for d in DETECTORS + BASELINES}
    aug_all = augment(
        pop,
        np.array([h for h in range(pop.homes) if h not in held]),
        rng,
        protocol,
    )
    for train_f, test_f in folds.split(feeders.reshape(-1, 1), groups=feeders):
        train_feeders, test_feeders = feeders[train_f], feeders[test_f]
        in_train = np.isin(data.feeder, train_feeders) & before & ~np.isin(data.home, list(held))
        in_test = np.isin(data.feeder, test_feeders) & after
        aug = aug_all.take(np.isin(aug_all.feeder, train_feeders))
        train = Samples.concat([data.take(in_train), aug])
        test = data.take(in_test)
        fold_scores = _score_fold(train, test, seed)
        # CPBETD trains on the test customer's own weeks before the cut-off (its setting).
        own = {
            int(h): data.raw[(data.home == h) & before & (data.label == 0)]
            for h in np.unique(test.home)
        }
        fold_scores["cpbetd"] = _cpbetd(own, test, rng, pop.slots)
        idx = np.flatnonzero(in_test)
        for d, s in fold_scores.items():
            scores[d][idx] = s
    return _metrics(pop, data.take(after), {d: s[after] for d, s in scores.items()}, protocol)


def _metrics(pop: Population, test: Samples, scores: dict[str, F64], protocol: Protocol) -> Result:
    res = Result()
    neg = test.label == 0
    groups: dict[str, npt.NDArray[np.bool_]] = {m: test.model == m for m in MODELS}
    groups["h1-h6"] = np.isin(test.model, BASIC)
    groups["all"] = test.model != ""
    thieves = np.array([bool(pop.attack[h]) for h in range(pop.homes)])
    for d, s in scores.items():
        res.metrics[d] = {}
        for g, in_g in groups.items():
            pos = in_g & (test.label == 1)
            if not pos.any():
                continue
            y = np.r_[np.ones(int(pos.sum())), np.zeros(int(neg.sum()))]
            sc = np.r_[s[pos], s[neg]]
            m: dict[str, float] = {
                "auc": float(roc_auc_score(y, sc)),
                "auprc": float(average_precision_score(y, sc)),
                "n": float(pos.sum()),
            }
            for f in protocol.fpr:
                m[f"dr@{f:g}"] = dr_at_fpr(s[pos], s[neg], f)[0]
            _, thr = dr_at_fpr(s[pos], s[neg], protocol.fpr[0])
            flagged = s > thr
            # Delay: days from the attack's start to the end of the first flagged attacked week.
            delays = []
            for h in np.unique(test.home[pos]):
                rows = (test.home == h) & (test.label == 1) & flagged
                if rows.any():
                    first = int(test.week[rows].min())
                    delays.append(max(0, 7 * first + 7 - int(pop.attack_start[h])))
            m["delay_days"] = float(np.mean(delays)) if delays else math.nan
            stolen = test.stolen[pos]
            m["stolen_recall"] = (
                float(stolen[flagged[pos]].sum() / stolen.sum()) if stolen.sum() > 0 else math.nan
            )
            res.metrics[d][g] = m
        # Customer level: one score per customer (its highest week); label: thief when tested.
        homes = np.unique(test.home)
        cs = np.array([s[test.home == h].max() for h in homes])
        cl = np.array([int(((test.home == h) & (test.label == 1)).any()) for h in homes])
        keep = np.array([not (thieves[h] and not cl[k]) for k, h in enumerate(homes)])
        cs, cl = cs[keep], cl[keep]
        n1, n2 = math.ceil(0.0024 * len(cs)), math.ceil(0.0047 * len(cs))
        res.customer[d] = {
            "auc": float(roc_auc_score(cl, cs)) if 0 < cl.sum() < len(cl) else math.nan,
            "map@n1": map_at_n(cs, cl, max(n1, 1)),
            "map@n2": map_at_n(cs, cl, max(n2, 1)),
            "map@thieves": map_at_n(cs, cl, int(cl.sum())),
        }
        pos = groups["all"] & (test.label == 1)
        fpr, tpr, _ = roc_curve(
            np.r_[np.ones(int(pos.sum())), np.zeros(int(neg.sum()))], np.r_[s[pos], s[neg]]
        )
        res.roc[d] = (fpr, tpr)
    # Localisation: behind each unbalanced feeder-week with an attacked home, is the home with
    # the highest balance score a thief?
    gap = test.x[:, FEATURES.index("feeder_gap")]
    bal = scores["balance"]
    honest_gap = np.array(
        [
            gap[(test.feeder == f) & (test.week == w)][0]
            for f, w in {(int(f), int(w)) for f, w in zip(test.feeder, test.week, strict=False)}
            if not (test.label[(test.feeder == f) & (test.week == w)] == 1).any()
        ]
    )
    limit = float(np.quantile(honest_gap, 0.99)) if honest_gap.size else 0.0
    hits = total = 0
    for f, w in {(int(f), int(w)) for f, w in zip(test.feeder, test.week, strict=False)}:
        rows = np.flatnonzero((test.feeder == f) & (test.week == w))
        if gap[rows[0]] <= limit or not (test.label[rows] == 1).any():
            continue
        total += 1
        hits += int(test.label[rows[int(np.argmax(bal[rows]))]] == 1)
    res.balance_localisation = hits / total if total else math.nan
    return res
