"""The grid and revenue protection: topology, suspects with evidence, cases (THEFT-1).

(No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.)

Who may see suspicion, what a case's steps are and how a score is made are the
revenue-protection service's rules (:mod:`meterguard.headend.services.theft`); the Guards
here only keep other roles from reaching the service, which checks again.
"""

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path

from meterguard.errors import AccessDeniedError, ConflictError, InvalidValueError, NotFoundError
from meterguard.headend.api.deps import Svc
from meterguard.headend.api.guard import Guard
from meterguard.headend.api.schemas import MAX_ID, CaseAssign, CaseClose, CaseRequest
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.theft import GRID_ROLES, INVESTIGATOR_ROLES, RevenueProtection

__all__ = ["router"]

router = APIRouter()
grid_readers = Guard(GRID_ROLES)
investigators = Guard(INVESTIGATOR_ROLES)


def _theft(svc: Svc) -> RevenueProtection:
    if svc.theft is None:
        raise HTTPException(404)
    return svc.theft


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except AccessDeniedError:
        raise HTTPException(403) from None
    except NotFoundError:
        raise HTTPException(404) from None
    except ConflictError:
        raise HTTPException(409) from None
    except InvalidValueError:
        raise HTTPException(422) from None


@router.get("/api/v1/grid/feeders")
def feeders(svc: Svc, who: Annotated[Principal, Depends(grid_readers)]) -> dict[str, Any]:
    """Every feeder: its feeder meter and the meters behind it."""
    return {
        "feeders": [dataclasses.asdict(f) for f in _call(_theft(svc).feeders, who)],
    }


@router.get("/api/v1/revenue-protection/suspects")
def suspects(svc: Svc, who: Annotated[Principal, Depends(investigators)]) -> dict[str, Any]:
    """Meters by theft score, highest first, each with its evidence and latest case."""
    out = []
    for s in _call(_theft(svc).suspects, who):
        row = dataclasses.asdict(s)
        out.append(row)
    return {"suspects": out, "note": "a score is a lead for an inspection, never a bill change"}


@router.get("/api/v1/revenue-protection/cases")
def cases(svc: Svc, who: Annotated[Principal, Depends(investigators)]) -> dict[str, Any]:
    """Every case, newest first."""
    return {"cases": [dataclasses.asdict(c) for c in _call(_theft(svc).cases, who)]}


@router.post("/api/v1/revenue-protection/cases", status_code=201)
def open_case(
    body: CaseRequest, svc: Svc, who: Annotated[Principal, Depends(investigators)]
) -> dict[str, int]:
    """Open a case on a scored meter (audited)."""
    cid = _call(_theft(svc).open_case, who, body.meter_id, note=body.note, now=svc.now())
    return {"case": int(cid)}


@router.post("/api/v1/revenue-protection/cases/{case_id}/assign")
def assign(
    case_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: CaseAssign,
    svc: Svc,
    who: Annotated[Principal, Depends(investigators)],
) -> dict[str, str]:
    """Assign a case (audited)."""
    _call(_theft(svc).assign, who, case_id, body.assignee, now=svc.now())
    return {"state": "assigned"}


@router.post("/api/v1/revenue-protection/cases/{case_id}/close")
def close(
    case_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: CaseClose,
    svc: Svc,
    who: Annotated[Principal, Depends(investigators)],
) -> dict[str, str]:
    """Close a case with an outcome (audited)."""
    _call(_theft(svc).close, who, case_id, body.outcome, note=body.note, now=svc.now())
    return {"state": "closed"}
