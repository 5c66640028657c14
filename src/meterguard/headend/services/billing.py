"""Tariffs and signed bills from verified readings (issue 6 §5, PRIV-1).

* **Tariffs** are flat (one unit rate) or time-of-use (bands of UTC hours covering the
  day, each with its unit rate), plus a daily standing charge. Money is integer
  ten-thousandths of the currency unit (``_e4``), so no float ever touches a bill.
* **Bills** use only what ingest stored — readings whose GCM tag and counter verified
  (nothing else reaches ``readings``) — and the coarsest data the tariff needs: a flat
  tariff reads two register values (the period's first and last), a time-of-use tariff
  sums interval deltas per band. Only the per-band totals go into the bill (PRIV-1).
  Energy across a gap of missing intervals is charged at the band of the interval that
  closes the gap and the gap is counted in the bill (``missing_intervals``).
* Each bill is a canonical JSON document (sorted keys, no spaces) signed with ECDSA
  P-256 by the head-end's billing key under a domain prefix; :func:`verify_bill`
  checks the signature *and* re-adds the charges, so a total changed later — by anyone
  without the key — is detected, and anyone with the public key can check a bill.

Not here: payment, VAT, proration of a tariff changed mid-period (a bill uses the
meter's tariff when it is issued).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from meterguard.crypto.ecc import SigningKey, VerifyingKey
from meterguard.errors import InvalidValueError, NotFoundError
from meterguard.headend.store.billing import BillRow, TariffRow

__all__ = ["Band", "BillView", "Billing", "TariffSpec", "canonical", "verify_bill"]

DOMAIN = b"meterguard-bill-v1\n"
PERIOD = 900
DAY = 86400


@dataclass(frozen=True, slots=True)
class Band:
    """Hours ``[start, end)`` of the UTC day at ``rate_e4`` per kWh."""

    start: int
    end: int
    rate_e4: int


@dataclass(frozen=True, slots=True)
class TariffSpec:
    """A tariff's terms."""

    name: str
    kind: str
    currency: str
    standing_e4_per_day: int
    bands: tuple[Band, ...]

    def check(self) -> None:
        """Raise InvalidValueError unless the bands tile 0-24 h and the kind fits."""
        if self.kind not in ("flat", "tou"):
            raise InvalidValueError("a tariff is flat or tou")
        if self.kind == "flat" and len(self.bands) != 1:
            raise InvalidValueError("a flat tariff has one band")
        hour = 0
        for b in self.bands:
            if b.start != hour or not b.start < b.end <= 24 or b.rate_e4 < 0:
                raise InvalidValueError("bands must tile the day from 0 to 24 h")
            hour = b.end
        if hour != 24 or self.standing_e4_per_day < 0 or len(self.currency) != 3:
            raise InvalidValueError("bands must end at 24 h; standing charge ≥ 0; ISO currency")

    def band_of(self, ts: int) -> int:
        """Index of the band an interval starting at ``ts`` falls in."""
        hour = (ts % DAY) // 3600
        return next(i for i, b in enumerate(self.bands) if b.start <= hour < b.end)

    def to_json(self) -> dict[str, Any]:
        """As it appears in a bill."""
        return {
            "name": self.name,
            "kind": self.kind,
            "currency": self.currency,
            "standing_e4_per_day": self.standing_e4_per_day,
            "bands": [[b.start, b.end, b.rate_e4] for b in self.bands],
        }


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes a bill's signature covers."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _charge(wh: int, rate_e4: int) -> int:
    """Wh at a per-kWh rate, in ten-thousandths, rounded half up."""
    return (wh * rate_e4 + 500) // 1000


def verify_bill(document: dict[str, Any], signature: bytes, key: VerifyingKey) -> None:
    """Check a bill's signature and that its total is the sum of its charges.

    Raises:
        SignatureInvalidError: not signed by the billing key, or altered since.
        InvalidValueError: the figures do not add up.
    """
    key.verify(signature, DOMAIN + canonical(document))
    lines = document["lines"]
    for line in lines:
        if _charge(int(line["wh"]), int(line["rate_e4"])) != int(line["charge_e4"]):
            raise InvalidValueError("a line's charge does not match its energy and rate")
    total = sum(int(line["charge_e4"]) for line in lines) + int(document["standing_e4"])
    if total != int(document["total_e4"]):
        raise InvalidValueError("the total is not the sum of the charges")


