"""The fleet view's rules: who sees the fleet, which questions it answers, one meter's page.

:class:`FleetView` turns a caller's search (text, filters, sort, page) into a validated
:class:`~meterguard.headend.store.fleet.FleetQuery` — bounded page size and depth, known
sort keys and filter values, a search of meter-id characters only — and answers it from the
store; the API and the dashboard both call it, so the rules live here once. A meter's page
adds what the key store and the PKI know of it: which keys exist in which version and state
(never their material), its certificates with expiry and status.

Only utility roles see the fleet; a consumer has no fleet (their own meters are on their
page). It holds no SQL (:mod:`meterguard.headend.store.fleet` does) and no web framework.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meterguard.errors import AccessDeniedError, InvalidValueError, NotFoundError
from meterguard.headend.services.accounts import UTILITY_ROLES, Principal
from meterguard.headend.store.fleet import SORTS, FleetPage, FleetQuery, MeterDetail
from meterguard.identity import is_meter_id

if TYPE_CHECKING:
    from meterguard.headend.store.repository import Store

__all__ = [
    "FLEET_ROLES",
    "STATES",
    "SUPPLY",
    "SUPPLY_LABELS",
    "FleetView",
    "MeterPage",
    "Search",
]

FLEET_ROLES = UTILITY_ROLES
STATES = ("active", "disabled", "quarantined", "revoked", "decommissioned")
SUPPLY = {"disconnected": 0, "connected": 1, "ready": 2}
"""Supply (disconnect control) states by name."""
SUPPLY_LABELS = {0: "disconnected", 1: "connected", 2: "ready to reconnect"}
"""How a page names each supply state."""
MAX_PER_PAGE = 200
SIMULATED_AFTER = 300
"""Seconds between the meters' clock and the wall clock beyond which time is simulated."""
MAX_OFFSET = 10_000_000
_SEARCH = re.compile(r"^[A-Za-z0-9]{0,32}$")
_NAME = re.compile(r"^[A-Za-z0-9 ._+-]{0,64}$")


@dataclass(frozen=True, slots=True)
class Search:
    """A caller's question, as the API or the dashboard received it (all optional)."""

    q: str = ""
    state: str = ""
    alarms: str = ""
    supply: str = ""
    feeder: str = ""
    firmware: str = ""
    silent_hours: int = 0
    """Only meters without a reading for this many hours (0: any)."""
    sort: str = "id"
    order: str = "asc"
    page: int = 1
    per_page: int = 50


@dataclass(frozen=True, slots=True)
class MeterPage:
    """What a meter's page shows (no key material anywhere)."""

    detail: MeterDetail
    keys: list[tuple[str, int, str]]
    """(kind, version, state) from the key store."""
    certificates: list[dict[str, str]]
    """number, kind, not_after, status."""


class FleetView:
    """The fleet list and the meter page, for utility roles."""

    def __init__(
        self,
        store: Store,
        *,
        keys: Callable[[str], list[tuple[str, int, str]]] | None = None,
        certificates: Callable[[str], list[dict[str, str]]] | None = None,
        meter_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._keys = keys
        self._certificates = certificates
        self.meter_clock = meter_clock
        """What the meters' clocks read (simulated in a demo): "silent for N hours" and
        the ages on the pages are measured against it, not the server's clock."""

    def __repr__(self) -> str:
        return "FleetView()"

    @property
    def simulated(self) -> bool:
        """Whether the meters' clock is not the wall clock (a demo's accelerated time)."""
        return abs(self.meter_clock() - time.time()) > SIMULATED_AFTER

    @staticmethod
    def may(who: Principal) -> bool:
        """Whether ``who`` sees the fleet."""
        return who.role in FLEET_ROLES

    def query(self, s: Search, *, now: int | None = None) -> FleetQuery:
        """``s`` validated into a store query.

        Raises:
            InvalidValueError: a value outside what the list answers (the message says which).
        """
        if not _SEARCH.match(s.q):
            raise InvalidValueError("search with the letters and digits of a meter id")
        if s.state and s.state not in STATES:
            raise InvalidValueError(f"state is one of {', '.join(STATES)}")
        if s.alarms not in ("", "open", "none"):
            raise InvalidValueError("alarms is open or none")
        if s.supply and s.supply not in SUPPLY:
            raise InvalidValueError(f"supply is one of {', '.join(SUPPLY)}")
        if not (_NAME.match(s.feeder) and _NAME.match(s.firmware)):
            raise InvalidValueError("a feeder or firmware version of plain characters")
        if not 0 <= s.silent_hours <= 24 * 366:
            raise InvalidValueError("silent hours are 0 to a year")
        if s.sort not in SORTS or s.order not in ("asc", "desc"):
            raise InvalidValueError(f"sort by {', '.join(SORTS)}, asc or desc")
        if not 1 <= s.per_page <= MAX_PER_PAGE:
            raise InvalidValueError(f"1 to {MAX_PER_PAGE} meters a page")
        offset = (s.page - 1) * s.per_page
        if s.page < 1 or offset > MAX_OFFSET:
            raise InvalidValueError("no such page")
        now = int(self.meter_clock()) if now is None else now
        return FleetQuery(
            q=s.q,
            state=s.state,
            alarms=s.alarms,
            supply=SUPPLY[s.supply] if s.supply else None,
            feeder=s.feeder,
            firmware=s.firmware,
            silent_since=now - s.silent_hours * 3600 if s.silent_hours else None,
            sort=s.sort,
            descending=s.order == "desc",
            offset=offset,
            limit=s.per_page,
        )

    def page(self, who: Principal, s: Search, *, now: int | None = None) -> FleetPage:
        """One page of the fleet as ``s`` asks.

        Raises:
            AccessDeniedError: not a utility role.
            InvalidValueError: see :meth:`query`.
        """
        if not self.may(who):
            raise AccessDeniedError("the fleet is for utility roles")
        return self._store.fleet_page(self.query(s, now=now))

    def facets(self, who: Principal) -> tuple[list[str], list[str]]:
        """Feeder names and firmware versions to filter by.

        Raises:
            AccessDeniedError: not a utility role.
        """
        if not self.may(who):
            raise AccessDeniedError("the fleet is for utility roles")
        return self._store.fleet_facets()

    def meter(self, who: Principal, meter_id: str) -> MeterPage:
        """``meter_id``'s page.

        Raises:
            AccessDeniedError: not a utility role.
            NotFoundError: no such meter.
        """
        if not self.may(who):
            raise AccessDeniedError("the fleet is for utility roles")
        if not is_meter_id(meter_id):
            raise NotFoundError("no such meter")
        detail = self._store.meter_detail(meter_id)
        if detail is None:
            raise NotFoundError("no such meter")
        keys = self._keys(meter_id) if self._keys is not None else []
        certs = self._certificates(detail.serial) if self._certificates is not None else []
        return MeterPage(detail, keys, certs)
