"""What a DLMS server serves: the object-model protocol, the request context, settings.

:class:`CosemServerApplication` is the object model behind a
:class:`~meterguard.cosem.server.ServerConnection`; access rights per attribute are its
business, using the :class:`RequestContext` it receives. No IO, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from meterguard.cosem._codec import Reader
from meterguard.cosem.acse import (
    ApplicationContext,
    Mechanism,
)
from meterguard.cosem.axdr import Data, decode_data, decode_data_bytes
from meterguard.cosem.keying import SecurityMaterial
from meterguard.cosem.protection import (
    CIPHERED_CONTEXTS,
    HLS_MECHANISMS,
    Envelope,
)
from meterguard.cosem.security import (
    SecurityControl,
)
from meterguard.cosem.xdlms import (
    ActionResponseNormal,
    ActionResult,
    ActionReturn,
    AttributeWithSelection,
    Conformance,
    DataAccessResult,
    GetResult,
    MethodDescriptor,
    SetResponseLastDataBlock,
    SetResponseLastDataBlockWithList,
)
from meterguard.errors import (
    ConfigurationError,
    DecodeError,
)

__all__ = [
    "AssociationPolicy",
    "CosemServerApplication",
    "LongGet",
    "LongWrite",
    "RequestContext",
    "ServerSettings",
    "complete_write",
    "write_aborted",
]


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What the object model knows about the request it serves."""

    client_sap: int
    mechanism: Mechanism
    authenticated: bool
    """True once HLS succeeded (or for associations that need no authentication)."""
    protection: SecurityControl | None
    """The SC of the request, or None for a plain request."""
    deferred: list[Callable[[], None]] = field(default_factory=list, compare=False)

    def after_response(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the response is protected and queued (e.g. a key change)."""
        self.deferred.append(action)


class CosemServerApplication(Protocol):
    """The object model a :class:`ServerConnection` serves."""

    def get(self, ctx: RequestContext, attribute: AttributeWithSelection) -> GetResult:
        """Return an attribute value, or why not (e.g. READ_WRITE_DENIED)."""
        ...

    def set(
        self, ctx: RequestContext, attribute: AttributeWithSelection, value: Data
    ) -> DataAccessResult:
        """Write an attribute."""
        ...

    def action(
        self, ctx: RequestContext, method: MethodDescriptor, parameters: Data | None
    ) -> ActionReturn:
        """Invoke a method."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociationPolicy:
    """What one client SAP may do: context, mechanism, keys, protection."""

    application_context: ApplicationContext = ApplicationContext.LN
    mechanism: Mechanism = Mechanism.LOWEST
    security: SecurityMaterial | None = None
    require_encryption: bool = True
    conformance: Conformance = Conformance.ln_default()

    def __post_init__(self) -> None:
        ciphered = self.application_context in CIPHERED_CONTEXTS
        if (ciphered or self.mechanism in HLS_MECHANISMS) and self.security is None:
            raise ConfigurationError("a ciphered or HLS association needs security material")
        if self.mechanism not in (Mechanism.LOWEST, *HLS_MECHANISMS):
            raise ConfigurationError(f"mechanism {self.mechanism.name} is not supported")
        if self.mechanism is Mechanism.HLS_ECDSA and (
            self.security is None
            or self.security.signing_key is None
            or self.security.peer_verifying_key is None
            or self.security.suite == 0
        ):
            raise ConfigurationError(
                "HLS-ECDSA needs suite 1 or 2, a signing key and the peer's key"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """A logical device's associations and limits."""

    system_title: bytes
    associations: Mapping[int, AssociationPolicy]
    max_receive_pdu_size: int = 1024
    challenge_length: int = 32
    max_long_transfer: int = 1 << 20
    """Largest SET/ACTION payload accepted through block transfer."""


@dataclass(slots=True)
class LongGet:
    """A GET answer being sent in blocks (DM-11)."""

    invoke: int
    data: bytes
    block_size: int
    sent: int
    env: Envelope


@dataclass(slots=True)
class LongWrite:
    """A SET or ACTION being received in blocks (DM-11)."""

    invoke: int
    targets: tuple[AttributeWithSelection, ...] | MethodDescriptor
    buffer: bytearray
    expected: int


def complete_write(
    application: CosemServerApplication,
    ctx: RequestContext,
    invoke: int,
    targets: tuple[AttributeWithSelection, ...] | MethodDescriptor,
    raw: bytes,
    number: int,
) -> bytes:
    """Apply a SET or ACTION received in blocks; the response APDU to send."""
    if isinstance(targets, MethodDescriptor):
        try:
            params = decode_data_bytes(raw)
        except DecodeError:
            ret = ActionReturn(ActionResult.TYPE_UNMATCHED)
        else:
            ret = application.action(ctx, targets, params)
        return ActionResponseNormal(invoke, ret).to_bytes()
    try:
        if len(targets) == 1:
            values: tuple[Data, ...] = (decode_data_bytes(raw),)
        else:
            r = Reader(raw)
            values = tuple(decode_data(r) for _ in range(r.count(1)))
            r.expect_end("set-with-list values")
            if len(values) != len(targets):
                raise DecodeError("value count differs from attribute count")
    except DecodeError:
        results = tuple(DataAccessResult.TYPE_UNMATCHED for _ in targets)
    else:
        results = tuple(application.set(ctx, a, v) for a, v in zip(targets, values, strict=True))
    if len(targets) == 1:
        return SetResponseLastDataBlock(invoke, results[0], number).to_bytes()
    return SetResponseLastDataBlockWithList(invoke, results, number).to_bytes()


def write_aborted(
    invoke: int, targets: tuple[AttributeWithSelection, ...] | MethodDescriptor, number: int
) -> bytes:
    """The answer to a block transfer that cannot go on (bad block number, too long)."""
    if isinstance(targets, MethodDescriptor):
        return ActionResponseNormal(
            invoke, ActionReturn(ActionResult.LONG_ACTION_ABORTED)
        ).to_bytes()
    return SetResponseLastDataBlock(invoke, DataAccessResult.LONG_SET_ABORTED, number).to_bytes()
