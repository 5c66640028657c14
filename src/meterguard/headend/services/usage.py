"""Every read of a consumer's consumption data goes through here (PRIV-1, API-11, API-1).

:class:`ConsumptionData` is the one service behind every route, page and command that
returns consumption data — raw readings, usage by granularity, bills, on-demand reads —
so its three rules hold everywhere alike:

* **scope** (API-1): a meter the caller may not see is :class:`~meterguard.errors.
  NotFoundError`, exactly like one that does not exist;
* **consent** (PRIV-1): the consumer sees their own meter at any granularity; anyone else
  (utility roles) at most as finely as the consumer's recorded consent — ``day`` when none
  was given. Raw 15-minute readings are ``interval`` data; an on-demand register read is
  allowed once per consented period (two reads an hour apart are hourly data); bills are
  the billing contract's own data (a flat bill needs two register values, a time-of-use bill
  band totals) and are always readable by the utility;
* **access log** (API-11): every read by someone other than the consumer is recorded, with
  who and what, in the log the consumer sees;
* **sharing with third parties** (PRIV-2): the consumer consents per *use* (research,
  energy services, the grid operator) and per granularity; :meth:`ConsumptionData.share`
  hands a data-sharing role only the meters whose consumer consented to that use at that
  granularity or finer, and logs the export in each one's access log; and
  :meth:`ConsumptionData.aggregate` hands a release role the hourly data of a group for a
  differentially private aggregate (no consent: no one consumer's data leaves), logged the
  same way.

Usage is the difference between consecutive cumulative readings, summed into ``interval``,
``hour``, ``day`` or ``month`` buckets (UTC). This module holds no SQL: the readings, the
consents, the access log and the scope are given to it. It never decides *who* is asking
(the API passes the :class:`~meterguard.headend.services.accounts.Principal` it
authenticated).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from meterguard.errors import AccessDeniedError, InvalidValueError, NotFoundError
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.records import AuditLog

__all__ = [
    "DEFAULT_CONSENT",
    "GRANULARITIES",
    "RELEASE_ROLES",
    "SHARING_ROLES",
    "USES",
    "Bucket",
    "ConsentView",
    "ConsumptionData",
    "consumption_data",
    "finer",
    "usage",
]

GRANULARITIES = ("interval", "hour", "day", "month")
"""Finest first."""
DEFAULT_CONSENT = "day"
USES = ("research", "energy-services", "grid-operator")
"""What a consumer may consent to share their data for (PRIV-2)."""
SHARING_ROLES = frozenset({"privacy_officer"})
"""Who defines recipients and exports data to them."""
RELEASE_ROLES = frozenset({"privacy_officer", "operator"})
"""Who may release differentially private aggregates."""
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
    _check(granularity)
    out: dict[int, list[int]] = {}
    for (_, i0, e0), (t1, i1, e1) in itertools.pairwise(readings):
        b = out.setdefault(_bucket_start(t1, granularity), [0, 0])
        b[0] += max(i1 - i0, 0)
        b[1] += max(e1 - e0, 0)
    return [Bucket(k, v[0], v[1]) for k, v in sorted(out.items())]


class Readings(Protocol):
    """Stored, verified readings (:class:`~meterguard.headend.store.repository.Store`)."""

    def readings(self, meter_id: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """(interval start, cumulative import, cumulative export) in ``[start, end)``."""

    def latest_interval(self, meter_id: str) -> int | None:
        """Start of the newest stored interval."""


class Consents(Protocol):
    """Recorded consents (:class:`~meterguard.headend.store.privacy.ConsentRepository`)."""

    def get(self, meter_id: str) -> tuple[str, str, int] | None:
        """(granularity, given by, at) or None."""

    def set(self, meter_id: str, granularity: str, *, by: str, now: int) -> None:
        """Record a consent."""


class AccessLog(Protocol):
    """The consumers' access log (``AccessLogRepository`` in ``headend/store/privacy``)."""

    def record(self, *, at: int, meter_id: str, actor: str, role: str, what: str) -> None:
        """Append one access."""

    def recent(self, meter_id: str, limit: int = 200) -> list[tuple[int, str, str, str]]:
        """(at, actor, role, what), newest first."""

    def last(self, meter_id: str, what: str) -> int | None:
        """When ``what`` was last recorded."""


