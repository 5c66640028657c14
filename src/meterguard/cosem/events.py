"""The events a sans-IO DLMS connection reports to its user.

See :mod:`meterguard.cosem.connection` for the rules both sides follow. No IO, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from meterguard.cosem.acse import (
    Mechanism,
)
from meterguard.cosem.xdlms import (
    ActionResult,
    ConfirmedServiceError,
    DataAccessResult,
    DataNotification,
    EventNotification,
    ExceptionResponse,
    GetResult,
    InitiateResponse,
)

__all__ = [
    "ActionCompleted",
    "AssociationEstablished",
    "AssociationReleased",
    "Event",
    "ExceptionReceived",
    "GetCompleted",
    "GetListCompleted",
    "NotificationReceived",
    "SetCompleted",
]


@dataclass(frozen=True, slots=True)
class AssociationEstablished:
    """The association is usable (after HLS, when HLS is used)."""

    client_sap: int
    peer_system_title: bytes | None
    mechanism: Mechanism
    negotiated: InitiateResponse


@dataclass(frozen=True, slots=True)
class AssociationReleased:
    """RLRQ/RLRE completed."""


@dataclass(frozen=True, slots=True)
class GetCompleted:
    """A GET (normal or block-reassembled) answered."""

    invoke_id: int
    result: GetResult


@dataclass(frozen=True, slots=True)
class GetListCompleted:
    """A GET-with-list answered."""

    invoke_id: int
    results: tuple[GetResult, ...]


@dataclass(frozen=True, slots=True)
class SetCompleted:
    """A SET answered; ``results`` has one entry per attribute."""

    invoke_id: int
    results: tuple[DataAccessResult, ...]


@dataclass(frozen=True, slots=True)
class ActionCompleted:
    """An ACTION answered."""

    invoke_id: int
    result: ActionResult
    return_parameters: GetResult | None


@dataclass(frozen=True, slots=True)
class NotificationReceived:
    """The server pushed a data- or event-notification inside the association."""

    notification: DataNotification | EventNotification


@dataclass(frozen=True, slots=True)
class ExceptionReceived:
    """The peer answered with exception-response or confirmed-service-error."""

    error: ExceptionResponse | ConfirmedServiceError


Event = (
    AssociationEstablished
    | AssociationReleased
    | GetCompleted
    | GetListCompleted
    | SetCompleted
    | ActionCompleted
    | NotificationReceived
    | ExceptionReceived
)
