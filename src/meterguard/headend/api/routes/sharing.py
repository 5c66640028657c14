"""Sharing data with third parties: consents per use, recipients, exports, DP releases (PRIV-2).

(No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.)

Whose data may leave, how finely and at what privacy cost are the services' rules
(:mod:`meterguard.headend.services.usage` and :mod:`meterguard.headend.services.sharing`);
the Guards here only keep other roles from reaching them, and the services check again.
"""

import dataclasses
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import FileResponse, JSONResponse

from meterguard.headend.api.deps import MeterAccess, Svc, meter_for, refusal
from meterguard.headend.api.guard import Guard
from meterguard.headend.api.schemas import (
    MAX_ID,
    ErasureRequest,
    ExportBody,
    RecipientRequest,
    ReleaseBody,
    UseConsentBody,
    UseConsentList,
    UseConsentView,
)
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.retention import ERASURE_ROLES, Retention
from meterguard.headend.services.sharing import DataSharing, ExportRequest
from meterguard.headend.services.usage import CONSENT_ROLES, RELEASE_ROLES, SHARING_ROLES

__all__ = ["consent_router", "erasure_router", "router"]

consent_router = APIRouter()
router = APIRouter()
erasure_router = APIRouter()
erasers = Guard(ERASURE_ROLES)
owner_or_auditor = Guard(CONSENT_ROLES)
owner = Guard(frozenset({"consumer"}))
officers = Guard(SHARING_ROLES)
releasers = Guard(RELEASE_ROLES)
ExportId = Annotated[int, Path(ge=1, le=MAX_ID)]
FileName = Annotated[str, Path(pattern=r"^(data\.csv|data\.parquet|manifest\.json|manifest\.sig)$")]


def _sharing(svc: Svc) -> DataSharing:
    if svc.sharing is None:
        raise HTTPException(404)
    return svc.sharing


def _consents(svc: Svc, who: Principal, meter_id: str) -> UseConsentList:
    views = svc.data.use_consents_of(who, meter_id)
    return UseConsentList(
        meter_id=meter_id,
        consents=[
            UseConsentView(use=u, granularity=c.granularity, given_by=c.given_by, at=c.at)
            for u, c in views.items()
        ],
    )


@consent_router.get("/api/v1/meters/{meter_id}/sharing", response_model=UseConsentList)
def get_use_consents(
    request: Request, svc: Svc, m: Annotated[MeterAccess, Depends(meter_for(owner_or_auditor))]
) -> UseConsentList:
    """The uses the consumer consented to share their data for, and how finely."""
    with refusal(request, m.who):
        return _consents(svc, m.who, m.meter_id)


@consent_router.put("/api/v1/meters/{meter_id}/sharing", response_model=UseConsentList)
def put_use_consent(
    request: Request,
    svc: Svc,
    body: UseConsentBody,
    m: Annotated[MeterAccess, Depends(meter_for(owner))],
) -> UseConsentList:
    """The consumer consents to (or withdraws from) sharing for one use (audited)."""
    with refusal(request, m.who):
        svc.data.set_use_consent(m.who, m.meter_id, body.use, body.granularity, now=svc.now())
        return _consents(svc, m.who, m.meter_id)


