"""The evidence for one home and one week, as numbers a detector (or a person) can read.

Three kinds, each a named column of :data:`FEATURES`:

* **own** — the week against the home's own recent weeks and its first fortnight
  (the baseline), corrected by the drift of its feeder's peers (seasons move everyone):
  level, base load (the fridge and standby that a shunt scales and a vacation keeps), night
  load, zeros, flatness, profile shape and its reversal, slot-to-slot smoothness, peaks,
  day-to-day variation, missing readings;
* **feeder** — the energy balance of the home's feeder: the gap between what the feeder
  meter measured and what its homes reported, after the technical losses fitted on the
  baseline (no-load + r·P²), relative to the feeder's energy; and how well this home
  explains the gap (its missing energy against the gap, the co-movement of its readings'
  irregular part with the gap's, the match of its missing daily profile with the gap's);
* **events** — the meter's fraud log: physical (cover, DC field) and cyber (failed logins,
  configuration change) events this week and in the last four, power failures this week.

Pure numpy over ``(homes, days, slots)`` arrays; NaN marks a missing reading. Windows are
in days (:class:`Windows`): the same definition serves the evaluation and the head-end.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "CYBER_EVENTS",
    "EVENT_FEATURES",
    "FEATURES",
    "FEEDER_FEATURES",
    "OWN_FEATURES",
    "PHYSICAL_EVENTS",
    "POWER_EVENTS",
    "Windows",
    "event_counts",
    "event_week",
    "feeder_week",
]

F64 = npt.NDArray[np.float64]

OWN_FEATURES = (
    "level_recent",
    "level_base",
    "level_recent_peer",
    "level_base_peer",
    "baseload_recent",
    "baseload_base_peer",
    "night_recent",
    "zeros",
    "flatness",
    "profile_corr",
    "reversal",
    "smoothness",
    "peak",
    "daily_variation",
    "missing",
    "evening_share",
    "flatness_abs",
    "smoothness_abs",
    "zeros_abs",
    "daily_variation_abs",
    "profile_corr_base",
    "reversal_base",
    "flatness_base",
    "smoothness_base",
    "peak_base",
    "lag1",
)
FEEDER_FEATURES = (
    "feeder_gap",
    "feeder_gap_recent",
    "missing_share",
    "missing_share_recent",
    "gap_minus_missing",
    "explained",
    "comovement",
    "profile_match",
    "tstat_level",
    "tstat_zero",
    "comovement_lead",
    "tstat_lead",
    "zero_lead",
    "missing_lead",
    "match_lead",
    "onset",
    "onset_lead",
    "daily_corr",
    "daily_lead",
    "balance",
)
EVENT_FEATURES = ("physical_week", "physical_28d", "cyber_week", "cyber_28d", "power_week")
FEATURES = OWN_FEATURES + FEEDER_FEATURES + EVENT_FEATURES
EPS = 1e-6
PHYSICAL_EVENTS = (40, 42, 44)
"""Fraud-log codes of a hand on the meter: terminal cover removed, DC field, meter cover removed."""
CYBER_EVENTS = (46, 47)
"""Fraud-log codes of an attack on the meter's data: failed login attempt, configuration change."""
POWER_EVENTS = (1, 2)
"""Standard-log codes: power failure, power returned."""


@dataclass(frozen=True, slots=True)
class Windows:
    """The windows in days: the week scored, the recent weeks before it, the baseline."""

    current: int = 7
    recent: int = 21
    baseline: int = 14

    def bounds(self, end: int) -> tuple[slice, slice, slice]:
        """(current, recent, baseline) day slices for a current window ending at ``end``."""
        c0 = end - self.current
        return slice(c0, end), slice(max(0, c0 - self.recent), c0), slice(0, self.baseline)


def _ratio(a: F64, b: F64) -> F64:
    return np.asarray((a + EPS) / (b + EPS), dtype=np.float64)


def _profile(x: F64) -> F64:
    """(homes, days, slots) -> (homes, slots): the mean day."""
    with np.errstate(invalid="ignore"), _quiet():
        return np.asarray(np.nan_to_num(np.nanmean(x, axis=1)), dtype=np.float64)


