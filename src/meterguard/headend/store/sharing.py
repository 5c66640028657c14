"""The SQL of data sharing: consents per use, recipients, exports, DP releases, the ledger.

Each change is one transaction with its audit entry (LOG-1). The privacy ledger keeps one
row per consumer and day; a release debits every member's row with a conditional update
(``spent + ε ≤ budget``) in the same transaction that stores the release, so two releases
racing for the last of a budget cannot both succeed, on SQLite or PostgreSQL. The rules —
who may share, what consent allows, what a release costs — are the sharing service's
(:mod:`meterguard.headend.services.sharing`) and the consumption-data service's
(:mod:`meterguard.headend.services.usage`); this module only stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from meterguard.errors import ConflictError
from meterguard.headend.store.audit import AuditWriter, Fields
from meterguard.headend.store.models import (
    DpLedger,
    DpRelease,
    Export,
    Recipient,
    UseConsent,
)

__all__ = ["ExportView", "RecipientView", "ReleaseView", "SharingStore"]


@dataclass(frozen=True, slots=True)
class RecipientView:
    """A third party and the use it receives data for."""

    id: int
    name: str
    use: str
    created_by: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ExportView:
    """A generated export."""

    id: int
    recipient_id: int
    created_by: str
    created_at: int
    start: int
    end: int
    granularity: str
    rotation: str
    k: int
    included: int
    refused: int
    manifest_sha256: str
    path: str


@dataclass(frozen=True, slots=True)
class ReleaseView:
    """A DP release."""

    id: int
    scope: str
    day: int
    epsilon: float
    homes: int
    created_by: str
    created_at: int
    curve: str


class BudgetExhausted(Exception):  # noqa: N818 - internal signal, mapped by the service
    """A member's day has not enough budget left (the transaction was rolled back)."""

    def __init__(self, meter_id: str) -> None:
        super().__init__(meter_id)
        self.meter_id = meter_id


