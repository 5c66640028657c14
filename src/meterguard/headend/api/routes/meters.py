"""Meters and their data: list, readings, usage, consent, access log, bills, lifecycle.

(No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.)

Every route that returns consumption data calls the one consumption-data service
(:class:`~meterguard.headend.services.usage.ConsumptionData`), which applies consent
(PRIV-1) and writes the consumer's access log (API-11); the meter lifecycle goes through
:class:`~meterguard.headend.services.meters.Meters`, as the CLI's does. "A meter this caller
may see" is one dependency (:func:`~meterguard.headend.api.deps.meter_for`).
"""

import datetime as dt
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from meterguard.errors import InvalidValueError
from meterguard.headend.api.deps import MeterAccess, Svc, audit, meter_for, refusal
from meterguard.headend.api.guard import Guard
from meterguard.headend.api.schemas import (
    MAX_ID,
    MAX_TIME,
    Access,
    AccessLog,
    BillList,
    BillRequest,
    ConsentBody,
    ConsentView,
    Granularity,
    MeterList,
    MeterRef,
    Provisioned,
    ProvisionRequest,
    Reading,
    Readings,
    Usage,
)
from meterguard.headend.services.accounts import ROLES, Principal
from meterguard.headend.services.billing import BillView
from meterguard.headend.services.meters import MOVES
from meterguard.headend.services.meters import ROLES as LIFECYCLE_ROLES
from meterguard.headend.services.usage import CONSENT_ROLES

__all__ = ["billing_router", "lifecycle_router", "router"]

router = APIRouter()
billing_router = APIRouter()
lifecycle_router = APIRouter()
anyone = Guard(ROLES)
AnyonesMeter = Annotated[MeterAccess, Depends(meter_for(anyone))]
Start = Annotated[int, Query(ge=0, le=MAX_TIME)]
End = Annotated[int, Query(ge=0, le=MAX_TIME)]


@router.get("/api/v1/meters", response_model=MeterList)
def list_meters(svc: Svc, who: Annotated[Principal, Depends(anyone)]) -> MeterList:
    """The meters the caller may see."""
    return MeterList(meters=[MeterRef(meter_id=m) for m in svc.accounts.meters(who)])


@router.get("/api/v1/meters/{meter_id}/readings", response_model=Readings)
def readings(
    request: Request, svc: Svc, m: AnyonesMeter, start: Start = 0, end: End = MAX_TIME
) -> Readings:
    """Raw 15-minute readings (utility roles: only with interval consent, PRIV-1)."""
    with refusal(request, m.who):
        rows = svc.data.readings(m.who, m.meter_id, start, end, now=svc.now())
    return Readings(
        meter_id=m.meter_id,
        readings=[Reading(interval_start=a, import_wh=b, export_wh=c) for a, b, c in rows],
    )


@router.get("/api/v1/meters/{meter_id}/usage", response_model=Usage)
def meter_usage(
    request: Request,
    svc: Svc,
    m: AnyonesMeter,
    start: Start = 0,
    end: End = MAX_TIME,
    granularity: Granularity = "day",
) -> Usage:
    """Usage by granularity (utility roles: at most as finely as consented, PRIV-1)."""
    with refusal(request, m.who):
        buckets = svc.data.usage(m.who, m.meter_id, start, end, granularity, now=svc.now())
    return Usage(meter_id=m.meter_id, granularity=granularity, buckets=buckets)


owner_or_auditor = Guard(CONSENT_ROLES)
OwnMeter = Annotated[MeterAccess, Depends(meter_for(owner_or_auditor))]


@router.get("/api/v1/meters/{meter_id}/access", response_model=AccessLog)
def access(request: Request, svc: Svc, m: OwnMeter) -> AccessLog:
    """Who other than the consumer read this meter's data, and what (API-11)."""
    with refusal(request, m.who):
        rows = svc.data.access_log(m.who, m.meter_id)
    return AccessLog(
        meter_id=m.meter_id,
        accesses=[Access(at=a, actor=b, role=r, what=w) for a, b, r, w in rows],
    )


@router.get("/api/v1/meters/{meter_id}/consent", response_model=ConsentView)
def get_consent(request: Request, svc: Svc, m: OwnMeter) -> ConsentView:
    """The consumer's recorded consent."""
    with refusal(request, m.who):
        c = svc.data.consent_of(m.who, m.meter_id)
    return ConsentView(meter_id=m.meter_id, granularity=c.granularity, given_by=c.given_by, at=c.at)


owner = Guard(frozenset({"consumer"}))


