"""The SQL of retention and erasure (PRIV-4): old rows deleted, a consumer's traces removed.

:meth:`RetentionStore.purge` deletes, per data class, the rows older than a cut-off, a
week of rows per transaction; :meth:`RetentionStore.erase_consumer` removes a consumer's
identity (the user row is anonymised, their sessions and meter links deleted) and their
consents, in one
transaction with its audit entry. The audit log is never deleted here: it is append-only and
hash-chained (LOG-2), and its retention is its archive's. Bills stay: they are the billing
contract's record and verify on their own. The rules — what is kept how long, who may erase,
that the meter's data keys are shredded — are :mod:`meterguard.headend.services.retention`'s.
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, func, select, update

from meterguard.headend.store.audit import AuditWriter, Fields
from meterguard.headend.store.models import (
    Bill,
    Consent,
    DataAccess,
    DpLedger,
    Reading,
    UseConsent,
    User,
    UserMeter,
    WebSession,
)

__all__ = ["PURGEABLE", "RetentionStore"]

PURGEABLE = ("interval", "access_log", "bills", "dp_ledger")
"""The data classes :meth:`RetentionStore.purge` knows."""
_SLICE = 7 * 86400


class RetentionStore:
    """Retention and erasure rows over one engine."""

    def __init__(self, engine: Engine, audit: AuditWriter) -> None:
        self.engine, self._audit = engine, audit

    def __repr__(self) -> str:
        return "RetentionStore()"

    def purge(self, before: dict[str, int], *, actor: str, now: int) -> dict[str, int]:
        """Delete rows of each class older than its cut-off (audited); rows deleted per class."""
        columns = {
            "interval": (Reading, Reading.interval_start),
            "access_log": (DataAccess, DataAccess.at),
            "bills": (Bill, Bill.period_end),
            "dp_ledger": (DpLedger, DpLedger.day),
        }
        out = {}
        for kind, cutoff in before.items():
            table, column = columns[kind]
            with self.engine.connect() as conn:
                oldest = conn.scalar(select(func.min(column)))
            total = 0
            # bounded transactions: a week of rows at a time, oldest first (a year of readings
            # is not one statement, and a cut short purge resumes where it stopped)
            t = int(oldest) if oldest is not None else cutoff
            while t < cutoff:
                t = min(t + _SLICE, cutoff)
                with self.engine.begin() as conn:
                    total += max(conn.execute(delete(table).where(column < t)).rowcount, 0)
            out[kind] = total
        with self.engine.begin() as conn:
            self._audit.append_in(
                conn,
                [
                    Fields(
                        at=now, actor=actor, target="retention", action="privacy.retention",
                        result="ok", detail=", ".join(f"{k} {v}" for k, v in out.items()),
                    )
                ],
            )  # fmt: skip
        return out

    def consumer(self, lookup: bytes) -> tuple[int, list[str]] | None:
        """(user id, meters) of the consumer with this login look-up hash, or None."""
        with self.engine.connect() as conn:
            uid = conn.scalar(
                select(User.id).where(User.login_hash == lookup, User.role == "consumer")
            )
            if uid is None:
                return None
            meters = conn.scalars(select(UserMeter.meter_id).where(UserMeter.user_id == uid))
            return int(uid), sorted(str(m) for m in meters)

    def erase_consumer(
        self, user_id: int, meters: list[str], *, actor: str, shredded: int, now: int
    ) -> None:
        """Anonymise the user, drop their sessions, meter links and consents (audited).

        The account row stays (bills and log entries refer to its id) with no name, no
        look-up hash and no credential left.
        """
        with self.engine.begin() as conn:
            conn.execute(delete(WebSession).where(WebSession.user_id == user_id))
            conn.execute(delete(UserMeter).where(UserMeter.user_id == user_id))
            conn.execute(delete(UseConsent).where(UseConsent.meter_id.in_(meters)))
            conn.execute(delete(Consent).where(Consent.meter_id.in_(meters)))
            # "!" is no argon2 hash: nothing ever verifies against it (and the user is disabled).
            conn.execute(
                update(User)
                .where(User.id == user_id)
                .values(
                    username=None, login_hash=None, name_sealed=None,
                    password_hash="!", totp_secret=None, disabled=True,  # noqa: S106
                )
            )  # fmt: skip
            self._audit.append_in(
                conn,
                [
                    Fields(
                        at=now, actor=actor, target=f"user:{user_id}", action="privacy.erase",
                        result="ok",
                        detail=f"{len(meters)} meter(s), {shredded} data key(s) destroyed",
                    )
                ],
            )  # fmt: skip
