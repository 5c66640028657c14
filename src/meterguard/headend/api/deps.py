"""What routes depend on: the services, the caller, the meter they may see, the audit helper.

(No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.)

* :class:`Services` — every service the routes call, built once by
  :func:`~meterguard.headend.api.app.create_app` and kept on ``app.state``;
* :func:`meter_for` — one dependency for "a meter this caller may see" (API-1: otherwise
  404, exactly like a meter that does not exist), composed with a :class:`Guard`, so no
  route repeats the check;
* :func:`audit` — LOG-1 entries from the web; :func:`refusal` maps the services' typed
  errors to the API's generic answers.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from meterguard.clock import Clock, SystemClock
from meterguard.errors import (
    AccessDeniedError,
    BudgetExceededError,
    ConflictError,
    InvalidValueError,
    NotFoundError,
)
from meterguard.headend.api.guard import Explained, Guard, denied
from meterguard.headend.metrics import Metrics
from meterguard.headend.services.accounts import Accounts, Principal
from meterguard.headend.services.alarms import Alarms
from meterguard.headend.services.billing import Billing
from meterguard.headend.services.commands import Commands
from meterguard.headend.services.firmware import FirmwareUpdates
from meterguard.headend.services.fleet import FleetView
from meterguard.headend.services.meters import Meters
from meterguard.headend.services.redteam import AttackReports
from meterguard.headend.services.retention import Retention
from meterguard.headend.services.sharing import DataSharing
from meterguard.headend.services.theft import RevenueProtection
from meterguard.headend.services.usage import ConsumptionData
from meterguard.headend.services.webauthn import Passkeys
from meterguard.headend.store.repository import Store

__all__ = ["MeterAccess", "Services", "audit", "meter_for", "peer", "refusal", "services"]


@dataclass(frozen=True)
class Services:
    """The services behind the API (optional ones add their routes when present)."""

    accounts: Accounts
    store: Store
    data: ConsumptionData
    commands: Commands | None = None
    billing: Billing | None = None
    meters: Meters | None = None
    passkeys: Passkeys | None = None
    firmware: FirmwareUpdates | None = None
    theft: RevenueProtection | None = None
    sharing: DataSharing | None = None
    retention: Retention | None = None
    attacks: AttackReports | None = None
    """The last red-team run (``meterguard attack``), for security administrators."""
    alarms: Alarms = field(init=False)
    """Which alarms a caller sees (over the store and the accounts)."""
    metrics: Metrics | None = None
    """This process's metrics (the dashboard's live charts sample them)."""
    fleet_view: FleetView | None = None
    """The fleet list and meter pages (a default over the store when not given)."""
    clock: Clock = field(default_factory=SystemClock)
    """Head-end time: every timestamp the API writes or checks (sessions, audit, access log)."""

    def __post_init__(self) -> None:
        if self.fleet_view is None:
            object.__setattr__(self, "fleet_view", FleetView(self.store))
        object.__setattr__(self, "alarms", Alarms(self.store, self.accounts))

    @property
    def fleet(self) -> FleetView:
        """The fleet list and meter pages."""
        view = self.fleet_view
        assert view is not None  # noqa: S101 - set in __post_init__
        return view

    def now(self) -> int:
        """The head-end's time now, in whole Unix seconds."""
        return int(self.clock.now().timestamp())


def services(request: Request) -> Services:
    """The app's services."""
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]


@dataclass(frozen=True, slots=True)
class MeterAccess:
    """A meter the caller may see, and the caller."""

    who: Principal
    meter_id: str


MeterId = Annotated[str, Path(min_length=1, max_length=32)]


def meter_for(guard: Guard) -> Callable[..., MeterAccess]:
    """A dependency: the caller (through ``guard``) and a ``{meter_id}`` they may see (API-1)."""

    def dependency(
        meter_id: MeterId, request: Request, who: Annotated[Principal, Depends(guard)]
    ) -> MeterAccess:
        if not services(request).accounts.visible_meter(who, meter_id):
            # Another consumer's meter looks like no meter, and the attempt is audited (LOG-1):
            # a consumer walking meter ids is an attack (bounded by the per-user API limit).
            denied(request, who, "meter not visible to the caller")
            raise HTTPException(404)
        return MeterAccess(who, meter_id)

    return dependency


def audit(
    svc: Services, actor: str, target: str, action: str, result: str, detail: str = ""
) -> None:
    """LOG-1: a security-relevant action to the tamper-evident audit log."""
    svc.store.audit.append(
        at=svc.now(),
        actor=actor[:64],
        target=target[:128],
        action=action,
        result=result,
        detail=detail,
    )


def peer(request: Request) -> str:
    """The client's address as the server saw it."""
    return request.client.host if request.client else "?"


@contextmanager
def refusal(request: Request, who: Principal) -> Iterator[None]:
    """Map a service's typed refusal to the API's generic answer; audit denials (LOG-1)."""
    try:
        yield
    except NotFoundError:
        raise HTTPException(404) from None
    except AccessDeniedError as exc:
        denied(request, who, str(exc))
        raise HTTPException(403) from None
    except ConflictError:
        raise HTTPException(409) from None
    except InvalidValueError:
        raise HTTPException(422) from None
    except BudgetExceededError:
        raise Explained(409, detail="the privacy budget of these consumers' day is spent") from None