class UseConsents(Protocol):
    """Consents per use (:class:`~meterguard.headend.store.sharing.SharingStore`)."""

    def use_consents(self, meter_ids: Sequence[str], use: str) -> dict[str, str]:
        """Meter → consented granularity for ``use``."""

    def uses_of(self, meter_id: str) -> dict[str, tuple[str, str, int]]:
        """Each consented use → (granularity, by, at)."""

    def set_use_consent(
        self, meter_id: str, use: str, granularity: str | None, *, by: str, now: int
    ) -> None:
        """Record or withdraw (audited)."""


class Scope(Protocol):
    """Which meters a caller may see (:class:`~meterguard.headend.services.accounts.Accounts`)."""

    def visible_meter(self, who: Principal, meter_id: str) -> bool:
        """API-1."""


@dataclass(frozen=True, slots=True)
class ConsentView:
    """A meter's consent: the granularity, who gave it and when (None: the default)."""

    granularity: str
    given_by: str | None
    at: int | None


_PERIOD = {"interval": 900, "hour": 3600, "day": 86400, "month": 31 * 86400}
"""The shortest time between two on-demand reads that a consent allows."""
ON_DEMAND = "on-demand read"
CONSENT_ROLES = frozenset({"consumer", "auditor"})
"""Who may see a meter's consent (the consumer sets it; auditors check it)."""


