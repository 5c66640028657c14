"""Chart geometry for the dashboard's server-rendered SVG (no JavaScript, strict-CSP safe).

Pure functions from data to the numbers a template draws: bar positions of a usage chart
and the segments of the fleet-health bar. No IO, no markup (the templates escape and draw).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field

from meterguard.headend.metrics import Sample
from meterguard.headend.services.usage import Bucket

__all__ = [
    "HealthChart",
    "Spark",
    "UsageChart",
    "activity_charts",
    "health_chart",
    "usage_chart",
]

WIDTH, HEIGHT, LEFT = 720, 180, 44
STALE_AFTER = 3 * 3600
"""A meter whose newest reading is older than this (meter time) counts as stale."""


@dataclass
class UsageChart:
    """Bars of energy per bucket."""

    label: str
    unit: str
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[dict[str, object]] = field(default_factory=list)
    ticks: list[dict[str, object]] = field(default_factory=list)
    max_label: str = ""
    total_kwh: str = "0"
    export_kwh: str = ""
    n: int = 0
    missing: int = 0
    """Periods without readings between two readings (their energy is drawn spread)."""


def _fmt(wh: float) -> str:
    return f"{wh / 1000:.2f}" if wh < 100_000 else f"{wh / 1000:.0f}"


STEP = {"interval": 900, "hour": 3600, "day": 86400, "month": 31 * 86400}
TICK_FORMAT = {
    "interval": "%d %b %H:%M",
    "hour": "%d %b %H:%M",
    "day": "%d %b",
    "month": "%b %Y",
}


def usage_chart(
    buckets: list[Bucket],
    granularity: str,
    meter_id: str,
    *,
    start: int | None = None,
    end: int | None = None,
) -> UsageChart:
    """Bars for ``buckets`` (oldest first) on a time axis from ``start`` to ``end``.

    A bar stands where its period lies on the axis: a period without readings is a gap,
    not squeezed out. Ticks name day and month (and the hour for finer charts), in UTC.
    """
    unit = {"interval": "15-minute interval", "hour": "hour", "day": "day", "month": "month"}
    chart = UsageChart(
        f"Energy used by meter {meter_id} per {unit[granularity]}", unit[granularity]
    )
    if not buckets:
        return chart
    step = STEP[granularity]
    t0 = min(start if start is not None else buckets[0].start, buckets[0].start)
    t1 = max(end if end is not None else buckets[-1].start + step, buckets[-1].start + step)
    scale = (WIDTH - LEFT) / max(t1 - t0, step)
    # A bucket after missing periods holds their energy too (cumulative registers): it is
    # drawn across them at its average, lighter, rather than as one tall spike.
    spans, prev = [], None
    for b in buckets:
        n = 1 if prev is None or granularity == "month" else max(1, (b.start - prev) // step)
        spans.append(n)
        prev = b.start
    peak = max(b.import_wh / n for b, n in zip(buckets, spans, strict=True)) or 1
    for b, n in zip(buckets, spans, strict=True):
        h = round(b.import_wh / n / peak * (HEIGHT - 10), 1)
        when = dt.datetime.fromtimestamp(b.start, dt.UTC)
        stamp = when.strftime("%Y-%m-%d" if granularity in ("day", "month") else "%Y-%m-%d %H:%M")
        first = b.start - (n - 1) * step
        title = f"{stamp} UTC: {b.import_wh / 1000:.3f} kWh"
        if n > 1:
            title += f" over the {n} {chart.unit}s up to it (readings missing; average shown)"
        chart.bars.append(
            {
                "x": round(LEFT + (first - t0) * scale + step * scale * 0.1, 1),
                "y": round(HEIGHT - h, 1),
                "w": round(max((n - 0.2) * step * scale, 0.5), 1),
                "h": h,
                "title": title,
                "spread": n > 1,
            }
        )
    for k in range(7):
        t = t0 + (t1 - t0) * k // 6
        chart.ticks.append(
            {
                "x": round(LEFT + (t - t0) * scale, 1),
                "text": dt.datetime.fromtimestamp(t, dt.UTC).strftime(TICK_FORMAT[granularity]),
            }
        )
    chart.total_kwh = _fmt(sum(b.import_wh for b in buckets))
    exported = sum(b.export_wh for b in buckets)
    chart.export_kwh = _fmt(exported) if exported else ""
    chart.n = len(buckets)
    chart.missing = sum(n - 1 for n in spans)
    chart.max_label = f"{_fmt(peak)} kWh"
    return chart


@dataclass
class HealthChart:
    """A stacked bar of the fleet by state."""

    label: str
    width: int = WIDTH
    height: int = 48
    segments: list[dict[str, object]] = field(default_factory=list)
    segments_all: list[dict[str, object]] = field(default_factory=list)


def health_chart(groups: dict[str, int]) -> HealthChart:
    """Reporting / stale / alarmed / disconnected, from the meters counted by health."""
    names = {
        "ok": "reporting",
        "stale": "no recent reading",
        "alarm": "open alarm",
        "off": "disconnected or retired",
    }
    groups = {k: groups.get(k, 0) for k in names}
    total = max(sum(groups.values()), 1)
    chart = HealthChart(", ".join(f"{v:,} {names[k]}" for k, v in groups.items()))
    x = 0.0
    for key, count in groups.items():
        text = f"{count:,} {names[key]}"
        chart.segments_all.append({"key": key, "text": text})
        if count:
            w = round(count / total * WIDTH, 1)
            chart.segments.append({"key": key, "x": round(x, 1), "w": w, "text": text})
            x += w
    return chart


@dataclass
class Spark:
    """One small line chart of the last minutes."""

    label: str
    unit: str
    now: str
    peak: str
    points: str
    width: int = 220
    height: int = 48


def _spark(label: str, unit: str, xs: list[float], ys: list[float], fmt: str) -> Spark:
    w, h = 220, 48
    if len(xs) < 2:
        return Spark(label, unit, "-", "-", "")
    t0, t1 = xs[0], xs[-1]
    top = max(*ys, 1e-9)
    pts = " ".join(
        f"{(x - t0) / max(t1 - t0, 1e-9) * (w - 2) + 1:.1f},{h - 2 - y / top * (h - 6):.1f}"
        for x, y in zip(xs, ys, strict=True)
    )
    return Spark(label, unit, format(ys[-1], fmt), format(top, fmt), pts)


def activity_charts(samples: list[Sample]) -> list[Spark]:
    """Readings/s, refusals/s, meters online and ingest lag over the samples' minutes."""
    rates: list[tuple[float, float, float, float | None, float]] = []
    for a, b in itertools.pairwise(samples):
        dt_s = max(b.at - a.at, 1e-9)
        lag = (b.lag_sum - a.lag_sum) / (b.batches - a.batches) if b.batches > a.batches else 0.0
        rates.append(
            (b.at, (b.readings - a.readings) / dt_s, (b.refused - a.refused) / dt_s,
             b.meters_online, lag * 1000)
        )  # fmt: skip
    xs = [r[0] for r in rates]
    charts = [
        _spark("Readings stored", "/s", xs, [r[1] for r in rates], ",.0f"),
        _spark("Messages refused", "/s", xs, [r[2] for r in rates], ",.1f"),
    ]
    if rates and all(r[3] is not None for r in rates):
        charts.append(_spark("Meters online", "", xs, [float(r[3] or 0) for r in rates], ",.0f"))
    charts.append(_spark("Ingest lag (mean)", "ms", xs, [r[4] for r in rates], ",.1f"))
    return charts
