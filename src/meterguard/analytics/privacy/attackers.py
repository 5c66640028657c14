"""The privacy attackers of ANALYTICS.md §3.3, run against a recipient's view.

* **A0**, the floor: the time-of-day and weekday prior of presence, learnt from other homes;
  it uses no data of the victim at all.
* **A1**, NIOM-style and unsupervised: a slot is occupied when its load is above the
  trace's night-time mean plus two standard deviations.
* **A2**, supervised: a gradient-boosting model (scikit-learn's histogram GBM) trained on
  other homes' labelled slots *of the same defended view* (retrained per defence, never on
  raw data), with home-disjoint folds. Its features are what the view allows: the slot's
  value and its neighbours, relative to the trace's own night baseline, slot median and
  daily level, the day's total against the previous week, and within-slot variation where
  the resolution shows it. Statistics are computed per pseudonymous trace (a rotation
  period), because that is all a recipient can put together.
* **A3**, linking: (a) week to week — each trace is embedded by hand-made features (its
  mean daily profile, level, weekend ratio, night base, variability) and matched to the
  nearest trace of the previous period (Jawurek, Cretu); (b) to identified bills — a
  trace's energy, scaled to its billing period, matched to the nearest bill (Büscher).

Everything returns numbers; :mod:`.evaluate` prints them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import balanced_accuracy_score, matthews_corrcoef, roc_auc_score
from sklearn.model_selection import GroupKFold

from meterguard.analytics.privacy.defences import View, coarsen
from meterguard.analytics.privacy.synthetic import PRESENCE_FIRST, PRESENCE_SLOTS, Cohort

__all__ = ["Linking", "Occupancy", "link_bills", "link_weeks", "occupancy"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Occupancy:
    """Slot-presence inference results (AUC, MCC, balanced accuracy, accuracy)."""

    floor_auc: float
    floor_mcc: float
    niom_auc: float
    auc: float
    mcc: float
    balanced: float
    accuracy: float
    prior: float
    """Share of occupied slots (the majority baseline is max(prior, 1 - prior))."""

    @property
    def leakage(self) -> float:
        """ΔAUC = AUC(A2) - AUC(A0)."""
        return self.auc - self.floor_auc


@dataclass(frozen=True, slots=True)
class Linking:
    """Top-1 and top-5 linking accuracy, and chance (1 / candidates)."""

    top1: float
    top5: float
    chance: float


def _periods(days: int, rotate: int) -> list[tuple[int, int]]:
    step = days if rotate <= 0 else rotate
    return [(a, min(a + step, days)) for a in range(0, days, step)]


def _trace_stat(x: F64, rotate: int, fn: str) -> F64:
    """A per-home statistic of (homes, days, s) over each rotation period, broadcast back."""
    out = np.empty(x.shape[:2])
    for a, b in _periods(x.shape[1], rotate):
        block = x[:, a:b]
        with np.errstate(all="ignore"), _quiet():
            if fn == "median":
                v = np.nanmedian(block.reshape(len(x), -1), axis=1)
            elif fn == "day":
                v = np.nanmean(np.nansum(block, axis=2), axis=1)
            else:
                v = np.nanmean(block.reshape(len(x), -1), axis=1)
        out[:, a:b] = v[:, None]
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's all-NaN warnings (withheld values are NaN by design)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _features(view: View) -> tuple[F64, list[str]]:
    """(homes, days, 32, f) features for each presence slot, and their names."""
    v = view.values
    homes, days, k = v.shape
    rot = view.rotate_days
    if k >= 48:
        x30 = coarsen(v, 48) if k > 48 else v
        within = np.abs(v[..., 0::2] - v[..., 1::2]) if k == 96 else np.full_like(x30, np.nan)
    else:
        per = 48 // k
        x30 = np.repeat(v, per, axis=2) / per
        within = np.full_like(x30, np.nan)
    with _quiet():
        if k >= 8:
            night = x30[..., 2:10]  # 01:00-05:00
            base = np.empty((homes, days))
            spread = np.empty((homes, days))
            for a, b in _periods(days, rot):
                n = night[:, a:b].reshape(homes, -1)
                base[:, a:b] = np.nanmean(n, axis=1)[:, None]
                spread[:, a:b] = np.nanstd(n, axis=1)[:, None]
        else:
            base = np.full((homes, days), np.nan)
            spread = np.full((homes, days), np.nan)
        level = _trace_stat(x30, rot, "mean")
        slot_median = np.empty((homes, days, 48))
        for a, b in _periods(days, rot):
            slot_median[:, a:b] = np.nanmedian(x30[:, a:b], axis=1)[:, None, :]
        total = np.nansum(v, axis=2)
        total[np.isnan(v).all(axis=2)] = np.nan
        week = np.full_like(total, np.nan)
        for d in range(days):
            week[:, d] = np.nanmean(total[:, max(0, d - 7) : d], axis=1) if d else np.nan
        day_level = _trace_stat(v, rot, "day")
    sl = slice(PRESENCE_FIRST, PRESENCE_FIRST + PRESENCE_SLOTS)
    cur = x30[..., sl]
    prev = x30[..., PRESENCE_FIRST - 1 : PRESENCE_FIRST - 1 + PRESENCE_SLOTS]
    nxt = x30[..., PRESENCE_FIRST + 1 : PRESENCE_FIRST + 1 + PRESENCE_SLOTS]
    eps = 1e-6
    b3 = base[..., None]
    lv = level[..., None] + eps
    feats = {
        "value": cur,
        "over_night": (cur - b3) / (spread[..., None] + lv * 0.05),
        "over_slot_median": (cur - slot_median[..., sl]) / lv,
        "rel_level": cur / lv,
        "rel_prev": prev / lv,
        "rel_next": nxt / lv,
        "within": within[..., sl] / lv,
        "day_vs_week": np.broadcast_to((total / (week + eps))[..., None], cur.shape),
        "day_vs_trace": np.broadcast_to((total / (day_level + eps))[..., None], cur.shape),
        "level": np.broadcast_to(lv, cur.shape),
        "slot": np.broadcast_to(np.arange(PRESENCE_SLOTS, dtype=np.float64), cur.shape),
    }
    return np.stack([np.asarray(f, dtype=np.float64) for f in feats.values()], axis=-1), list(feats)


def _mcc(y: npt.NDArray[np.bool_], p: F64) -> float:
    return float(matthews_corrcoef(y, p >= 0.5))


def occupancy(
    cohort: Cohort, view: View, *, folds: int = 4, day_step: int = 3, seed: int = 0
) -> Occupancy:
    """A0, A1 and A2 against slot presence, on every ``day_step``-th day, home-disjoint."""
    feats, _ = _features(view)
    days = np.arange(0, cohort.days, day_step)
    x = feats[:, days]
    y = cohort.presence[:, days]
    homes = cohort.homes
    slot = np.broadcast_to(np.arange(PRESENCE_SLOTS), y.shape)
    weekend = np.broadcast_to(cohort.weekend[days][None, :, None], y.shape)
    group = np.broadcast_to(np.arange(homes)[:, None, None], y.shape)
    xf = np.concatenate([x, weekend[..., None].astype(np.float64)], axis=-1).reshape(
        -1, x.shape[-1] + 1
    )
    xf = xf[:, ~np.isnan(xf).all(axis=0)]  # what the resolution does not show
    yf = y.reshape(-1)
    gf = group.reshape(-1)
    sf = (slot + PRESENCE_SLOTS * weekend).reshape(-1)
    niom = (feats[..., 1])[:, days].reshape(-1)
    p_floor = np.empty(len(yf))
    p_a2 = np.empty(len(yf))
    for train, test in GroupKFold(n_splits=folds).split(xf, yf, gf):
        hits = np.bincount(sf[train], weights=yf[train], minlength=2 * PRESENCE_SLOTS)
        prior = hits.astype(np.float64) / np.maximum(
            np.bincount(sf[train], minlength=2 * PRESENCE_SLOTS), 1
        )
        p_floor[test] = prior[sf[test]]
        model = HistGradientBoostingClassifier(
            max_iter=150, learning_rate=0.1, max_leaf_nodes=31, random_state=seed
        )
        model.fit(xf[train], yf[train])
        p_a2[test] = model.predict_proba(xf[test])[:, 1]
    pred = p_a2 >= 0.5
    return Occupancy(
        floor_auc=float(roc_auc_score(yf, p_floor)),
        floor_mcc=_mcc(yf, p_floor),
        niom_auc=float(roc_auc_score(yf, np.nan_to_num(niom, nan=0.0))),
        auc=float(roc_auc_score(yf, p_a2)),
        mcc=_mcc(yf, p_a2),
        balanced=float(balanced_accuracy_score(yf, pred)),
        accuracy=float((pred == yf).mean()),
        prior=float(yf.mean()),
    )


def _embed(values: F64) -> F64:
    """(traces, days, k) → (traces, f) hand-made trace features."""
    with _quiet():
        profile = np.nanmean(values, axis=1)
        k = values.shape[2]
        if k > 24:
            profile = coarsen(profile, 24)
        total = np.nanmean(np.nansum(values, axis=2), axis=1, keepdims=True)
        spread = np.nanstd(np.nansum(values, axis=2), axis=1, keepdims=True)
        low = np.nanmin(np.nansum(values, axis=2), axis=1, keepdims=True)
        shape = profile / (profile.sum(axis=1, keepdims=True) + 1e-9)
    parts = [np.log1p(np.maximum(total, 0)), spread / (total + 1e-9), low / (total + 1e-9)]
    if shape.shape[1] > 1:
        parts.append(shape * np.sqrt(shape.shape[1]))
    return np.asarray(np.nan_to_num(np.concatenate(parts, axis=1)), dtype=np.float64)


def _rank_hits(
    query: F64, gallery: F64, truth: npt.NDArray[np.int64], rng: np.random.Generator
) -> tuple[float, float]:
    mu = gallery.mean(axis=0)
    sd = gallery.std(axis=0) + 1e-9
    q = (query - mu) / sd
    g = (gallery - mu) / sd
    dist = ((q[:, None, :] - g[None, :, :]) ** 2).sum(axis=2)
    dist += rng.random(dist.shape) * 1e-9  # identical traces (a group's) tie at random
    order = np.argsort(dist, axis=1)
    hit = order == truth[:, None]
    return float(hit[:, 0].mean()), float(hit[:, :5].any(axis=1).mean())


def link_weeks(view: View, *, seed: int = 0) -> Linking:
    """A3(a): each trace of period p+1 matched to the traces of period p."""
    homes = view.values.shape[0]
    if view.rotate_days <= 0:
        return Linking(1.0, 1.0, 1.0 / homes)
    rng = np.random.default_rng([seed, 0x11A])
    periods = [
        p
        for p in _periods(view.values.shape[1], view.rotate_days)
        if p[1] - p[0] == view.rotate_days
    ]
    periods = periods[:: max(1, len(periods) // 12)]
    top1, top5 = [], []
    for a, b in periods:
        if b + view.rotate_days > view.values.shape[1]:
            break
        gallery = _embed(view.values[:, a:b])
        query = _embed(view.values[:, b : b + view.rotate_days])
        t1, t5 = _rank_hits(query, gallery, np.arange(homes), rng)
        top1.append(t1)
        top5.append(t5)
    return Linking(float(np.mean(top1)), float(np.mean(top5)), 1.0 / homes)


def link_bills(cohort: Cohort, view: View, *, seed: int = 0) -> Linking:
    """A3(b): each trace's energy, scaled to its billing month, matched to the month's bills."""
    homes = cohort.homes
    if view.rotate_days <= 0:
        return Linking(1.0, 1.0, 1.0 / homes)
    rng = np.random.default_rng([seed, 0xB111])
    bills = cohort.bills()
    months = np.unique(cohort.month)
    full = [
        m for m in months if (cohort.month == m).sum() >= 28 and m not in (months[0], months[-1])
    ] or list(months)
    top1, top5 = [], []
    for a, b in _periods(cohort.days, view.rotate_days):
        m = cohort.month[a]
        if m not in full or cohort.month[b - 1] != m:
            continue
        days_in_month = int((cohort.month == m).sum())
        with _quiet():
            energy = np.nanmean(np.nansum(view.values[:, a:b], axis=2), axis=1) * days_in_month
        energy = np.nan_to_num(energy)[:, None]
        target = bills[:, full.index(m)][:, None]
        t1, t5 = _rank_hits(energy, target, np.arange(homes), rng)
        top1.append(t1)
        top5.append(t5)
    if not top1:
        return Linking(float("nan"), float("nan"), 1.0 / homes)
    return Linking(float(np.mean(top1)), float(np.mean(top5)), 1.0 / homes)