@dataclass(frozen=True, slots=True)
class BillView:
    """A stored bill."""

    id: int
    meter_id: str
    period_start: int
    period_end: int
    document: dict[str, Any]
    signature: str
    """Hex ``r || s``."""


class Repository(Protocol):
    """Where tariffs and bills are kept (``BillingRepository`` in ``headend/store/billing``)."""

    def add_tariff(self, row: TariffRow, *, now: int) -> int:
        """Store a tariff."""

    def assign(self, meter_id: str, tariff_id: int) -> bool:
        """Put a meter on a tariff."""

    def tariff_of(self, meter_id: str) -> TariffRow | None:
        """The meter's tariff."""

    def registers_at(self, meter_id: str, starts: Sequence[int]) -> list[tuple[int, int]]:
        """Register values of exactly these intervals."""

    def registers_between(self, meter_id: str, start: int, end: int) -> list[tuple[int, int]]:
        """Register values of every interval in a period."""

    def add_bill(
        self, meter_id: str, start: int, end: int, document: str, signature: bytes, *, now: int
    ) -> None:
        """Store a signed bill."""

    def bills(
        self,
        meter_id: str,
        period: tuple[int, int] | None = None,
        *,
        bill_id: int | None = None,
        limit: int | None = None,
    ) -> list[BillRow]:
        """A meter's bills, newest period first (one period's, one bill's, the newest few)."""


