"""Firmware: published images, campaigns under dual control, each meter's firmware (FW-11…14).

(No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.)

Every rule — who may propose, that another person approves distribution and again activation,
what a report or an attestation means — is the firmware service's
(:mod:`meterguard.headend.services.firmware`); this module translates HTTP.
"""

import re
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path

from meterguard.errors import AccessDeniedError, ConflictError, InvalidValueError, NotFoundError
from meterguard.headend.api.deps import Svc
from meterguard.headend.api.guard import Guard
from meterguard.headend.api.schemas import (
    MAX_ID,
    AttestRequest,
    CampaignInfo,
    CampaignList,
    CampaignRequest,
    FirmwareMeters,
    ImageInfo,
)
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.commands import COMMAND_ROLES
from meterguard.headend.services.firmware import CampaignStatus, FirmwareUpdates

__all__ = ["router"]

router = APIRouter()
commanders = Guard(COMMAND_ROLES)
readers = Guard(COMMAND_ROLES | {"auditor"})
_SPLIT = re.compile(r"[\s,]+")


def _firmware(svc: Svc) -> FirmwareUpdates:
    if svc.firmware is None:
        raise HTTPException(404)
    return svc.firmware


def _meters(text: str) -> list[str] | None:
    if text.strip().lower() == "all":
        return None
    ids = [m for m in _SPLIT.split(text.strip()) if m]
    if not ids or any(len(m) > 32 for m in ids):
        raise HTTPException(422)
    return ids


def _info(s: CampaignStatus) -> CampaignInfo:
    return CampaignInfo(campaign=s.campaign, counts=s.counts, failures=s.failures)


@router.get("/api/v1/firmware/images", response_model=list[ImageInfo])
def images(svc: Svc, _who: Annotated[Principal, Depends(readers)]) -> list[ImageInfo]:
    """The images the repository publishes."""
    fw = _firmware(svc)
    return [
        ImageInfo(
            name=t.name,
            sha256=t.sha256,
            length=t.length,
            version=str(t.custom.get("version", "")),
            security_version=int(t.custom.get("security_version", 0)),
            model=str(t.custom.get("model", "")),
            hw_revision=str(t.custom.get("hw_revision", "")),
        )
        for t in fw.images()
    ]


@router.get("/api/v1/firmware/campaigns", response_model=CampaignList)
def campaigns(svc: Svc, _who: Annotated[Principal, Depends(readers)]) -> CampaignList:
    """Newest first, with progress."""
    return CampaignList(campaigns=[_info(s) for s in _firmware(svc).campaigns()])


@router.post("/api/v1/firmware/campaigns", response_model=CampaignInfo, status_code=201)
def propose(
    body: CampaignRequest, svc: Svc, who: Annotated[Principal, Depends(commanders)]
) -> CampaignInfo:
    """Propose a campaign; another person must approve it."""
    fw, now = _firmware(svc), svc.now()
    try:
        c = fw.propose(
            who, body.image, _meters(body.meters), deadline=now + body.deadline_hours * 3600,
            reason=body.reason, now=now,
        )  # fmt: skip
    except NotFoundError:
        raise HTTPException(404) from None
    except InvalidValueError:
        raise HTTPException(422) from None
    return _info(fw.status(c.id))


def _step(name: str) -> Callable[..., CampaignInfo]:
    def step(
        campaign_id: Annotated[int, Path(ge=1, le=MAX_ID)],
        svc: Svc,
        who: Annotated[Principal, Depends(commanders)],
    ) -> CampaignInfo:
        fw = _firmware(svc)
        act = {
            "approve": fw.approve,
            "activate": fw.propose_activation,
            "approve-activation": fw.approve_activation,
            "cancel": fw.cancel,
        }[name]
        try:
            c = act(who, campaign_id, now=svc.now())
        except AccessDeniedError:  # dual control: already audited by the service
            raise HTTPException(403) from None
        except NotFoundError:
            raise HTTPException(404) from None
        except ConflictError:
            raise HTTPException(409) from None
        return _info(fw.status(c.id))

    step.__name__ = f"campaign_{name.replace('-', '_')}"
    return step


for _name in ("approve", "activate", "approve-activation", "cancel"):
    router.add_api_route(
        f"/api/v1/firmware/campaigns/{{campaign_id}}/{_name}",
        _step(_name),
        methods=["POST"],
        response_model=CampaignInfo,
    )


@router.get("/api/v1/firmware/meters", response_model=FirmwareMeters)
def meters(svc: Svc, _who: Annotated[Principal, Depends(readers)]) -> FirmwareMeters:
    """Each meter's reported version, slot, counter, result and attestation state."""
    fw = _firmware(svc)
    return FirmwareMeters(versions=fw.versions(), meters=fw.meters())


@router.post("/api/v1/firmware/attest", status_code=202)
def attest(
    body: AttestRequest, svc: Svc, who: Annotated[Principal, Depends(commanders)]
) -> dict[str, int]:
    """Send the meters a fresh nonce each; their signed answers arrive on the firmware endpoint."""
    fw = _firmware(svc)
    ids = _meters(body.meters)
    return {"sent": fw.challenge(who, ids if ids is not None else fw.all_meters(), now=svc.now())}
