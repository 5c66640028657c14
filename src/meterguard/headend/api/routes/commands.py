"""Dual-control critical commands (API-10) and on-demand reads.

(No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.)

The rules — who may propose, that another person approves, signing, counters — are the
command service's; an on-demand read is admitted by the consumption-data service (PRIV-1,
API-11) inside it. Denials of dual control are audited by the service itself.
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from meterguard.errors import AccessDeniedError, InvalidValueError
from meterguard.headend.api.deps import MeterAccess, Svc, meter_for, refusal
from meterguard.headend.api.guard import Guard
from meterguard.headend.api.schemas import MAX_ID, CommandList, CommandRequest
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.commands import COMMAND_ROLES, CommandView

__all__ = ["router"]

router = APIRouter()
commanders = Guard(COMMAND_ROLES)
command_readers = Guard(COMMAND_ROLES | {"auditor"})


@router.get("/api/v1/commands", response_model=CommandList)
def list_commands(svc: Svc, _who: Annotated[Principal, Depends(command_readers)]) -> CommandList:
    """Newest first."""
    if svc.commands is None:
        raise HTTPException(404)
    return CommandList(commands=svc.commands.list())


@router.post("/api/v1/commands", response_model=CommandView, status_code=201)
def propose(
    body: CommandRequest, svc: Svc, who: Annotated[Principal, Depends(commanders)]
) -> CommandView:
    """Propose a critical command; another person must approve it."""
    if svc.commands is None:
        raise HTTPException(404)
    try:
        return svc.commands.propose(
            who, body.meter_id, body.kind, body.value, body.reason, now=svc.now()
        )
    except InvalidValueError:
        raise HTTPException(422) from None


def _decide(step: str) -> Callable[..., CommandView]:
    def decide(
        command_id: Annotated[int, Path(ge=1, le=MAX_ID)],
        svc: Svc,
        who: Annotated[Principal, Depends(commanders)],
    ) -> CommandView:
        if svc.commands is None:
            raise HTTPException(404)
        act = svc.commands.approve if step == "approve" else svc.commands.reject
        try:
            out = act(who, command_id, now=svc.now())
        except AccessDeniedError:  # dual control: already audited by the service
            raise HTTPException(403) from None
        if out is None:
            raise HTTPException(404)
        return out

    decide.__name__ = f"{step}_command"
    return decide


for _step in ("approve", "reject"):
    router.add_api_route(
        f"/api/v1/commands/{{command_id}}/{_step}",
        _decide(_step),
        methods=["POST"],
        response_model=CommandView,
    )


@router.post("/api/v1/meters/{meter_id}/read", response_model=CommandView, status_code=202)
def read_now(
    request: Request, svc: Svc, m: Annotated[MeterAccess, Depends(meter_for(commanders))]
) -> CommandView:
    """On-demand read: a signed GET of the import register; the answer fills ``reading``."""
    if svc.commands is None:
        raise HTTPException(404)
    try:
        with refusal(request, m.who):
            return svc.commands.read_now(m.who, m.meter_id, now=svc.now())
    except HTTPException as exc:
        if exc.status_code == 422:  # an inactive meter
            raise HTTPException(404) from None
        raise