@router.put("/api/v1/meters/{meter_id}/consent", response_model=ConsentView)
def put_consent(
    request: Request,
    svc: Svc,
    body: ConsentBody,
    m: Annotated[MeterAccess, Depends(meter_for(owner))],
) -> ConsentView:
    """The consumer says how finely the utility may see their data (audited)."""
    now = svc.now()
    with refusal(request, m.who):
        svc.data.set_consent(m.who, m.meter_id, body.granularity, now=now)
    return ConsentView(
        meter_id=m.meter_id, granularity=body.granularity, given_by=m.who.actor, at=now
    )


# ---------------------------------------------------------------------- bills


@billing_router.get("/api/v1/meters/{meter_id}/bills", response_model=BillList)
def bills(request: Request, svc: Svc, m: AnyonesMeter) -> BillList:
    """The meter's signed bills and the key that verifies them (staff reads are logged)."""
    if svc.billing is None:
        raise HTTPException(404)
    out = svc.billing.bills(m.meter_id)
    with refusal(request, m.who):
        svc.data.bills(m.who, m.meter_id, out, now=svc.now())
    return BillList(
        meter_id=m.meter_id, billing_key=svc.billing.verifying_key.to_bytes().hex(), bills=out
    )


@billing_router.get("/api/v1/meters/{meter_id}/bills/{bill_id}")
def bill_file(
    bill_id: Annotated[int, Path(ge=1, le=MAX_ID)], request: Request, svc: Svc, m: AnyonesMeter
) -> JSONResponse:
    """One signed bill as a file: what ``meterguard bill verify`` checks (staff reads logged)."""
    if svc.billing is None:
        raise HTTPException(404)
    with refusal(request, m.who):
        bill = svc.billing.bill(m.meter_id, bill_id)
        svc.data.bills(m.who, m.meter_id, [bill], now=svc.now())
    day = dt.datetime.fromtimestamp(bill.period_start, dt.UTC).strftime("%Y-%m-%d")
    return JSONResponse(
        {"document": bill.document, "signature": bill.signature},
        headers={"Content-Disposition": f'attachment; filename="bill-{m.meter_id}-{day}.json"'},
    )


issuers = Guard(frozenset({"operator", "engineer"}))


@billing_router.post("/api/v1/meters/{meter_id}/bills", response_model=BillView, status_code=201)
def issue_bill(
    request: Request,
    svc: Svc,
    body: BillRequest,
    m: Annotated[MeterAccess, Depends(meter_for(issuers))],
) -> BillView:
    """Issue and sign the bill of a period from stored, verified readings (audited)."""
    if svc.billing is None:
        raise HTTPException(404)
    now = svc.now()
    try:
        b = svc.billing.issue(m.meter_id, body.start, body.end, now=now)
    except InvalidValueError:
        raise HTTPException(409) from None
    with refusal(request, m.who):
        svc.data.bills(m.who, m.meter_id, [b], now=now)
    audit(
        svc,
        m.who.actor,
        m.meter_id,
        "bill_issued",
        "signed",
        f"period {body.start}..{body.end} total_e4 {b.document['total_e4']}",
    )
    return b


# ---------------------------------------------------------------------- lifecycle


@lifecycle_router.post("/api/v1/meters", response_model=Provisioned, status_code=201)
def provision_meter(
    request: Request,
    svc: Svc,
    body: ProvisionRequest,
    who: Annotated[Principal, Depends(Guard(LIFECYCLE_ROLES["provision"]))],
) -> Provisioned:
    """Register a new meter by serial: PKI record, DLMS keys, database, ingest (audited)."""
    if svc.meters is None:
        raise HTTPException(404)
    with refusal(request, who):
        mid = svc.meters.provision(who.actor, who.role, body.serial, now=svc.now())
    return Provisioned(meter_id=mid)


def _move(action: str) -> Callable[..., None]:
    def move(
        request: Request,
        svc: Svc,
        m: Annotated[MeterAccess, Depends(meter_for(Guard(LIFECYCLE_ROLES[action])))],
    ) -> None:
        if svc.meters is None:
            raise HTTPException(404)
        with refusal(request, m.who):
            svc.meters.move(m.who.actor, m.who.role, m.meter_id, action, now=svc.now())

    move.__name__ = f"{action}_meter"
    move.__doc__ = f"{action.capitalize()} a meter (PKI-5: running ingest and broker follow)."
    return move


for _action in MOVES:
    lifecycle_router.add_api_route(
        f"/api/v1/meters/{{meter_id}}/{_action}",
        _move(_action),
        methods=["POST"],
        status_code=204,
    )
