"""The SQL of consents (PRIV-1) and of the consumers' data-access log (API-11, LOG-6).

Consents are stored with who gave them and when; the access log says who other than the
consumer read a meter's data, and what. The rules — who must be logged, what consent allows
— live in :mod:`meterguard.headend.services.usage`.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, insert, select

from meterguard.headend.store.models import Consent, DataAccess

__all__ = ["AccessLogRepository", "ConsentRepository"]


class ConsentRepository:
    """Consumers' recorded consents, one per meter."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __repr__(self) -> str:
        return "ConsentRepository()"

    def get(self, meter_id: str) -> tuple[str, str, int] | None:
        """(granularity, given by, at), or None when none was recorded."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(Consent.granularity, Consent.given_by, Consent.at).where(
                    Consent.meter_id == meter_id
                )
            ).first()
        return None if row is None else (str(row[0]), str(row[1]), int(row[2]))

    def set(self, meter_id: str, granularity: str, *, by: str, now: int) -> None:
        """Record a consent, replacing the previous one."""
        with self.engine.begin() as conn:
            conn.execute(delete(Consent).where(Consent.meter_id == meter_id))
            conn.execute(
                insert(Consent).values(
                    meter_id=meter_id, granularity=granularity, given_by=by, at=now
                )
            )


class AccessLogRepository:
    """Who read which meter's data, and what."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __repr__(self) -> str:
        return "AccessLogRepository()"

    def record(self, *, at: int, meter_id: str, actor: str, role: str, what: str) -> None:
        """Append one access."""
        with self.engine.begin() as conn:
            conn.execute(
                insert(DataAccess).values(
                    at=at, meter_id=meter_id, actor=actor[:64], role=role, what=what[:128]
                )
            )

    def recent(self, meter_id: str, limit: int = 200) -> list[tuple[int, str, str, str]]:
        """(at, actor, role, what) of accesses to ``meter_id``'s data, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(DataAccess.at, DataAccess.actor, DataAccess.role, DataAccess.what)
                .where(DataAccess.meter_id == meter_id)
                .order_by(DataAccess.id.desc())
                .limit(limit)
            ).all()
        return [(int(a), str(b), str(r), str(w)) for a, b, r, w in rows]

    def last(self, meter_id: str, what: str) -> int | None:
        """When ``what`` (exactly) was last recorded for ``meter_id``, or None."""
        with self.engine.connect() as conn:
            at = conn.execute(
                select(DataAccess.at)
                .where(DataAccess.meter_id == meter_id, DataAccess.what == what)
                .order_by(DataAccess.id.desc())
                .limit(1)
            ).scalar()
        return None if at is None else int(at)
