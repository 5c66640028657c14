"""Retention limits and erasure (PRIV-4): what is kept how long, and forgetting a consumer.

Every rule of retention and erasure lives here, and every entry point (the scheduled job in
the head-end, the CLI, the API) reaches it through :class:`Retention`:

* **limits per data class** (:class:`Limits`): interval readings two years, the consumers'
  access log two years, bills ten years, the DP ledger as long as the readings it guards;
  :meth:`Retention.apply` deletes what is older. The audit log is not deleted: it is
  append-only and hash-chained (LOG-2); its retention is its archive's;
* **erasure** (:meth:`Retention.erase_consumer`, a privacy officer on a consumer's
  request): the meters' data keys are destroyed in the key store (crypto-shredding), so
  their readings — sealed at rest — are unreadable in the database file from then on, by
  anyone; the consumer's name key is destroyed the same way (names are sealed at rest and
  records name consumers only by pseudonym, so no name is left anywhere); the account row is
  anonymised and its sessions, meter links and consents removed;
  bills stay and still verify (signed documents of totals, the billing contract's record);
  new readings of the meter are sealed under a new data key (a new occupant's).

No SQL here (:mod:`meterguard.headend.store.retention`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from meterguard.crypto.vault import user_subject
from meterguard.errors import AccessDeniedError, InvalidValueError, NotFoundError
from meterguard.headend.services.accounts import Principal
from meterguard.headend.store.retention import RetentionStore

__all__ = ["ERASURE_ROLES", "Limits", "Retention"]

DAY = 86400
ERASURE_ROLES = frozenset({"privacy_officer"})
"""Who handles erasure requests and runs retention by hand."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Days each data class is kept."""

    interval_days: int = 730
    access_log_days: int = 730
    bills_days: int = 3650

    def __post_init__(self) -> None:
        if not 1 <= self.interval_days <= self.bills_days <= 36500:
            raise InvalidValueError("keep interval data 1 day to as long as bills (≤ 100 years)")
        if not 1 <= self.access_log_days <= 36500:
            raise InvalidValueError("keep the access log 1 day to 100 years")

    def cutoffs(self, now: int) -> dict[str, int]:
        """Data class → the oldest time kept."""
        return {
            "interval": now - self.interval_days * DAY,
            "access_log": now - self.access_log_days * DAY,
            "bills": now - self.bills_days * DAY,
            "dp_ledger": now - self.interval_days * DAY,
        }


class Retention:
    """Retention limits and crypto-shredding erasure."""

    def __init__(
        self,
        store: RetentionStore,
        shred: Callable[[str, int], int],
        lookup: Callable[[str], bytes],
        limits: Limits | None = None,
    ) -> None:
        self._store, self._shred, self._lookup = store, shred, lookup
        self.limits = limits or Limits()

    def __repr__(self) -> str:
        return f"Retention({self.limits})"

    def apply(self, *, actor: str = "system:retention", now: int) -> dict[str, int]:
        """Delete what is older than its limit (the scheduled job); rows deleted per class."""
        return self._store.purge(self.limits.cutoffs(now), actor=actor, now=now)

    def run(self, who: Principal, *, now: int) -> dict[str, int]:
        """:meth:`apply` by hand (a privacy officer).

        Raises:
            AccessDeniedError: not a privacy officer.
        """
        if who.role not in ERASURE_ROLES:
            raise AccessDeniedError(f"retention is not for the {who.role} role")
        return self.apply(actor=who.actor, now=now)

    def erase_consumer(self, who: Principal, username: str, *, now: int) -> list[str]:
        """Forget a consumer: shred their meters' data keys, anonymise the account; the meters.

        Raises:
            AccessDeniedError: not a privacy officer.
            NotFoundError: no such consumer.
        """
        if who.role not in ERASURE_ROLES:
            raise AccessDeniedError(f"erasure is not for the {who.role} role")
        found = self._store.consumer(self._lookup(username))
        if found is None:
            raise NotFoundError("no such consumer")
        uid, meters = found
        shredded = sum(self._shred(m, now) for m in [*meters, user_subject(uid)])
        self._store.erase_consumer(uid, meters, actor=who.actor, shredded=shredded, now=now)
        return meters
