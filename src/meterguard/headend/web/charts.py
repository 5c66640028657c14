"""Chart geometry for the dashboard's server-rendered SVG (no JavaScript, strict-CSP safe).

Pure functions from data to the numbers a template draws: bar positions of a usage chart
and the segments of the fleet-health bar. No IO, no markup (the templates escape and draw).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from meterguard.headend.services.usage import Bucket
from meterguard.headend.store.repository import MeterStatus

__all__ = ["HealthChart", "UsageChart", "health_chart", "usage_chart"]

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


def _fmt(wh: float) -> str:
    return f"{wh / 1000:.2f}" if wh < 100_000 else f"{wh / 1000:.0f}"


def usage_chart(buckets: list[Bucket], granularity: str, meter_id: str) -> UsageChart:
    """Bars for ``buckets`` (oldest first)."""
    unit = {"interval": "15-minute interval", "hour": "hour", "day": "day", "month": "month"}
    chart = UsageChart(
        f"Energy used by meter {meter_id} per {unit[granularity]}", unit[granularity]
    )
    if not buckets:
        return chart
    peak = max(b.import_wh for b in buckets) or 1
    slot = (WIDTH - LEFT) / len(buckets)
    every = max(1, len(buckets) // 8)
    for k, b in enumerate(buckets):
        h = round(b.import_wh / peak * (HEIGHT - 10), 1)
        when = dt.datetime.fromtimestamp(b.start, dt.UTC)
        stamp = when.strftime("%Y-%m-%d" if granularity in ("day", "month") else "%m-%d %H:%M")
        chart.bars.append(
            {
                "x": round(LEFT + k * slot + slot * 0.1, 1),
                "y": round(HEIGHT - h, 1),
                "w": round(max(slot * 0.8, 0.5), 1),
                "h": h,
                "title": f"{stamp}: {b.import_wh} Wh",
            }
        )
        if k % every == 0:
            short = when.strftime("%d %b" if granularity in ("day", "month") else "%d %H:%M")
            chart.ticks.append({"x": round(LEFT + (k + 0.5) * slot, 1), "text": short})
    chart.max_label = f"{_fmt(peak)} kWh"
    chart.total_kwh = _fmt(sum(b.import_wh for b in buckets))
    exported = sum(b.export_wh for b in buckets)
    chart.export_kwh = _fmt(exported) if exported else ""
    chart.n = len(buckets)
    return chart


@dataclass
class HealthChart:
    """A stacked bar of the fleet by state."""

    label: str
    width: int = WIDTH
    height: int = 48
    segments: list[dict[str, object]] = field(default_factory=list)
    segments_all: list[dict[str, object]] = field(default_factory=list)


def health_chart(meters: list[MeterStatus]) -> HealthChart:
    """Reporting / stale / alarmed / disconnected, relative to the newest reading anywhere."""
    newest = max((m.last_reading_at or 0 for m in meters), default=0)
    groups = {"ok": 0, "stale": 0, "alarm": 0, "off": 0}
    for m in meters:
        if m.open_alarms:
            groups["alarm"] += 1
        elif m.control_state == 0 or m.state != "active":
            groups["off"] += 1
        elif m.last_reading_at is None or newest - m.last_reading_at > STALE_AFTER:
            groups["stale"] += 1
        else:
            groups["ok"] += 1
    names = {
        "ok": "reporting",
        "stale": "no recent reading",
        "alarm": "open alarm",
        "off": "disconnected or retired",
    }
    total = max(len(meters), 1)
    chart = HealthChart(", ".join(f"{v} {names[k]}" for k, v in groups.items()))
    x = 0.0
    for key, count in groups.items():
        text = f"{count} {names[key]}"
        chart.segments_all.append({"key": key, "text": text})
        if count:
            w = round(count / total * WIDTH, 1)
            chart.segments.append({"key": key, "x": round(x, 1), "w": w, "text": text})
            x += w
    return chart
