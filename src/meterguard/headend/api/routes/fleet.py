"""Fleet, alarms, security events and accounts: what utility roles and administrators see.

(No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.)

Alarms stay latched until an authorised role clears them (TAMP-2): operators acknowledge,
engineers and security administrators clear. Account administration is the security
administrator's (auditors may read the list).
"""

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from meterguard.errors import InvalidValueError, NotFoundError
from meterguard.headend.api.deps import Svc, audit, refusal
from meterguard.headend.api.guard import Explained, Guard
from meterguard.headend.api.schemas import (
    MAX_ID,
    AlarmList,
    CertificateView,
    CreatedUser,
    FleetCounts,
    FleetMeter,
    FleetMeters,
    KeyView,
    MeterPageView,
    NewUser,
    SecurityEvents,
    UserList,
    UserView,
)
from meterguard.headend.services.accounts import ACCOUNT_READERS, ROLES, UTILITY_ROLES, Principal
from meterguard.headend.services.alarms import ACK_ROLES, CLEAR_ROLES, SEVERITIES, SHOW
from meterguard.headend.services.fleet import STATES, SUPPLY, Search
from meterguard.headend.services.redteam import REPORT_READERS
from meterguard.headend.store.fleet import SORTS, FleetRow

__all__ = ["ACK_ROLES", "CLEAR_ROLES", "router"]

router = APIRouter()
anyone, utility = Guard(ROLES), Guard(UTILITY_ROLES)
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


def _one_of(values: Iterable[str], *, empty: bool = False) -> str:
    """A query parameter's pattern from the service's own list (documented, checked first)."""
    return "^(" + "|".join(re.escape(v) for v in values) + ")" + ("?" if empty else "") + "$"


@router.get("/api/v1/alarms", response_model=AlarmList)
def alarms(
    svc: Svc,
    who: Annotated[Principal, Depends(anyone)],
    show: Annotated[str, Query(pattern=_one_of(SHOW))] = "all",
    severity: Annotated[str, Query(pattern=_one_of(SEVERITIES, empty=True))] = "",
) -> AlarmList:
    """Alarms the caller may see (consumers: their meters'), newest first (at most 500)."""
    try:
        found = svc.alarms.list(who, show=show, severity=severity)
    except InvalidValueError as exc:
        raise Explained(422, detail=str(exc)) from None
    return AlarmList(alarms=[a for a, _ in found])


def _alarm_move(guard: Guard, from_states: tuple[str, ...], to: str) -> Callable[..., None]:
    def move(alarm_id: Id, svc: Svc, who: Annotated[Principal, Depends(guard)]) -> None:
        moved = svc.store.move_alarm(
            alarm_id, from_states=from_states, to=to, actor=who.actor, now=svc.now()
        )
        if moved is None:
            raise HTTPException(404)

    return move


for _action, _allowed, _from, _to in (
    ("acknowledge", ACK_ROLES, ("open",), "acknowledged"),
    ("clear", CLEAR_ROLES, ("open", "acknowledged"), "cleared"),
):
    router.add_api_route(
        f"/api/v1/alarms/{{alarm_id}}/{_action}",
        _alarm_move(Guard(_allowed), _from, _to),
        methods=["POST"],
        status_code=204,
    )


@router.get("/api/v1/fleet", response_model=FleetCounts)
def fleet(svc: Svc, _who: Annotated[Principal, Depends(utility)]) -> FleetCounts:
    """Fleet totals."""
    return FleetCounts(**svc.store.counts())


SUPPLY_NAMES = {v: k for k, v in SUPPLY.items()}


def _meter_view(r: FleetRow) -> FleetMeter:
    return FleetMeter(
        meter_id=r.meter_id,
        state=r.state,
        last_reading_at=r.last_reading_at,
        open_alarms=r.open_alarms,
        supply=SUPPLY_NAMES.get(r.supply, "connected"),  # type: ignore[arg-type]
        feeder=r.feeder,
        firmware=r.firmware,
        attestation=r.attestation,
    )