@consent_router.get("/api/v1/meters/{meter_id}/my-data")
def my_data(
    request: Request, svc: Svc, m: Annotated[MeterAccess, Depends(meter_for(owner))]
) -> JSONResponse:
    """Everything stored about the consumer's meter, as a file: readings, bills, logs, consents."""
    with refusal(request, m.who):
        body = svc.data.subject_access(m.who, m.meter_id)
    if svc.billing is not None:
        body["bills"] = [dataclasses.asdict(b) for b in svc.billing.bills(m.meter_id)]
        body["billing_key"] = svc.billing.verifying_key.to_bytes().hex()
    name = f"meterguard-{m.meter_id}-my-data.json"
    return JSONResponse(body, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _retention(svc: Svc) -> Retention:
    if svc.retention is None:
        raise HTTPException(404)
    return svc.retention


@erasure_router.post("/api/v1/privacy/erasures")
def erase(
    request: Request, body: ErasureRequest, svc: Svc, who: Annotated[Principal, Depends(erasers)]
) -> dict[str, Any]:
    """Forget a consumer: their meters' data keys destroyed, the account anonymised (audited)."""
    with refusal(request, who):
        meters = _retention(svc).erase_consumer(who, body.username, now=svc.now())
    return {"erased": body.username, "meters": meters, "bills": "kept (signed totals)"}


@erasure_router.post("/api/v1/privacy/retention")
def retention(
    request: Request, svc: Svc, who: Annotated[Principal, Depends(erasers)]
) -> dict[str, Any]:
    """Apply the retention limits now; rows deleted per data class."""
    with refusal(request, who):
        return {"deleted": _retention(svc).run(who, now=svc.now())}


@router.get("/api/v1/sharing/recipients")
def recipients(
    request: Request, svc: Svc, who: Annotated[Principal, Depends(officers)]
) -> dict[str, Any]:
    """Every recipient."""
    with refusal(request, who):
        rows = _sharing(svc).recipients(who)
    return {"recipients": [dataclasses.asdict(r) for r in rows]}


@router.post("/api/v1/sharing/recipients", status_code=201)
def add_recipient(
    request: Request,
    body: RecipientRequest,
    svc: Svc,
    who: Annotated[Principal, Depends(officers)],
) -> dict[str, int]:
    """A new recipient for one use (audited)."""
    with refusal(request, who):
        rid = _sharing(svc).add_recipient(who, body.name, body.use, now=svc.now())
    return {"recipient": rid}


@router.get("/api/v1/sharing/exports")
def exports(
    request: Request, svc: Svc, who: Annotated[Principal, Depends(officers)]
) -> dict[str, Any]:
    """Exports, newest first (the directory path is the head-end's, not shown)."""
    with refusal(request, who):
        rows = _sharing(svc).exports(who)
    return {
        "exports": [{k: v for k, v in dataclasses.asdict(e).items() if k != "path"} for e in rows]
    }


@router.post("/api/v1/sharing/exports", status_code=201)
def create_export(
    request: Request, body: ExportBody, svc: Svc, who: Annotated[Principal, Depends(officers)]
) -> dict[str, Any]:
    """Generate a signed, pseudonymised export (each included consumer's access log says so)."""
    req = ExportRequest(
        body.recipient_id, body.start, body.end, body.granularity, body.rotation,
        tuple(body.fields), body.k, None if body.meters is None else tuple(body.meters),
    )  # fmt: skip
    with refusal(request, who):
        view = _sharing(svc).create_export(who, req, now=svc.now())
    return {
        "export": view.id,
        "included": view.included,
        "refused": view.refused,
        "files": ["data.csv", "data.parquet", "manifest.json", "manifest.sig"],
    }


@router.get("/api/v1/sharing/exports/{export_id}/{name}")
def export_file(
    request: Request,
    export_id: ExportId,
    name: FileName,
    svc: Svc,
    who: Annotated[Principal, Depends(officers)],
) -> FileResponse:
    """One file of an export, for delivery to its recipient."""
    with refusal(request, who):
        path = _sharing(svc).export_file(who, export_id, name)
    if not path.is_file():
        raise HTTPException(404)
    return FileResponse(path, filename=f"export-{export_id}-{name}")


@router.get("/api/v1/sharing/releases")
def releases(
    request: Request, svc: Svc, who: Annotated[Principal, Depends(releasers)]
) -> dict[str, Any]:
    """DP releases, newest first."""
    with refusal(request, who):
        rows = _sharing(svc).releases(who)
    return {"releases": [{**dataclasses.asdict(r), "curve": json.loads(r.curve)} for r in rows]}


@router.post("/api/v1/sharing/releases", status_code=201)
def release(
    request: Request, body: ReleaseBody, svc: Svc, who: Annotated[Principal, Depends(releasers)]
) -> dict[str, Any]:
    """A DP aggregate curve (a repeat returns the stored one; beyond the budget: 409)."""
    with refusal(request, who):
        r = _sharing(svc).release(who, body.scope, body.day, body.epsilon, now=svc.now())
    return {**dataclasses.asdict(r), "curve": json.loads(r.curve)}