class SharingStore:
    """Data-sharing rows over one engine."""

    def __init__(self, engine: Engine, audit: AuditWriter) -> None:
        self.engine, self._audit = engine, audit

    def __repr__(self) -> str:
        return "SharingStore()"

    # -- consents per use ----------------------------------------------------------------------

    def use_consent(self, meter_id: str, use: str) -> tuple[str, str, int] | None:
        """(granularity, given by, at) of a meter's consent to ``use``, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(UseConsent.granularity, UseConsent.given_by, UseConsent.at).where(
                    UseConsent.meter_id == meter_id, UseConsent.use == use
                )
            ).first()
        return None if row is None else (str(row[0]), str(row[1]), int(row[2]))

    def _by_meter(
        self, key: Any, value: Any, meter_ids: Sequence[str], *where: Any
    ) -> dict[str, Any]:
        """``key → value`` of the rows of ``meter_ids`` (500 ids a query) that match ``where``."""
        out: dict[str, Any] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(meter_ids), 500):
                rows = conn.execute(
                    select(key, value).where(key.in_(meter_ids[i : i + 500]), *where)
                )
                out.update({str(k): v for k, v in rows})
        return out

    def use_consents(self, meter_ids: Sequence[str], use: str) -> dict[str, str]:
        """Meter → consented granularity for ``use``, for those of ``meter_ids`` that consented."""
        found = self._by_meter(
            UseConsent.meter_id, UseConsent.granularity, meter_ids, UseConsent.use == use
        )
        return {m: str(g) for m, g in found.items()}

    def uses_of(self, meter_id: str) -> dict[str, tuple[str, str, int]]:
        """Every use the meter's consumer consented to: use → (granularity, by, at)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(UseConsent.use, UseConsent.granularity, UseConsent.given_by, UseConsent.at)
                .where(UseConsent.meter_id == meter_id)
                .order_by(UseConsent.use)
            )
            return {str(u): (str(g), str(b), int(a)) for u, g, b, a in rows}

    def set_use_consent(
        self, meter_id: str, use: str, granularity: str | None, *, by: str, now: int
    ) -> None:
        """Record (or, with None, withdraw) a consent to ``use`` (audited)."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(UseConsent).where(UseConsent.meter_id == meter_id, UseConsent.use == use)
            )
            if granularity is not None:
                conn.execute(
                    insert(UseConsent).values(
                        meter_id=meter_id, use=use, granularity=granularity, given_by=by, at=now
                    )
                )
            self._audit.append_in(
                conn,
                [
                    Fields(
                        at=now, actor=by, target=meter_id, action="consent.use",
                        result=granularity or "withdrawn", detail=use,
                    )
                ],
            )  # fmt: skip

    # -- recipients and exports ----------------------------------------------------------------

    def add_recipient(self, name: str, use: str, *, actor: str, now: int) -> int:
        """A new recipient (audited); its id.

        Raises:
            ConflictError: the name is taken.
        """
        try:
            with self.engine.begin() as conn:
                rid = conn.scalar(
                    insert(Recipient)
                    .values(name=name, use=use, created_by=actor, created_at=now)
                    .returning(Recipient.id)
                )
                self._audit.append_in(
                    conn,
                    [
                        Fields(
                            at=now, actor=actor, target=name, action="sharing.recipient",
                            result="ok", detail=use,
                        )
                    ],
                )  # fmt: skip
        except IntegrityError:
            raise ConflictError(f"a recipient named {name[:64]} exists") from None
        return int(rid or 0)

    def recipients(self) -> list[RecipientView]:
        """Every recipient, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    Recipient.id, Recipient.name, Recipient.use, Recipient.created_by,
                    Recipient.created_at,
                ).order_by(Recipient.name)
            )  # fmt: skip
            return [RecipientView(int(i), str(n), str(u), str(b), int(a)) for i, n, u, b, a in rows]

    def recipient(self, rid: int) -> RecipientView | None:
        """One recipient, or None."""
        cols = [getattr(Recipient, k) for k in RecipientView.__slots__]
        with self.engine.connect() as conn:
            row = conn.execute(select(*cols).where(Recipient.id == rid)).first()
        return None if row is None else RecipientView(*row)

    def reserve_export(self, recipient_id: int, created_by: str, now: int) -> int:
        """A new export's id, taken before its files are written (its row is not listed yet).

        Concurrent exports each get an id of their own, so the directory, the manifest and
        the consumers' access-log entries of one never name another's.
        """
        with self.engine.begin() as conn:
            eid = conn.scalar(
                insert(Export)
                .values(
                    recipient_id=recipient_id, created_by=created_by, created_at=now, start=0,
                    end=0, granularity="", rotation="", k=0, included=0, refused=0,
                    manifest_sha256="", path="",
                )
                .returning(Export.id)
            )  # fmt: skip
        return int(eid or 0)

    def complete_export(self, row: ExportView, *, detail: str) -> None:
        """Record what the reserved export ``row.id`` holds (audited): from now on it is listed."""
        values = {k: getattr(row, k) for k in ExportView.__slots__ if k != "id"}
        with self.engine.begin() as conn:
            conn.execute(update(Export).where(Export.id == row.id).values(**values))
            self._audit.append_in(
                conn,
                [
                    Fields(
                        at=row.created_at, actor=row.created_by, target=f"export:{row.id}",
                        action="sharing.export", result="ok", detail=detail[:200],
                    )
                ],
            )  # fmt: skip

    def drop_export(self, eid: int) -> None:
        """Give back a reserved export's id whose generation failed (a completed one stays)."""
        with self.engine.begin() as conn:
            conn.execute(delete(Export).where(Export.id == eid, Export.manifest_sha256 == ""))

    def export(self, eid: int) -> ExportView | None:
        """One completed export, or None."""
        cols = [getattr(Export, k) for k in ExportView.__slots__]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(*cols).where(Export.id == eid, Export.manifest_sha256 != "")
            ).first()
        return None if row is None else ExportView(*row)

    def exports(self, limit: int = 200) -> list[ExportView]:
        """Exports, newest first."""
        cols = [getattr(Export, k) for k in ExportView.__slots__]
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(*cols)
                .where(Export.manifest_sha256 != "")
                .order_by(Export.id.desc())
                .limit(limit)
            ).all()
        return [ExportView(*r) for r in rows]

    # -- DP releases and the ledger ------------------------------------------------------------

    def release(self, scope: str, day: int, epsilon: float) -> ReleaseView | None:
        """The stored release of ``scope`` for ``day`` at ``epsilon``, or None."""
        cols = [getattr(DpRelease, k) for k in ReleaseView.__slots__]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(*cols).where(
                    DpRelease.scope == scope, DpRelease.day == day, DpRelease.epsilon == epsilon
                )
            ).first()
        return None if row is None else ReleaseView(*row)

    def releases(self, limit: int = 200) -> list[ReleaseView]:
        """Releases, newest first."""
        cols = [getattr(DpRelease, k) for k in ReleaseView.__slots__]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).order_by(DpRelease.id.desc()).limit(limit)).all()
        return [ReleaseView(*r) for r in rows]

    def spent(self, meter_ids: Sequence[str], day: int) -> dict[str, float]:
        """ε already spent on ``day`` by each of ``meter_ids`` (absent: nothing)."""
        found = self._by_meter(DpLedger.meter_id, DpLedger.spent, meter_ids, DpLedger.day == day)
        return {m: float(s) for m, s in found.items()}

    def add_release(self, row: ReleaseView, members: Sequence[str], *, budget: float) -> int:
        """Store a release and debit every member's day in one transaction; its id.

        Raises:
            BudgetExhausted: a member's day would exceed ``budget`` (nothing is stored).
            ConflictError: the same release was stored meanwhile.
        """
        eps = row.epsilon
        try:
            with self.engine.begin() as conn:
                for mid in members:
                    done = conn.execute(
                        update(DpLedger)
                        .where(
                            and_(
                                DpLedger.meter_id == mid,
                                DpLedger.day == row.day,
                                DpLedger.spent + eps <= budget + 1e-9,
                            )
                        )
                        .values(spent=DpLedger.spent + eps)
                    ).rowcount
                    if done:
                        continue
                    exists = conn.scalar(
                        select(DpLedger.spent).where(
                            DpLedger.meter_id == mid, DpLedger.day == row.day
                        )
                    )
                    if exists is not None or eps > budget + 1e-9:
                        raise BudgetExhausted(mid)
                    conn.execute(insert(DpLedger).values(meter_id=mid, day=row.day, spent=eps))
                values = {k: getattr(row, k) for k in ReleaseView.__slots__ if k != "id"}
                rid = conn.scalar(insert(DpRelease).values(**values).returning(DpRelease.id))
                self._audit.append_in(
                    conn,
                    [
                        Fields(
                            at=row.created_at, actor=row.created_by, target=row.scope,
                            action="sharing.dp_release", result="ok",
                            detail=f"day {row.day}, ε {eps:g}, {row.homes} homes",
                        )
                    ],
                )  # fmt: skip
        except IntegrityError:
            raise ConflictError("this release was made meanwhile") from None
        return int(rid or 0)