@router.get("/api/v1/fleet/meters", response_model=FleetMeters)
def fleet_meters(
    svc: Svc,
    who: Annotated[Principal, Depends(utility)],
    q: Annotated[str, Query(pattern=r"^[A-Za-z0-9]{0,32}$")] = "",
    state: Annotated[str, Query(pattern=_one_of(STATES, empty=True))] = "",
    alarms: Annotated[str, Query(pattern=_one_of(("open", "none"), empty=True))] = "",
    supply: Annotated[str, Query(pattern=_one_of(SUPPLY, empty=True))] = "",
    feeder: Annotated[str, Query(max_length=64)] = "",
    firmware: Annotated[str, Query(max_length=64)] = "",
    silent_hours: Annotated[int, Query(ge=0, le=24 * 366)] = 0,
    sort: Annotated[str, Query(pattern=_one_of(SORTS))] = "id",
    order: Annotated[str, Query(pattern=_one_of(("asc", "desc")))] = "asc",
    page: Annotated[int, Query(ge=1, le=10_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 50,
) -> FleetMeters:
    """Search, filter, sort and page the fleet (server-side: 10^5 meters and more)."""
    search = Search(q, state, alarms, supply, feeder, firmware, silent_hours, sort, order,
                    page, per_page)  # fmt: skip
    try:
        found = svc.fleet.page(who, search)
    except InvalidValueError as exc:
        raise Explained(422, detail=str(exc)) from None
    return FleetMeters(
        total=found.total,
        page=page,
        per_page=per_page,
        meters=[_meter_view(r) for r in found.rows],
    )


@router.get("/api/v1/fleet/meters/{meter_id}", response_model=MeterPageView)
def fleet_meter(
    meter_id: Annotated[str, Path(max_length=32)],
    svc: Svc,
    who: Annotated[Principal, Depends(utility)],
) -> MeterPageView:
    """One meter: identity, keys' versions and states (no material), certificates, records."""
    try:
        m = svc.fleet.meter(who, meter_id)
    except NotFoundError:
        raise HTTPException(404) from None
    d = m.detail
    return MeterPageView(
        meter=_meter_view(d.row),
        serial=d.serial,
        created_at=d.created_at,
        firmware_slot=d.firmware_slot,
        firmware_counter=d.firmware_counter,
        firmware_reported_at=d.firmware_reported_at,
        keys=[KeyView(kind=k, version=v, state=st) for k, v, st in m.keys],
        certificates=[CertificateView(**c) for c in m.certificates],
        alarms=d.alarms,
        security_events=d.events,
    )


security_readers = Guard(frozenset({"operator", "engineer", "security_admin", "auditor"}))


@router.get("/api/v1/security-events", response_model=SecurityEvents)
def security_events(
    svc: Svc, _who: Annotated[Principal, Depends(security_readers)]
) -> SecurityEvents:
    """Newest first."""
    return SecurityEvents(events=svc.store.security_event_rows())


report_readers = Guard(REPORT_READERS)


@router.get("/api/v1/security/attack-report")
def attack_report(svc: Svc, _who: Annotated[Principal, Depends(report_readers)]) -> dict[str, Any]:
    """The last `meterguard attack` run's report (404 when none has run)."""
    if svc.attacks is None:
        raise HTTPException(404)
    try:
        doc = svc.attacks.last()
    except InvalidValueError:
        raise HTTPException(409) from None
    if doc is None:
        raise HTTPException(404)
    return doc


admins = Guard(frozenset({"security_admin"}))
user_readers = Guard(ACCOUNT_READERS)


@router.get("/api/v1/users", response_model=UserList)
def users(svc: Svc, _who: Annotated[Principal, Depends(user_readers)]) -> UserList:
    """Every account (never a hash or a secret), with its recent second-factor failures."""
    return UserList(
        users=[
            UserView(
                id=a.user_id,
                username=a.username,
                role=a.role,
                disabled=a.disabled,
                mfa_failures=a.mfa_failures,
                mfa_last_failure=a.mfa_last_failure,
                mfa_locked_until=a.mfa_locked_until,
            )
            for a in svc.accounts.accounts(now=svc.now())
        ]
    )


@router.post("/api/v1/users", response_model=CreatedUser, status_code=201)
def create_user(body: NewUser, svc: Svc, who: Annotated[Principal, Depends(admins)]) -> CreatedUser:
    """Create an account; a utility role's TOTP enrolment URI is shown this once."""
    try:  # the service decides: password, a name taken, meters only for consumers
        uid, totp = svc.accounts.create_user(
            body.username, body.password, body.role, now=svc.now(), meters=tuple(body.meters)
        )
    except InvalidValueError:
        raise HTTPException(422) from None
    audit(
        svc,
        who.actor,
        f"user:{uid}",
        "user_created",
        body.role,
        f"meters {','.join(body.meters)}",
    )
    return CreatedUser(
        id=uid, totp_uri=None if totp is None else totp.provisioning_uri(body.username)
    )


def _set_disabled(disabled: bool) -> Callable[..., None]:
    def change(
        user_id: Id, request: Request, svc: Svc, who: Annotated[Principal, Depends(admins)]
    ) -> None:
        with refusal(request, who):  # not found 404; oneself 409 (the service's rules)
            svc.accounts.set_disabled(user_id, disabled=disabled, by=who)
        audit(
            svc,
            who.actor,
            f"user:{user_id}",
            "user_disabled" if disabled else "user_enabled",
            "done",
            "sessions ended" if disabled else "",
        )

    change.__name__ = "disable_user" if disabled else "enable_user"
    return change


@router.post("/api/v1/users/{user_id}/unlock", status_code=204)
def unlock_user(
    user_id: Id, request: Request, svc: Svc, who: Annotated[Principal, Depends(admins)]
) -> None:
    """Lift the account's second-factor lock (someone guessed its codes); audited."""
    with refusal(request, who):  # not found 404; oneself 409 (the service's rules)
        svc.accounts.unlock_second_factor(user_id, by=who)
    audit(svc, who.actor, f"user:{user_id}", "user_mfa_unlocked", "done")


for _verb, _flag in (("disable", True), ("enable", False)):
    router.add_api_route(
        f"/api/v1/users/{{user_id}}/{_verb}",
        _set_disabled(_flag),
        methods=["POST"],
        status_code=204,
    )
