"""Usage over a period at a chosen granularity, and consumers' consent to it (PRIV-1).

Readings hold cumulative registers at the end of each 15-minute interval; usage is the
difference between consecutive readings, summed into ``interval``, ``hour``, ``day`` or
``month`` buckets (UTC). The consumer sees their own meter at any granularity; anyone
else (utility roles) at most as finely as the consumer's recorded consent allows —
``day`` when none was given. Consents are stored with who gave them and when; this
module never decides *who* is asking (the API passes the role it authenticated).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from meterguard.errors import InvalidValueError
from meterguard.headend.store.models import Consent

__all__ = ["DEFAULT_CONSENT", "GRANULARITIES", "Bucket", "Consents", "finer", "usage"]

GRANULARITIES = ("interval", "hour", "day", "month")
"""Finest first."""
DEFAULT_CONSENT = "day"
_SIZES = {"interval": 900, "hour": 3600, "day": 86400}


@dataclass(frozen=True, slots=True)
class Bucket:
    """Energy imported and exported in ``[start, start + its size)``."""

    start: int
    import_wh: int
    export_wh: int


def finer(a: str, b: str) -> bool:
    """Is granularity ``a`` finer than ``b``?"""
    return GRANULARITIES.index(a) < GRANULARITIES.index(b)


def _bucket_start(ts: int, granularity: str) -> int:
    if granularity == "month":
        d = dt.datetime.fromtimestamp(ts, dt.UTC)
        return int(dt.datetime(d.year, d.month, 1, tzinfo=dt.UTC).timestamp())
    size = _SIZES[granularity]
    return ts - ts % size


def usage(readings: list[tuple[int, int, int]], granularity: str) -> list[Bucket]:
    """Buckets from ``(interval start, cumulative import, cumulative export)`` rows in order.

    The first row is the baseline; a gap's energy lands in the bucket of the reading that
    closes it.
    """
    if granularity not in GRANULARITIES:
        raise InvalidValueError(f"granularity is one of {', '.join(GRANULARITIES)}")
    out: dict[int, list[int]] = {}
    for (_, i0, e0), (t1, i1, e1) in itertools.pairwise(readings):
        b = out.setdefault(_bucket_start(t1, granularity), [0, 0])
        b[0] += max(i1 - i0, 0)
        b[1] += max(e1 - e0, 0)
    return [Bucket(k, v[0], v[1]) for k, v in sorted(out.items())]


class Consents:
    """Consumers' recorded consents."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, meter_id: str) -> tuple[str, str | None, int | None]:
        """(granularity, given by, at); the default when none was recorded."""
        with self.engine.connect() as conn:
            row = conn.execute(select(Consent).where(Consent.meter_id == meter_id)).first()
        if row is None:
            return DEFAULT_CONSENT, None, None
        return row.granularity, row.given_by, row.at

    def set(self, meter_id: str, granularity: str, *, by: str, now: int) -> None:
        """Record a consent (replacing the previous one)."""
        if granularity not in GRANULARITIES:
            raise InvalidValueError(f"granularity is one of {', '.join(GRANULARITIES)}")
        with self.engine.begin() as conn:
            conn.execute(delete(Consent).where(Consent.meter_id == meter_id))
            conn.execute(
                insert(Consent).values(
                    meter_id=meter_id, granularity=granularity, given_by=by, at=now
                )
            )