class ConsumptionData:
    """The consumption-data service."""

    def __init__(
        self,
        readings: Readings,
        consents: Consents,
        access: AccessLog,
        scope: Scope,
        audit: AuditLog,
        uses: UseConsents | None = None,
    ) -> None:
        self._readings, self._consents, self._access = readings, consents, access
        self._scope, self._audit, self._uses = scope, audit, uses

    def __repr__(self) -> str:
        return "ConsumptionData()"

    # ------------------------------------------------------------------ the rules

    def visible(self, who: Principal, meter_id: str) -> None:
        """API-1: the meter exists and is the caller's to see.

        Raises:
            NotFoundError: it is not (another consumer's meter looks like no meter).
        """
        if not self._scope.visible_meter(who, meter_id):
            raise NotFoundError(f"no meter {meter_id[:20]} for {who.actor}")

    def consent(self, meter_id: str) -> ConsentView:
        """The meter's consent (the default, ``day``, when none was recorded)."""
        row = self._consents.get(meter_id)
        return ConsentView(DEFAULT_CONSENT, None, None) if row is None else ConsentView(*row)

    def _allow(self, who: Principal, meter_id: str, granularity: str) -> None:
        """PRIV-1: the utility sees data at most as finely as the consumer consented."""
        self.visible(who, meter_id)
        if who.role == "consumer":
            return
        allowed = self.consent(meter_id).granularity
        if finer(granularity, allowed):
            raise AccessDeniedError(f"{granularity} data of {meter_id}: consent is {allowed}")

    def _log(self, who: Principal, meter_id: str, what: str, now: int) -> None:
        """API-11: a read by anyone but the consumer goes to the consumer's access log."""
        if who.role != "consumer":
            self._access.record(
                at=now, meter_id=meter_id, actor=who.actor, role=who.role, what=what
            )

    # ------------------------------------------------------------------ reads

    def readings(
        self, who: Principal, meter_id: str, start: int, end: int, *, now: int
    ) -> list[tuple[int, int, int]]:
        """Raw 15-minute readings (``interval`` data) in ``[start, end)``.

        Raises:
            NotFoundError: not the caller's meter.
            AccessDeniedError: the consumer did not consent to interval data.
        """
        self._allow(who, meter_id, "interval")
        rows = self._readings.readings(meter_id, start, end)
        self._log(who, meter_id, f"readings {start}..{end}", now)
        return rows

    def usage(
        self, who: Principal, meter_id: str, start: int, end: int, granularity: str, *, now: int
    ) -> list[Bucket]:
        """Usage in ``[start, end)`` by ``granularity``.

        Raises:
            NotFoundError: not the caller's meter.
            AccessDeniedError: finer than the consumer consented to.
            InvalidValueError: unknown granularity.
        """
        _check(granularity)
        self._allow(who, meter_id, granularity)
        rows = self._readings.readings(meter_id, max(start - 900, 0), end)
        self._log(who, meter_id, f"usage by {granularity} {start}..{end}", now)
        return usage(rows, granularity)

    def recent_usage(
        self, who: Principal, meter_id: str, span: int, granularity: str, *, now: int
    ) -> list[Bucket]:
        """Usage over the ``span`` seconds up to the meter's newest reading (its own clock)."""
        _check(granularity)
        self._allow(who, meter_id, granularity)
        newest = self._readings.latest_interval(meter_id)
        if newest is None:
            return []
        end = newest + 900
        rows = self._readings.readings(meter_id, max(end - span - 900, 0), end)
        self._log(who, meter_id, f"usage by {granularity}, last {span // 3600} h", now)
        return usage(rows, granularity)

    def bills(self, who: Principal, meter_id: str, bills: Sequence[object], *, now: int) -> None:
        """Admit a read of the meter's bills (the billing contract's data) and log it.

        Call before handing ``bills`` out; nothing is logged when there are none.

        Raises:
            NotFoundError: not the caller's meter.
        """
        self.visible(who, meter_id)
        if bills:
            self._log(who, meter_id, f"{len(bills)} bill(s)", now)

    def on_demand_read(self, who: Principal, meter_id: str, *, now: int) -> None:
        """Admit an on-demand register read and log it.

        A register read an hour after another tells hourly consumption: the utility may read
        on demand once per period of the consumer's consent (one a day by default).

        Raises:
            NotFoundError: not the caller's meter.
            AccessDeniedError: a read within the consented period was made already.
        """
        self.visible(who, meter_id)
        if who.role != "consumer":
            allowed = self.consent(meter_id).granularity
            last = self._access.last(meter_id, ON_DEMAND)
            if last is not None and now - last < _PERIOD[allowed]:
                raise AccessDeniedError(
                    f"on-demand read of {meter_id}: consent is {allowed}, the last read was "
                    f"{now - last} s ago"
                )
        self._log(who, meter_id, ON_DEMAND, now)

    # ------------------------------------------------------------------ consent

    def consent_of(self, who: Principal, meter_id: str) -> ConsentView:
        """The consent of a meter the caller may see (the consumer; auditors).

        Raises:
            NotFoundError: not the caller's meter.
            AccessDeniedError: the role may not see consents.
        """
        if who.role not in CONSENT_ROLES:
            raise AccessDeniedError(f"consents are not for the {who.role} role")
        self.visible(who, meter_id)
        return self.consent(meter_id)

    def set_consent(self, who: Principal, meter_id: str, granularity: str, *, now: int) -> None:
        """The consumer records how finely the utility may see their data (audited).

        Raises:
            NotFoundError: not the caller's meter.
            AccessDeniedError: only the consumer may consent.
            InvalidValueError: unknown granularity.
        """
        _check(granularity)
        if who.role != "consumer":
            raise AccessDeniedError("only the consumer consents")
        self.visible(who, meter_id)
        self._consents.set(meter_id, granularity, by=who.actor, now=now)
        self._audit.append(
            at=now,
            actor=who.actor,
            target=meter_id,
            action="consent_changed",
            result=granularity,
        )

    def access_log(self, who: Principal, meter_id: str) -> list[tuple[int, str, str, str]]:
        """Who read the meter's data (the consumer; auditors), newest first.

        Raises:
            NotFoundError: not the caller's meter.
            AccessDeniedError: the role may not see it.
        """
        if who.role not in CONSENT_ROLES:
            raise AccessDeniedError(f"the access log is not for the {who.role} role")
        self.visible(who, meter_id)
        return self._access.recent(meter_id)

    def subject_access(self, who: Principal, meter_id: str) -> dict[str, object]:
        """Everything stored about the consumer's own meter (PRIV-4, GDPR art. 15 and 20).

        Readings (every stored interval), the consent, the consents per use and the access
        log; the API adds the bills. Only the consumer: it is their copy.

        Raises:
            NotFoundError: not the caller's meter.
            AccessDeniedError: not the consumer.
        """
        if who.role != "consumer":
            raise AccessDeniedError("a copy of all data is for the consumer")
        self.visible(who, meter_id)
        c = self.consent(meter_id)
        uses = self._uses.uses_of(meter_id) if self._uses is not None else {}
        return {
            "meter_id": meter_id,
            "readings": [
                {"interval_start": t, "import_wh": i, "export_wh": e}
                for t, i, e in self._readings.readings(meter_id, 0, 2**62)
            ],
            "consent": {"granularity": c.granularity, "given_by": c.given_by, "at": c.at},
            "sharing": {
                u: {"granularity": g, "given_by": b, "at": a} for u, (g, b, a) in uses.items()
            },
            "access_log": [
                {"at": a, "actor": b, "role": r, "what": w}
                for a, b, r, w in self._access.recent(meter_id, limit=100_000)
            ],
        }

    # ------------------------------------------------------------------ third parties

    def _use_store(self) -> UseConsents:
        if self._uses is None:
            raise NotFoundError("data sharing is not configured")
        return self._uses

    def use_consents_of(self, who: Principal, meter_id: str) -> dict[str, ConsentView]:
        """The uses a meter's consumer consented to (the consumer; auditors).

        Raises:
            NotFoundError: not the caller's meter.
            AccessDeniedError: the role may not see consents.
        """
        if who.role not in CONSENT_ROLES:
            raise AccessDeniedError(f"consents are not for the {who.role} role")
        self.visible(who, meter_id)
        return {u: ConsentView(*v) for u, v in self._use_store().uses_of(meter_id).items()}

    def set_use_consent(
        self, who: Principal, meter_id: str, use: str, granularity: str | None, *, now: int
    ) -> None:
        """The consumer consents to sharing for ``use`` at ``granularity`` (None: withdraws).

        Raises:
            NotFoundError: not the caller's meter.
            AccessDeniedError: only the consumer may consent.
            InvalidValueError: unknown use or granularity.
        """
        if use not in USES:
            raise InvalidValueError(f"use is one of {', '.join(USES)}")
        if granularity is not None:
            _check(granularity)
        if who.role != "consumer":
            raise AccessDeniedError("only the consumer consents")
        self.visible(who, meter_id)
        self._use_store().set_use_consent(meter_id, use, granularity, by=who.actor, now=now)

    def share(
        self,
        who: Principal,
        meter_ids: Sequence[str],
        use: str,
        granularity: str,
        start: int,
        end: int,
        *,
        what: str,
        now: int,
    ) -> tuple[dict[str, list[Bucket]], list[str]]:
        """Usage for a third party: (meter → buckets for those who consented, refused meters).

        A meter is refused when its consumer gave no consent to ``use`` or a coarser one
        than ``granularity``; each included meter's access log records ``what``.

        Raises:
            AccessDeniedError: the role may not share data.
            InvalidValueError: unknown use or granularity.
        """
        if who.role not in SHARING_ROLES:
            raise AccessDeniedError(f"sharing data is not for the {who.role} role")
        if use not in USES:
            raise InvalidValueError(f"use is one of {', '.join(USES)}")
        _check(granularity)
        visible = [m for m in meter_ids if self._scope.visible_meter(who, m)]
        allowed = self._use_store().use_consents(visible, use)
        data: dict[str, list[Bucket]] = {}
        refused = [m for m in meter_ids if m not in allowed]
        for mid in visible:
            if mid not in allowed:
                continue
            if finer(granularity, allowed[mid]):
                refused.append(mid)
                continue
            rows = self._readings.readings(mid, max(start - 900, 0), end)
            data[mid] = [b for b in usage(rows, granularity) if start <= b.start < end]
            self._access.record(at=now, meter_id=mid, actor=who.actor, role=who.role, what=what)
        return data, refused

    def aggregate(
        self, who: Principal, meter_ids: Sequence[str], start: int, end: int, *, what: str, now: int
    ) -> dict[str, list[Bucket]]:
        """Hourly usage of a group for a differentially private aggregate, logged per meter.

        Raises:
            AccessDeniedError: the role may not release aggregates.
        """
        if who.role not in RELEASE_ROLES:
            raise AccessDeniedError(f"releasing aggregates is not for the {who.role} role")
        out: dict[str, list[Bucket]] = {}
        for mid in meter_ids:
            if not self._scope.visible_meter(who, mid):
                continue
            rows = self._readings.readings(mid, max(start - 900, 0), end)
            out[mid] = [b for b in usage(rows, "hour") if start <= b.start < end]
            self._access.record(at=now, meter_id=mid, actor=who.actor, role=who.role, what=what)
        return out


def _check(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise InvalidValueError(f"granularity is one of {', '.join(GRANULARITIES)}")


class _StoreLike(Protocol):
    """What :func:`consumption_data` takes from the store: readings, consents, access, audit."""

    @property
    def consents(self) -> Consents:
        """Recorded consents."""

    @property
    def access(self) -> AccessLog:
        """The consumers' access log."""

    @property
    def audit(self) -> AuditLog:
        """The audit log."""

    @property
    def sharing(self) -> UseConsents:
        """Consents per use."""

    def readings(self, meter_id: str, start: int, end: int) -> list[tuple[int, int, int]]:
        """Stored readings."""

    def latest_interval(self, meter_id: str) -> int | None:
        """The newest stored interval."""


def consumption_data(store: _StoreLike, scope: Scope) -> ConsumptionData:
    """The service over a store's repositories and a scope (the accounts service)."""
    return ConsumptionData(store, store.consents, store.access, scope, store.audit, store.sharing)
