"""The SQL of billing: tariffs, which meter is on which, the register values a bill needs, bills.

The arithmetic, the signature and the rule that a flat bill reads only two register values
(PRIV-1: the coarsest data billing needs) are the billing service's
(:mod:`meterguard.headend.services.billing`); this module only stores and fetches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, select

from meterguard.headend.store.models import Bill, Meter, MeterTariff, Reading, Tariff

__all__ = ["BillRow", "BillingRepository", "TariffRow"]

TariffRow = tuple[str, str, str, int, str]
"""(name, kind, currency, standing charge per day in 1e-4, bands as JSON)."""
BillRow = tuple[int, str, int, int, str, bytes]
"""(id, meter id, period start, period end, canonical document, signature)."""
Values = Callable[[str, int, int, int, int | None, bytes | None], tuple[int, int] | None]
"""A stored reading's row → (import, export), or None when shredded (the store's)."""


class BillingRepository:
    """Tariffs and bills over one engine."""

    def __init__(self, engine: Engine, values: Values | None = None) -> None:
        self.engine = engine
        self._values: Values = values or (lambda _m, _t, imp, exp, _v, _s: (int(imp), int(exp)))

    def __repr__(self) -> str:
        return "BillingRepository()"

    def add_tariff(self, row: TariffRow, *, now: int) -> int:
        """Store a tariff; its id."""
        name, kind, currency, standing, bands = row
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    insert(Tariff)
                    .values(
                        name=name,
                        kind=kind,
                        currency=currency,
                        standing_e4_per_day=standing,
                        bands=bands,
                        created_at=now,
                    )
                    .returning(Tariff.id)
                ).scalar_one()
            )

    def assign(self, meter_id: str, tariff_id: int) -> bool:
        """Put a meter on a tariff; False if there is no such meter."""
        with self.engine.begin() as conn:
            if conn.scalar(select(Meter.id).where(Meter.id == meter_id)) is None:
                return False
            conn.execute(delete(MeterTariff).where(MeterTariff.meter_id == meter_id))
            conn.execute(insert(MeterTariff).values(meter_id=meter_id, tariff_id=tariff_id))
        return True

    def tariff_of(self, meter_id: str) -> TariffRow | None:
        """The meter's tariff, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(
                    Tariff.name,
                    Tariff.kind,
                    Tariff.currency,
                    Tariff.standing_e4_per_day,
                    Tariff.bands,
                )
                .join(MeterTariff, MeterTariff.tariff_id == Tariff.id)
                .where(MeterTariff.meter_id == meter_id)
            ).first()
        return None if row is None else (row[0], row[1], row[2], int(row[3]), row[4])

    def _registers(self, meter_id: str, where: Any) -> list[tuple[int, int]]:
        q = select(
            Reading.interval_start, Reading.import_wh, Reading.export_wh, Reading.key_version,
            Reading.sealed,
        ).where(Reading.meter_id == meter_id, where)  # fmt: skip
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(Reading.interval_start)).all()
        out = []
        for t, imp, exp, ver, sealed in rows:
            v = self._values(meter_id, int(t), imp, exp, ver, sealed)
            if v is not None:  # a shredded reading is no register value any more
                out.append((int(t), v[0]))
        return out

    def registers_at(self, meter_id: str, starts: Sequence[int]) -> list[tuple[int, int]]:
        """(interval start, cumulative import Wh) of the readings of exactly these intervals."""
        return self._registers(meter_id, Reading.interval_start.in_(list(starts)))

    def registers_between(self, meter_id: str, start: int, end: int) -> list[tuple[int, int]]:
        """(interval start, cumulative import Wh) of every reading in ``[start, end)``."""
        return self._registers(
            meter_id, and_(Reading.interval_start >= start, Reading.interval_start < end)
        )

    def add_bill(
        self, meter_id: str, start: int, end: int, document: str, signature: bytes, *, now: int
    ) -> None:
        """Store a signed bill."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(Bill).values(
                    meter_id=meter_id,
                    period_start=start,
                    period_end=end,
                    document=document,
                    signature=signature,
                    issued_at=now,
                )
            )

    def bills(
        self,
        meter_id: str,
        period: tuple[int, int] | None = None,
        *,
        bill_id: int | None = None,
        limit: int | None = None,
    ) -> list[BillRow]:
        """A meter's bills, newest period first (one period's, one bill's, the newest few)."""
        q = select(
            Bill.id,
            Bill.meter_id,
            Bill.period_start,
            Bill.period_end,
            Bill.document,
            Bill.signature,
        ).where(Bill.meter_id == meter_id)
        if period is not None:
            q = q.where(Bill.period_start == period[0], Bill.period_end == period[1])
        if bill_id is not None:
            q = q.where(Bill.id == bill_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(Bill.period_start.desc()).limit(limit)).all()
        return [(int(a), str(b), int(c), int(d), str(e), bytes(f)) for a, b, c, d, e, f in rows]