class Billing:
    """Tariffs and bills: the arithmetic and the signature, over a repository."""

    def __init__(self, repository: Repository, signing_key: SigningKey) -> None:
        self._repo = repository
        self._key = signing_key
        self.verifying_key = signing_key.verifying_key()

    def __repr__(self) -> str:
        return "Billing(<billing key redacted>)"

    def add_tariff(self, spec: TariffSpec, *, now: int) -> int:
        """Store a tariff; its id."""
        spec.check()
        bands = json.dumps(spec.to_json()["bands"])
        return self._repo.add_tariff(
            (spec.name, spec.kind, spec.currency, spec.standing_e4_per_day, bands), now=now
        )

    def assign(self, meter_id: str, tariff_id: int) -> None:
        """Bill ``meter_id`` on ``tariff_id`` from now on.

        Raises:
            InvalidValueError: no such meter.
        """
        if not self._repo.assign(meter_id, tariff_id):
            raise InvalidValueError("no such meter")

    def tariff_of(self, meter_id: str) -> TariffSpec | None:
        """The meter's tariff, or None."""
        row = self._repo.tariff_of(meter_id)
        if row is None:
            return None
        name, kind, currency, standing, bands_json = row
        bands = tuple(Band(int(a), int(b), int(c)) for a, b, c in json.loads(bands_json))
        return TariffSpec(name, kind, currency, standing, bands)

    def compute(self, meter_id: str, start: int, end: int) -> dict[str, Any]:
        """The bill document for ``[start, end)`` (not stored, not signed).

        Raises:
            InvalidValueError: no tariff, a bad period, or no readings at its ends.
        """
        if start % PERIOD or end % PERIOD or end <= start:
            raise InvalidValueError("a billing period starts and ends on 15-minute boundaries")
        tariff = self.tariff_of(meter_id)
        if tariff is None:
            raise InvalidValueError("the meter has no tariff")
        # Cumulative register at time t is the reading of the interval ending at t.
        if tariff.kind == "flat":  # PRIV-1: two register values are all a flat tariff needs
            rows = self._repo.registers_at(meter_id, (start - PERIOD, end - PERIOD))
        else:
            rows = self._repo.registers_between(meter_id, start - PERIOD, end)
        if len(rows) < 2 or rows[0][0] != start - PERIOD or rows[-1][0] != end - PERIOD:
            raise InvalidValueError("no verified register reading at the period's start or end")
        wh = [0] * len(tariff.bands)
        missing = 0
        if tariff.kind == "flat":
            wh[0] = rows[-1][1] - rows[0][1]
        else:
            for (t0, v0), (t1, v1) in itertools.pairwise(rows):
                missing += (t1 - t0) // PERIOD - 1
                wh[tariff.band_of(t1)] += v1 - v0
        if any(w < 0 for w in wh):
            raise InvalidValueError("the import register went backwards in this period")
        days = -(-(end - start) // DAY)
        charges = [_charge(w, b.rate_e4) for b, w in zip(tariff.bands, wh, strict=True)]
        lines = [
            {"band": f"{b.start:02d}-{b.end:02d}h", "wh": w, "rate_e4": b.rate_e4, "charge_e4": c}
            for b, w, c in zip(tariff.bands, wh, charges, strict=True)
        ]
        standing = days * tariff.standing_e4_per_day
        return {
            "version": 1,
            "meter_id": meter_id,
            "period": {"start": start, "end": end},
            "tariff": tariff.to_json(),
            "lines": lines,
            "standing_days": days,
            "standing_e4": standing,
            "total_e4": sum(charges) + standing,
            "missing_intervals": missing,
            "source": "verified readings (GCM tag and counter checked at ingest)",
        }

    def issue(self, meter_id: str, start: int, end: int, *, now: int) -> BillView:
        """Compute, sign and store the bill for a period (the same period twice: the first)."""
        existing = self.bills(meter_id, period=(start, end))
        if existing:
            return existing[0]
        document = self.compute(meter_id, start, end)
        document["issued_at"] = now
        signature = self._key.sign(DOMAIN + canonical(document))
        self._repo.add_bill(meter_id, start, end, canonical(document).decode(), signature, now=now)
        return self.bills(meter_id, period=(start, end))[0]

    def bill(self, meter_id: str, bill_id: int) -> BillView:
        """One of the meter's bills.

        Raises:
            NotFoundError: the meter has no bill of that id.
        """
        found = self._views(self._repo.bills(meter_id, bill_id=bill_id))
        if not found:
            raise NotFoundError("no such bill")
        return found[0]

    def so_far(self, meter_id: str, end: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """This month's cost up to ``end`` (the newest reading), and the month before's.

        The second is the same days of the month before, for comparison (None when there are
        no readings for them). Estimates from the meter's tariff, neither stored nor signed:
        a bill is what counts.

        Raises:
            InvalidValueError: no tariff, or no reading this month yet.
        """
        end -= end % PERIOD
        day = dt.datetime.fromtimestamp(end - 1, dt.UTC)
        month = int(day.replace(day=1, hour=0, minute=0, second=0).timestamp())
        rows = self._repo.registers_between(meter_id, month - PERIOD, end)
        if not rows:
            raise InvalidValueError("no verified reading this month yet")
        start = rows[0][0] + PERIOD
        if end <= start:
            raise InvalidValueError("no verified reading this month yet")
        now = self.compute(meter_id, start, end)
        first = dt.datetime.fromtimestamp(start, dt.UTC)
        back = (first.replace(day=1) - dt.timedelta(days=1)).replace(
            day=min(first.day, 28), hour=first.hour, minute=first.minute
        )
        before = int(back.timestamp())
        try:
            earlier = self.compute(meter_id, before, before + (end - start))
        except InvalidValueError:
            earlier = None
        return now, earlier

    def bills(
        self,
        meter_id: str,
        *,
        period: tuple[int, int] | None = None,
        limit: int | None = None,
    ) -> list[BillView]:
        """A meter's bills, newest period first (the newest ``limit`` when given)."""
        return self._views(self._repo.bills(meter_id, period, limit=limit))

    @staticmethod
    def _views(rows: list[BillRow]) -> list[BillView]:
        return [
            BillView(bid, mid, start, end, json.loads(document), signature.hex())
            for bid, mid, start, end, document, signature in rows
        ]