def _rowcorr(a: F64, b: F64) -> F64:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (0 if flat)."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    return np.where(den > EPS, (a * b).sum(axis=-1) / np.maximum(den, EPS), 0.0)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's 'mean of empty slice' warnings (a fully missing window is a NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _own(cur: F64, rec: F64, base: F64, slots: int) -> dict[str, F64]:
    with _quiet():
        m_cur, m_rec, m_base = (np.nanmean(x, axis=(1, 2)) for x in (cur, rec, base))
        lr, lb = _ratio(m_cur, m_rec), _ratio(m_cur, m_base)
        p10 = [np.nanpercentile(x, 10, axis=(1, 2)) for x in (cur, rec, base)]
        night = slice(slots * 1 // 24, slots * 5 // 24)
        n_cur, n_rec = (np.nanmean(x[:, :, night], axis=(1, 2)) for x in (cur, rec))
        thr = (0.02 * m_rec)[:, None, None]
        zeros = np.nanmean(cur < thr, axis=(1, 2)) - np.nanmean(rec < thr, axis=(1, 2))

        def flat(x: F64) -> F64:
            return np.asarray(
                np.nanmean(np.nanstd(x, axis=2) / (np.nanmean(x, axis=2) + EPS), axis=1)
            )

        def smooth(x: F64) -> F64:
            d = np.abs(np.diff(x, axis=2))
            return np.asarray(np.nanmean(d, axis=(1, 2)) / (np.nanmean(x, axis=(1, 2)) + EPS))

        def daily_var(x: F64) -> F64:
            tot = np.nanmean(x, axis=2)
            return np.asarray(np.nanstd(tot, axis=1) / (np.nanmean(tot, axis=1) + EPS))

        evening = slice(slots * 17 // 24, slots * 21 // 24)

        def share(x: F64) -> F64:
            return np.asarray(
                np.nanmean(x[:, :, evening], axis=(1, 2)) / (np.nanmean(x, axis=(1, 2)) + EPS)
            )

        p_cur, p_rec, p_base = _profile(cur), _profile(rec), _profile(base)
        corr = _rowcorr(p_cur, p_rec)
        corr_b = _rowcorr(p_cur, p_base)
        c = np.nan_to_num(cur)
        a, b = c[:, :, 1:].reshape(len(c), -1), c[:, :, :-1].reshape(len(c), -1)
        lag1 = _rowcorr(a, b)
        peak = np.nanmax(cur, axis=(1, 2)) / (np.nanpercentile(rec, 99, axis=(1, 2)) + EPS)
        out = {
            "level_recent": lr,
            "level_base": lb,
            "level_recent_peer": lr,  # divided by the peers' median in feeder_week
            "level_base_peer": lb,
            "baseload_recent": _ratio(p10[0], p10[1]),
            "baseload_base_peer": _ratio(p10[0], p10[2]),
            "night_recent": _ratio(n_cur, n_rec),
            "zeros": zeros,
            "flatness": _ratio(flat(cur), flat(rec)),
            "profile_corr": corr,
            "reversal": _rowcorr(p_cur, p_rec[:, ::-1]) - corr,
            "smoothness": _ratio(smooth(cur), smooth(rec)),
            "peak": peak,
            "daily_variation": _ratio(daily_var(cur), daily_var(rec)),
            "missing": np.isnan(cur).mean(axis=(1, 2)),
            "evening_share": share(cur) - share(rec),
            "flatness_abs": flat(cur),
            "smoothness_abs": smooth(cur),
            "zeros_abs": np.nanmean(cur < (0.02 * m_base)[:, None, None], axis=(1, 2)),
            "daily_variation_abs": daily_var(cur),
            "profile_corr_base": corr_b,
            "reversal_base": _rowcorr(p_cur, p_base[:, ::-1]) - corr_b,
            "flatness_base": _ratio(flat(cur), flat(base)),
            "smoothness_base": _ratio(smooth(cur), smooth(base)),
            "peak_base": np.nanmax(cur, axis=(1, 2))
            / (np.nanpercentile(base, 99, axis=(1, 2)) + EPS),
            "lag1": lag1,
        }
    return {k: np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0) for k, v in out.items()}


def feeder_week(
    reported: F64,
    export: F64,
    feeder: F64,
    end: int,
    windows: Windows = Windows(),
) -> dict[str, F64]:
    """Own and feeder evidence for every home behind one feeder, for the window ending ``end``.

    ``reported`` and ``export`` are the homes' (homes, days, slots) readings, ``feeder`` the
    feeder meter's (days, slots). Returns one array of length ``homes`` per feature name in
    :data:`OWN_FEATURES` and :data:`FEEDER_FEATURES`.
    """
    slots = reported.shape[2]
    cw, rw, bw = windows.bounds(end)
    own = _own(reported[:, cw], reported[:, rw], reported[:, bw], slots)
    for name, raw in (("level_recent_peer", "level_recent"), ("level_base_peer", "level_base")):
        own[name] = own[raw] / max(float(np.median(own[raw])), EPS)
    own["baseload_base_peer"] = own["baseload_base_peer"] / max(
        float(np.median(own["baseload_base_peer"])), EPS
    )
    homes = reported.shape[0]
    net = reported - export
    total = net.sum(axis=0)  # NaN where any home's reading is missing
    gap = feeder - total  # (days, slots)
    valid_b = ~np.isnan(gap[bw])
    # Technical losses: no-load + r·P², fitted where the baseline is complete.
    fb, gb = feeder[bw][valid_b], gap[bw][valid_b]
    if fb.size >= 3:
        design = np.column_stack([np.ones_like(fb), fb * fb])
        coef = np.linalg.lstsq(design, gb, rcond=None)[0]
    else:
        coef = np.zeros(2)

    def residual(w: slice) -> tuple[F64, F64]:
        g = gap[w] - (coef[0] + coef[1] * feeder[w] ** 2)
        return g, feeder[w]

    r_cur, f_cur = residual(cw)
    r_rec, f_rec = residual(rw)
    valid = ~np.isnan(r_cur)
    energy = float(np.abs(f_cur[valid]).sum()) + EPS
    rel = float(np.nansum(r_cur)) / energy
    rel_rec = float(np.nansum(r_rec)) / (float(np.abs(f_rec[~np.isnan(r_rec)]).sum()) + EPS)
    # What each home would have drawn: its baseline mean day, moved by its peers' drift.
    with _quiet():
        base_prof = np.nan_to_num(np.nanmean(reported[:, bw], axis=1))  # (homes, slots)
        cur = reported[:, cw]
        drift = float(
            np.median(
                _ratio(np.nanmean(cur, axis=(1, 2)), np.nanmean(reported[:, bw], axis=(1, 2)))
            )
        )
        cur_prof = np.nan_to_num(np.nanmean(cur, axis=1))
    missing_prof = base_prof * drift - cur_prof  # (homes, slots) kWh a slot, on average
    n_valid_days = max(int(valid.any(axis=1).sum()), 1)
    missing_kwh = missing_prof.sum(axis=1) * n_valid_days
    share = missing_kwh / energy
    with _quiet():
        rec_prof = np.nan_to_num(np.nanmean(reported[:, rw], axis=1))
    share_rec = (rec_prof - cur_prof).sum(axis=1) * n_valid_days / energy
    # The gap's irregular part against each home's irregular part (the mean day removed).
    r_fill = np.where(valid, r_cur, 0.0)
    r_dev = (r_fill - r_fill.mean(axis=0, keepdims=True)).reshape(-1)
    m = np.nan_to_num(cur)
    m_dev = (m - m.mean(axis=1, keepdims=True)).reshape(homes, -1)
    comove = _rowcorr(m_dev, np.broadcast_to(r_dev, m_dev.shape))
    gap_prof = r_fill.mean(axis=0)
    match = _rowcorr(missing_prof, np.broadcast_to(gap_prof, missing_prof.shape))
    explained = np.clip(share / rel, 0.0, 1.5) if rel > 1e-4 else np.zeros(homes)
    t_level, t_zero = _gap_regression(r_cur, f_cur, np.nan_to_num(cur), valid)
    lead = {
        name: _lead(v)
        for name, v in (
            ("comovement_lead", comove),
            ("tstat_lead", np.abs(t_level)),
            ("zero_lead", t_zero),
            ("missing_lead", share),
            ("match_lead", match),
        )
    }
    onset, daily = _history_match(gap - (coef[0] + coef[1] * feeder**2), reported, end)
    lead["onset_lead"] = _lead(onset)
    lead["daily_lead"] = _lead(daily)
    # The balance detector's own score: the feeder's gap, carried by the home whose own
    # readings' history moves with it (its drop when the gap rose, its days with the gap).
    carried = np.maximum.reduce([onset, np.abs(daily), comove, match])
    balance = max(rel, 0.0) * (1.0 + np.clip(carried, 0.0, None))
    feed = {
        "feeder_gap": np.full(homes, rel),
        "feeder_gap_recent": np.full(homes, rel_rec),
        "missing_share": share,
        "missing_share_recent": share_rec,
        "gap_minus_missing": rel - share,
        "explained": explained,
        "comovement": comove,
        "profile_match": match,
        "tstat_level": t_level,
        "tstat_zero": t_zero,
        **lead,
        "onset": onset,
        "daily_corr": daily,
        "balance": balance,
    }
    return own | {k: np.asarray(v, dtype=np.float64) for k, v in feed.items()}


def _history_match(residual: F64, reported: F64, end: int) -> tuple[F64, F64]:
    """How each home's history moves with the feeder's residual gap, up to day ``end``.

    ``onset``: minus the correlation, over the last eight weeks, of the weekly gap with the
    home's weekly readings (a thief's readings fall in the week the gap rises; a vacation or
    a season moves a home without moving the gap). ``daily``: the correlation, over the
    last 28 days, of the daily gap with the home's daily readings (a shunt's gap is a share
    of what it still reports, day after day).
    """
    homes = reported.shape[0]
    start = max(0, end - 56)
    with _quiet():
        g_day = np.nansum(residual[start:end], axis=1)
        e_day = np.nanmean(reported[:, start:end], axis=2) * reported.shape[2]
    e_day = np.nan_to_num(e_day)
    n = (end - start) // 7
    if n < 3:
        return np.zeros(homes), np.zeros(homes)
    g_week = g_day[-7 * n :].reshape(n, 7).sum(axis=1)
    e_week = e_day[:, -7 * n :].reshape(homes, n, 7).sum(axis=2)
    onset = -_rowcorr(e_week, np.broadcast_to(g_week, e_week.shape))
    last = min(28, end - start)
    daily = _rowcorr(e_day[:, -last:], np.broadcast_to(g_day[-last:], (homes, last)))
    return np.asarray(onset), np.asarray(daily)


def _lead(v: F64) -> F64:
    """Each home's value minus the highest of the other homes behind the feeder."""
    if v.size < 2:
        return np.zeros_like(v)
    order = np.argsort(v)
    top, second = v[order[-1]], v[order[-2]]
    others = np.where(np.arange(v.size) == order[-1], second, top)
    return np.asarray(v - others, dtype=np.float64)


def _gap_regression(
    gap: F64, flow: F64, homes_kwh: F64, valid: npt.NDArray[np.bool_]
) -> tuple[F64, F64]:
    """t-statistics of each home's readings, and of its zero readings, in the week's gap.

    For each home, ordinary least squares over the window's complete slots of
    ``gap_t = a + b·F_t² + k·m_t + c·z_t·p_t`` (``m`` its readings, ``z`` its near-zero
    readings, ``p`` its mean day): the losses are refitted in the window, so a drift of
    the loss model does not accuse anyone; a home whose readings move with the missing
    energy (a shunt: the gap is (1-alpha)/alpha of what it reports) or whose silences carry it (a
    bypass window) stands out by its t-statistic.
    """
    g = gap[valid]
    n = g.size
    t_level = np.zeros(homes_kwh.shape[0])
    t_zero = np.zeros(homes_kwh.shape[0])
    if n < 12:
        return t_level, t_zero
    f = flow[valid]
    base = [np.ones(n), f * f]
    for i, m_all in enumerate(homes_kwh):
        m = m_all[valid]
        prof = np.broadcast_to(m_all.mean(axis=0), m_all.shape)[valid]
        scale = float(m_all.mean()) + EPS
        z = (m_all < 0.05 * scale)[valid] * prof
        design = np.column_stack([*base, m, z])
        try:
            coef, _, rank, _ = np.linalg.lstsq(design, g, rcond=None)
        except np.linalg.LinAlgError:
            continue
        if rank < design.shape[1]:
            keep = [0, 1, 2] if z.std() < EPS else [0, 1, 3]
            design = design[:, keep]
            coef = np.linalg.lstsq(design, g, rcond=None)[0]
        resid = g - design @ coef
        sigma2 = float(resid @ resid) / max(n - design.shape[1], 1)
        try:
            cov = sigma2 * np.linalg.inv(design.T @ design)
        except np.linalg.LinAlgError:
            continue
        se = np.sqrt(np.maximum(np.diag(cov), EPS * EPS))
        if design.shape[1] == 4:
            t_level[i], t_zero[i] = coef[2] / se[2], coef[3] / se[3]
        elif z.std() < EPS:
            t_level[i] = coef[2] / se[2]
        else:
            t_zero[i] = coef[2] / se[2]
    return t_level, t_zero


def event_counts(events: npt.NDArray[np.int64], homes: int, days: int) -> npt.NDArray[np.float64]:
    """(homes, days, 3) daily counts of physical, cyber and power-failure events."""
    out = np.zeros((homes, days, 3))
    if len(events):
        kind = np.full(len(events), -1)
        kind[np.isin(events[:, 2], PHYSICAL_EVENTS)] = 0
        kind[np.isin(events[:, 2], CYBER_EVENTS)] = 1
        kind[events[:, 2] == POWER_EVENTS[0]] = 2
        keep = (kind >= 0) & (events[:, 1] >= 0) & (events[:, 1] < days)
        np.add.at(out, (events[keep, 0], events[keep, 1], kind[keep]), 1.0)
    return out


def event_week(
    counts: npt.NDArray[np.float64], end: int, windows: Windows = Windows()
) -> dict[str, F64]:
    """Event evidence for the window ending ``end`` from :func:`event_counts`."""
    c0 = end - windows.current
    week = counts[:, c0:end].sum(axis=1)
    month = counts[:, max(0, end - 28) : end].sum(axis=1)
    return {
        "physical_week": week[:, 0],
        "physical_28d": month[:, 0],
        "cyber_week": week[:, 1],
        "cyber_28d": month[:, 1],
        "power_week": week[:, 2],
    }
