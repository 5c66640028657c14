"""Sans-IO DLMS/COSEM connections: :class:`ClientConnection` and :class:`ServerConnection`.

A connection takes whole APDUs in (``receive``) and queues whole APDUs out
(``outgoing``); the transport moves them, with wrapper framing, over TCP, MQTT
or a test pipe (aioquic's pattern). Neither class opens sockets, starts tasks
or reads the clock. Randomness (challenges, dedicated keys) comes from an
injectable ``rng``.

Both sides:

* follow :mod:`meterguard.cosem.association`'s transition tables;
* protect every APDU in a ciphered context with the association's keys and
  check, on every APDU received: originator system title, security suite,
  required protection (authentication always), invocation counter strictly
  above the last accepted one for that key, then the GCM tag — the counter is
  committed only after the tag verified (DM-6, DH-4, DH-7);
* answer in the kind they were asked (service-specific glo/ded, general-glo/ded,
  general-ciphering) — the mirroring rule of the reference §1.6;
* run HLS mechanism 5 (GMAC) and 7 (ECDSA) and fail closed (DM-3…5, DH-2/3);
* split and reassemble GET, SET and ACTION block transfers, every block
  ciphered with a fresh counter (DM-11).

Errors: :meth:`receive` raises the :mod:`meterguard.errors` subclass that fits
(security errors are :class:`~meterguard.errors.SecurityError`). The server
queues its answer to the peer (AARE rejected, exception-response, HLS denied)
*before* raising, so always drain :meth:`outgoing` after ``receive``, even when
it raised. The peer only ever learns coarse DLMS result codes.

The object model behind a server is the :class:`CosemServerApplication`
protocol; access rights per attribute are its business, using the
:class:`RequestContext` it receives.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from meterguard.cosem._codec import Reader
from meterguard.cosem.acse import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    AcseServiceUserDiagnostic,
    ApplicationContext,
    AssociationResult,
    Mechanism,
    ReleaseResponseReason,
)
from meterguard.cosem.apdu import Apdu, decode_apdu
from meterguard.cosem.association import AssociationMachine, AssociationState, Role, Trigger
from meterguard.cosem.axdr import Data, OctetString, decode_data, decode_data_bytes, encode_data
from meterguard.cosem.counters import ReceiveCounter, SendCounter
from meterguard.cosem.obis import Obis
from meterguard.cosem.security import (
    SYSTEM_TITLE_LENGTH,
    ApduProtector,
    CipheringKind,
    GeneralCiphering,
    GeneralGloCiphering,
    SecurityControl,
    ServiceCiphered,
    hls_ecdsa_sign,
    hls_ecdsa_verify,
    hls_gmac,
    protect_general,
    unprotect,
    unprotect_general,
    verify_hls_gmac,
)
from meterguard.cosem.xdlms import (
    ActionRequestNextPblock,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithList,
    ActionRequestWithPblock,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithList,
    ActionResult,
    ActionReturn,
    AttributeDescriptor,
    AttributeWithSelection,
    ConfirmedServiceError,
    Conformance,
    DataAccessResult,
    DataBlockG,
    DataBlockSA,
    DataNotification,
    EventNotification,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponseNormal,
    GetResponseWithDataBlock,
    GetResponseWithList,
    GetResult,
    InitiateRequest,
    InitiateResponse,
    MethodDescriptor,
    SelectiveAccess,
    SetRequestNormal,
    SetRequestWithDataBlock,
    SetRequestWithFirstDataBlock,
    SetRequestWithList,
    SetRequestWithListAndFirstDataBlock,
    SetResponseDataBlock,
    SetResponseLastDataBlock,
    SetResponseLastDataBlockWithList,
    SetResponseNormal,
    SetResponseWithList,
    XdlmsApdu,
    decode_get_results,
    decode_xdlms,
    encode_get_results,
    invoke_id_and_priority,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import SigningKey, VerifyingKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    AssociationRejectedError,
    ConfigurationError,
    DecodeError,
    HlsFailedError,
    InsufficientProtectionError,
    LocalProtocolError,
    RemoteProtocolError,
    ReplayError,
    SecurityError,
    UnexpectedSystemTitleError,
)

__all__ = [
    "HLS_METHOD",
    "ActionCompleted",
    "AssociationEstablished",
    "AssociationPolicy",
    "AssociationReleased",
    "ClientConnection",
    "ClientSettings",
    "CosemServerApplication",
    "Event",
    "ExceptionReceived",
    "GetCompleted",
    "GetListCompleted",
    "NotificationReceived",
    "RequestContext",
    "SecurityMaterial",
    "ServerConnection",
    "ServerSettings",
    "SetCompleted",
]

HLS_METHOD = MethodDescriptor(15, Obis(0, 0, 40, 0, 0, 255), 1)
"""Association LN, method 1: reply_to_HLS_authentication (HLS pass 3)."""

HLS_MECHANISMS = frozenset({Mechanism.HLS_GMAC, Mechanism.HLS_ECDSA})
MIN_CHALLENGE, MAX_CHALLENGE = 8, 64
MIN_PDU_SIZE = 64
CIPHERED_CONTEXTS = frozenset({ApplicationContext.LN_CIPHERED, ApplicationContext.SN_CIPHERED})

# Worst-case bytes that ciphering adds around an APDU, per kind:
# tag + length(3) + SC + IC + GCM tag; general-glo adds the 8-byte system title and its length.
_OVERHEAD = {
    None: 0,
    CipheringKind.SERVICE_GLO: 1 + 3 + 5 + 12,
    CipheringKind.SERVICE_DED: 1 + 3 + 5 + 12,
    CipheringKind.GENERAL_GLO: 1 + 1 + 8 + 3 + 5 + 12,
    CipheringKind.GENERAL_DED: 1 + 1 + 8 + 3 + 5 + 12,
}
_GENERAL_CIPHERING_OVERHEAD = 1 + 5 * 4 + 2 * 8 + 3 + 3 + 5 + 12  # plus transaction id etc.
_BLOCK_HEADER = 3 + 1 + 4 + 1 + 3  # tag, choice, invoke, last, number, choice/len


# ------------------------------------------------------------------ key material


class SecurityMaterial:
    """The mutable security state of one side of an association (keys, counters, titles).

    Owned by the meter or head-end, shared with the connection. Replacing a key
    (after key_transfer) takes effect for the next APDU. ``repr`` shows no key.
    """

    __slots__ = (
        "_ak",
        "_bk",
        "_bk_gcm",
        "_ek",
        "_ek_gcm",
        "peer_broadcast_counter",
        "peer_counter",
        "peer_verifying_key",
        "send_counter",
        "signing_key",
        "suite",
        "system_title",
    )

    def __init__(
        self,
        *,
        system_title: bytes,
        suite: int = 0,
        unicast_key: SecretKey | None = None,
        authentication_key: SecretKey | None = None,
        broadcast_key: SecretKey | None = None,
        send_counter: SendCounter | None = None,
        peer_counter: ReceiveCounter | None = None,
        peer_broadcast_counter: ReceiveCounter | None = None,
        signing_key: SigningKey | None = None,
        peer_verifying_key: VerifyingKey | None = None,
    ) -> None:
        if len(system_title) != SYSTEM_TITLE_LENGTH:
            raise ConfigurationError("system title must be 8 bytes")
        if suite not in (0, 1, 2):
            raise ConfigurationError("security suite must be 0, 1 or 2")
        self.system_title = system_title
        self.suite = suite
        self._ek: SecretKey | None = None
        self._ek_gcm: GcmKey | None = None
        self._bk: SecretKey | None = None
        self._bk_gcm: GcmKey | None = None
        self._ak = authentication_key
        self.unicast_key = unicast_key
        self.broadcast_key = broadcast_key
        self.send_counter = send_counter if send_counter is not None else SendCounter()
        self.peer_counter = peer_counter if peer_counter is not None else ReceiveCounter()
        self.peer_broadcast_counter = (
            peer_broadcast_counter if peer_broadcast_counter is not None else ReceiveCounter()
        )
        self.signing_key = signing_key
        self.peer_verifying_key = peer_verifying_key

    def _check_len(self, key: SecretKey | None) -> None:
        if key is not None and len(key) != (32 if self.suite == 2 else 16):
            raise ConfigurationError(
                f"suite {self.suite} needs {32 if self.suite == 2 else 16}-byte keys"
            )

    @property
    def unicast_key(self) -> SecretKey | None:
        """Global unicast encryption key (GUEK)."""
        return self._ek

    @unicast_key.setter
    def unicast_key(self, key: SecretKey | None) -> None:
        self._check_len(key)
        self._ek = key
        self._ek_gcm = None if key is None else GcmKey(key)

    @property
    def broadcast_key(self) -> SecretKey | None:
        """Global broadcast encryption key (GBEK)."""
        return self._bk

    @broadcast_key.setter
    def broadcast_key(self, key: SecretKey | None) -> None:
        self._check_len(key)
        self._bk = key
        self._bk_gcm = None if key is None else GcmKey(key)

    @property
    def authentication_key(self) -> SecretKey | None:
        """Authentication key (GAK), only ever used inside the AAD."""
        return self._ak

    @authentication_key.setter
    def authentication_key(self, key: SecretKey | None) -> None:
        self._check_len(key)
        self._ak = key

    def unicast_gcm(self) -> GcmKey:
        """The unicast key ready for GCM.

        Raises:
            ConfigurationError: no unicast key.
        """
        if self._ek_gcm is None:
            raise ConfigurationError("no global unicast key configured")
        return self._ek_gcm

    def broadcast_gcm(self) -> GcmKey:
        """The broadcast key ready for GCM.

        Raises:
            InsufficientProtectionError: no broadcast key is configured, so nothing
                protected with one can be accepted.
        """
        if self._bk_gcm is None:
            raise InsufficientProtectionError("broadcast-key APDU but no broadcast key configured")
        return self._bk_gcm

    def __repr__(self) -> str:
        return (
            f"SecurityMaterial(system_title={self.system_title.hex()}, suite={self.suite}, "
            f"send={self.send_counter!r}, peer={self.peer_counter!r})"
        )


# ------------------------------------------------------------------ events


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


# ------------------------------------------------------------------ envelopes


@dataclass(frozen=True, slots=True)
class _Envelope:
    """How an APDU arrived, so that the answer goes back in the same kind."""

    kind: CipheringKind | None
    security: SecurityControl | None = None
    general: GeneralCiphering | None = None


_PLAIN = _Envelope(None)
_AARE_ERRORS = (SecurityError, RemoteProtocolError, DecodeError)


def _overhead(env: _Envelope) -> int:
    if env.general is not None:
        return (
            _GENERAL_CIPHERING_OVERHEAD
            + len(env.general.transaction_id)
            + len(env.general.other_information)
            + len(env.general.date_time)
        )
    return _OVERHEAD[env.kind]


class _Protection:
    """Wraps and unwraps APDUs for one side of one association."""

    __slots__ = ("_protectors", "ded_counter", "dedicated", "material", "peer_title")

    def __init__(self, material: SecurityMaterial) -> None:
        self.material = material
        self._protectors: dict[tuple[GcmKey, SecurityControl, SecretKey | None], ApduProtector] = {}
        self.peer_title: bytes | None = None
        self.dedicated: GcmKey | None = None
        self.ded_counter = ReceiveCounter()

    def wrap(self, plain: bytes, env: _Envelope) -> bytes:
        m = self.material
        if env.kind is None:
            return plain
        sc = replace(env.security or SecurityControl(suite=m.suite), broadcast=False, suite=m.suite)
        ic = m.send_counter.issue()
        if env.general is not None:
            return protect_general(
                plain,
                transaction_id=env.general.transaction_id,
                originator=m.system_title,
                recipient=self.peer_title or b"",
                security=sc,
                invocation_counter=ic,
                key=m.unicast_gcm(),
                authentication_key=m.authentication_key,
            ).to_bytes()
        if env.kind.dedicated:
            if self.dedicated is None:
                raise LocalProtocolError("dedicated ciphering without a dedicated key")
            key = self.dedicated
        else:
            key = m.unicast_gcm()
        cache_key = (key, sc, m.authentication_key)
        protector = self._protectors.get(cache_key)
        if protector is None:
            if len(self._protectors) > 8:  # keys changed several times: forget the old ones
                self._protectors.clear()
            protector = ApduProtector(
                key=key,
                authentication_key=m.authentication_key,
                system_title=m.system_title,
                security=sc,
            )
            self._protectors[cache_key] = protector
        return protector.protect(plain, ic, env.kind)

    def unwrap(self, apdu: Apdu, *, require_encryption: bool) -> tuple[bytes, _Envelope]:
        """Check and decipher one ciphered APDU (DM-6 / DH-4 order: title, policy, counter, tag)."""
        m = self.material
        if self.peer_title is None:
            raise RemoteProtocolError("ciphered APDU before the peer's system title is known")
        if isinstance(apdu, GeneralGloCiphering) and apdu.system_title != self.peer_title:
            raise UnexpectedSystemTitleError(
                f"APDU from system title {apdu.system_title.hex()}, "
                f"expected {self.peer_title.hex()}"
            )
        if isinstance(apdu, GeneralCiphering) and apdu.originator_system_title != self.peer_title:
            raise UnexpectedSystemTitleError(
                f"APDU from system title {apdu.originator_system_title.hex()}, "
                f"expected {self.peer_title.hex()}"
            )
        if not isinstance(apdu, ServiceCiphered | GeneralGloCiphering | GeneralCiphering):
            raise RemoteProtocolError(f"{type(apdu).__name__} is not a ciphered APDU")
        sc = apdu.security
        # Green Book §9.2.7: the suite is fixed per security setup; a downgrade is refused.
        if sc.suite != m.suite:
            raise InsufficientProtectionError(
                f"APDU uses suite {sc.suite}, association uses {m.suite}"
            )
        # DM-6: tags are always verified, so unauthenticated APDUs are never accepted.
        if not sc.authenticated:
            raise InsufficientProtectionError("APDU is not authenticated")
        if require_encryption and not sc.encrypted:
            raise InsufficientProtectionError("APDU is not encrypted but the policy requires it")
        dedicated = isinstance(apdu, ServiceCiphered | GeneralGloCiphering) and apdu.dedicated
        broadcast = sc.broadcast
        if isinstance(apdu, GeneralCiphering) and apdu.key_info is not None:
            broadcast = apdu.key_info.choice == 0 and apdu.key_info.key_id == 1
        if dedicated:
            if self.dedicated is None:
                raise InsufficientProtectionError("dedicated ciphering but no dedicated key agreed")
            key, counter = self.dedicated, self.ded_counter
        elif broadcast:
            key, counter = m.broadcast_gcm(), m.peer_broadcast_counter
        else:
            key, counter = m.unicast_gcm(), m.peer_counter
        counter.check(apdu.invocation_counter)  # replay: cheap check before any crypto
        if isinstance(apdu, GeneralCiphering):
            plain = unprotect_general(apdu, key=key, authentication_key=m.authentication_key)
            env = _Envelope(CipheringKind.GENERAL_GLO, sc, general=apdu)
        else:
            plain = unprotect(
                apdu, system_title=self.peer_title, key=key, authentication_key=m.authentication_key
            )
            env = _Envelope(apdu.kind, sc)
        counter.commit(apdu.invocation_counter)  # only after the tag verified
        return plain, env


def _is_ciphered(apdu: Apdu) -> bool:
    return isinstance(apdu, ServiceCiphered | GeneralGloCiphering | GeneralCiphering)


def _block_size(max_pdu: int, env: _Envelope) -> int:
    return max_pdu - _overhead(env) - _BLOCK_HEADER


# ------------------------------------------------------------------ server


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
class _LongGet:
    invoke: int
    data: bytes
    block_size: int
    sent: int
    env: _Envelope


@dataclass(slots=True)
class _LongWrite:
    invoke: int
    targets: tuple[AttributeWithSelection, ...] | MethodDescriptor
    buffer: bytearray
    expected: int


class _Endpoint:
    """What both roles share: the state machine and the queue of APDUs to send."""

    def __init__(self, role: Role) -> None:
        self.machine = AssociationMachine(role)
        self._out: list[bytes] = []

    @property
    def state(self) -> AssociationState:
        """The association state."""
        return self.machine.state

    def outgoing(self) -> list[bytes]:
        """Return and forget the APDUs queued for the peer."""
        out, self._out = self._out, []
        return out


class ServerConnection(_Endpoint):
    """The server (meter) side of one DLMS/COSEM transport connection."""

    def __init__(
        self,
        settings: ServerSettings,
        application: CosemServerApplication,
        *,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if len(settings.system_title) != SYSTEM_TITLE_LENGTH:
            raise ConfigurationError("server system title must be 8 bytes")
        super().__init__(Role.SERVER)
        self.settings = settings
        self.application = application
        self._rng = rng
        self._policy: AssociationPolicy | None = None
        self._protection: _Protection | None = None
        self._client_sap: int | None = None
        self._ctos = b""
        self._stoc = b""
        self._client_max_pdu = 0xFFFF
        self._long_get: _LongGet | None = None
        self._long_write: _LongWrite | None = None

    # -- public API

    @property
    def client_system_title(self) -> bytes | None:
        """The client's system title from its AARQ (ciphered contexts)."""
        return None if self._protection is None else self._protection.peer_title

    def abort(self) -> None:
        """The transport closed: forget the association."""
        self.machine.fire(Trigger.ABORTED, by_peer=False)
        self._clear()

    def push(self, notification: DataNotification | EventNotification) -> None:
        """Queue a notification to the associated client, protected like its requests.

        Raises:
            LocalProtocolError: no established association.
        """
        if self.machine.state is not AssociationState.ASSOCIATED or self._policy is None:
            raise LocalProtocolError("push needs an established association")
        env = _PLAIN
        if self._policy.application_context in CIPHERED_CONTEXTS:
            env = _Envelope(CipheringKind.GENERAL_GLO, SecurityControl(suite=self._suite()))
        self._send(notification.to_bytes(), env)

    def receive(self, data: bytes, *, client_sap: int) -> list[Event]:
        """Process one APDU from the client at wPort ``client_sap``.

        Raises:
            DecodeError: malformed APDU.
            SecurityError: a security check failed (answer already queued).
            RemoteProtocolError: the request is not allowed now (answer already queued).
        """
        apdu = decode_apdu(data)
        if isinstance(apdu, AARQ):
            return self._on_aarq(apdu, client_sap)
        if isinstance(apdu, RLRQ):
            return self._on_rlrq(apdu, client_sap)
        state = self.machine.state
        if (
            state in (AssociationState.IDLE, AssociationState.FAILED)
            or client_sap != self._client_sap
        ):
            self._exception(state_error=1, service_error=1)
            raise RemoteProtocolError(f"request outside an established association ({state.value})")
        plain, env = self._unwrap(apdu)
        if isinstance(apdu, ServiceCiphered | GeneralGloCiphering | GeneralCiphering):
            try:
                request: Apdu = decode_xdlms(plain)
            except DecodeError:
                self._exception(state_error=2, service_error=3)
                raise
        else:
            request = apdu
        if state is AssociationState.HLS_PENDING:
            return self._on_hls_pending(request, env)
        return self._serve(request, env)

    # -- association

    def _suite(self) -> int:
        return (
            0
            if self._policy is None or self._policy.security is None
            else self._policy.security.suite
        )

    def _clear(self) -> None:
        self._policy = None
        self._protection = None
        self._client_sap = None
        self._ctos = self._stoc = b""
        self._long_get = None
        self._long_write = None

    def _reject_aarq(
        self,
        context: ApplicationContext,
        diagnostic: AcseServiceUserDiagnostic,
        *,
        user_information: bytes | None = None,
        transient: bool = False,
    ) -> None:
        result = (
            AssociationResult.REJECTED_TRANSIENT
            if transient
            else AssociationResult.REJECTED_PERMANENT
        )
        self._out.append(
            AARE(
                application_context=context,
                result=result,
                diagnostic=diagnostic,
                responding_ap_title=self.settings.system_title,
                user_information=user_information,
            ).to_bytes()
        )

    def _on_aarq(self, aarq: AARQ, client_sap: int) -> list[Event]:
        ctx = aarq.application_context
        if self.machine.state is not AssociationState.IDLE:
            self._reject_aarq(ctx, AcseServiceUserDiagnostic.NO_REASON_GIVEN, transient=True)
            raise RemoteProtocolError("AARQ while an association is open on this connection")
        policy = self.settings.associations.get(client_sap)
        if policy is None:
            self._reject_aarq(ctx, AcseServiceUserDiagnostic.NO_REASON_GIVEN)
            raise RemoteProtocolError(f"no association is configured for client SAP {client_sap}")
        if ctx is not policy.application_context:
            self._reject_aarq(ctx, AcseServiceUserDiagnostic.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED)
            raise RemoteProtocolError(
                f"client SAP {client_sap} must use {policy.application_context.name}"
            )
        mechanism = aarq.mechanism if aarq.mechanism is not None else Mechanism.LOWEST
        if mechanism is not policy.mechanism:
            self._reject_aarq(
                ctx, AcseServiceUserDiagnostic.AUTHENTICATION_MECHANISM_NAME_NOT_RECOGNISED
            )
            raise InsufficientProtectionError(
                f"client SAP {client_sap} asked for {mechanism.name}, "
                f"policy is {policy.mechanism.name}"
            )
        ctos = aarq.calling_authentication_value or b""
        if mechanism in HLS_MECHANISMS and not MIN_CHALLENGE <= len(ctos) <= MAX_CHALLENGE:
            self._reject_aarq(ctx, AcseServiceUserDiagnostic.AUTHENTICATION_FAILURE)
            raise HlsFailedError(
                f"CtoS must be {MIN_CHALLENGE}..{MAX_CHALLENGE} bytes, got {len(ctos)}"
            )
        ciphered = ctx in CIPHERED_CONTEXTS
        protection = None if policy.security is None else _Protection(policy.security)
        if protection is not None:
            title = aarq.calling_ap_title
            if title is not None and len(title) != SYSTEM_TITLE_LENGTH:
                self._reject_aarq(ctx, AcseServiceUserDiagnostic.CALLING_AP_TITLE_NOT_RECOGNIZED)
                raise RemoteProtocolError("calling-AP-title must be 8 bytes")
            if title is None and ciphered:
                self._reject_aarq(ctx, AcseServiceUserDiagnostic.CALLING_AP_TITLE_NOT_RECOGNIZED)
                raise RemoteProtocolError("a ciphered context needs the client's system title")
            protection.peer_title = title
        if aarq.user_information is None:
            self._reject_aarq(ctx, AcseServiceUserDiagnostic.NO_REASON_GIVEN)
            raise RemoteProtocolError("AARQ without xDLMS InitiateRequest")
        try:
            init = self._initiate_request(aarq.user_information, protection, ciphered)
        except (SecurityError, DecodeError, RemoteProtocolError):
            # DM-7: wrong keys (or a replayed/garbled InitiateRequest) → AARE rejected.
            self._reject_aarq(ctx, AcseServiceUserDiagnostic.NO_REASON_GIVEN)
            raise
        if init.proposed_dlms_version < 6:
            err = ConfirmedServiceError(1, 6, 1)  # initiateError, initiate, dlms-version-too-low
            self._reject_aarq(
                ctx, AcseServiceUserDiagnostic.NO_REASON_GIVEN, user_information=err.to_bytes()
            )
            raise RemoteProtocolError("client proposes DLMS version below 6")
        if (
            init.client_max_receive_pdu_size < MIN_PDU_SIZE
            and init.client_max_receive_pdu_size != 0
        ):
            err = ConfirmedServiceError(1, 6, 3)  # pdu-size too short
            self._reject_aarq(
                ctx, AcseServiceUserDiagnostic.NO_REASON_GIVEN, user_information=err.to_bytes()
            )
            raise RemoteProtocolError("client max receive PDU size too small")
        if protection is not None and init.dedicated_key is not None:
            protection.dedicated = GcmKey(init.dedicated_key)
        response = InitiateResponse(
            negotiated_conformance=init.proposed_conformance & policy.conformance,
            server_max_receive_pdu_size=self.settings.max_receive_pdu_size,
        )
        self._policy = policy
        self._protection = protection
        self._client_sap = client_sap
        self._client_max_pdu = init.client_max_receive_pdu_size or 0xFFFF
        if ciphered and protection is not None:
            user_info = protection.wrap(
                response.to_bytes(),
                _Envelope(CipheringKind.SERVICE_GLO, SecurityControl(suite=self._suite())),
            )
        else:
            user_info = response.to_bytes()
        if mechanism in HLS_MECHANISMS:
            self._ctos = ctos
            self._stoc = self._rng(self.settings.challenge_length)
            self._out.append(
                AARE(
                    application_context=ctx,
                    diagnostic=AcseServiceUserDiagnostic.AUTHENTICATION_REQUIRED,
                    responding_ap_title=self.settings.system_title,
                    authentication=True,
                    mechanism=mechanism,
                    responding_authentication_value=self._stoc,
                    user_information=user_info,
                ).to_bytes()
            )
            self.machine.fire(Trigger.AARE_HLS_REQUIRED, by_peer=True)
            return []
        self._out.append(
            AARE(
                application_context=ctx,
                responding_ap_title=self.settings.system_title if ciphered else None,
                user_information=user_info,
            ).to_bytes()
        )
        self.machine.fire(Trigger.AARE_ACCEPTED, by_peer=True)
        return [AssociationEstablished(client_sap, self.client_system_title, mechanism, response)]

    def _initiate_request(
        self, user_information: bytes, protection: _Protection | None, ciphered: bool
    ) -> InitiateRequest:
        inner = decode_apdu(user_information)
        if ciphered:
            if not (isinstance(inner, ServiceCiphered) and inner.tag == 0x21) or protection is None:
                raise InsufficientProtectionError("a ciphered context needs a glo-initiate-request")
            plain, _ = protection.unwrap(inner, require_encryption=True)
            inner = decode_xdlms(plain)
        if not isinstance(inner, InitiateRequest):
            raise RemoteProtocolError(f"user information holds {type(inner).__name__}")
        return inner

    def _on_rlrq(self, rlrq: RLRQ, client_sap: int) -> list[Event]:
        if client_sap != self._client_sap and self.machine.state is not AssociationState.IDLE:
            self._exception(state_error=1, service_error=1)
            raise RemoteProtocolError("RLRQ from a client SAP that is not associated here")
        info = None
        error: SecurityError | DecodeError | None = None
        if rlrq.user_information is not None and self._protection is not None:
            try:
                init = self._initiate_request(
                    rlrq.user_information, self._protection, ciphered=True
                )
                response = InitiateResponse(
                    negotiated_conformance=init.proposed_conformance,
                    server_max_receive_pdu_size=self.settings.max_receive_pdu_size,
                )
                info = self._protection.wrap(
                    response.to_bytes(),
                    _Envelope(CipheringKind.SERVICE_GLO, SecurityControl(suite=self._suite())),
                )
            except (SecurityError, DecodeError) as exc:
                error = exc
        self._out.append(
            RLRE(reason=ReleaseResponseReason.NORMAL, user_information=info).to_bytes()
        )
        self.machine.fire(Trigger.RELEASED, by_peer=True)
        self._clear()
        if error is not None:
            raise error
        return [AssociationReleased()]

    def _on_hls_pending(self, request: Apdu, env: _Envelope) -> list[Event]:
        # DM-4: before HLS succeeds, reply_to_HLS_authentication is the only service allowed.
        if not (isinstance(request, ActionRequestNormal) and request.method == HLS_METHOD):
            self._exception(state_error=1, service_error=1)
            raise RemoteProtocolError(
                "only reply_to_HLS_authentication is allowed before HLS completes"
            )
        policy, protection = self._policy, self._protection
        assert policy is not None and protection is not None and policy.security is not None  # noqa: S101
        material = policy.security
        param = request.parameters
        try:
            if not isinstance(param, OctetString):
                raise HlsFailedError("HLS reply must be an octet-string")
            client_title = protection.peer_title or b""
            if policy.mechanism is Mechanism.HLS_GMAC:
                ak = material.authentication_key
                if ak is None:
                    raise ConfigurationError("HLS-GMAC needs an authentication key")
                # The GMAC covers StoC, which is fresh per association, so replaying an old
                # f(StoC) cannot succeed; its IC is not a second counter stream.
                verify_hls_gmac(
                    param.value,
                    self._stoc,
                    system_title=client_title,
                    key=material.unicast_gcm(),
                    authentication_key=ak,
                    suite=material.suite,
                )
                reply = hls_gmac(
                    self._ctos,
                    system_title=self.settings.system_title,
                    invocation_counter=material.send_counter.issue(),
                    key=material.unicast_gcm(),
                    authentication_key=ak,
                    suite=material.suite,
                )
            else:
                assert material.peer_verifying_key is not None and material.signing_key is not None  # noqa: S101
                hls_ecdsa_verify(
                    material.peer_verifying_key,
                    param.value,
                    signer_title=client_title,
                    other_title=self.settings.system_title,
                    answered_challenge=self._stoc,
                    signer_challenge=self._ctos,
                )
                reply = hls_ecdsa_sign(
                    material.signing_key,
                    own_title=self.settings.system_title,
                    peer_title=client_title,
                    own_challenge_of_peer=self._ctos,
                    peer_challenge=self._stoc,
                )
        except HlsFailedError:
            # DM-5: a wrong f(StoC) leaves the association unestablished.
            deny = ActionResponseNormal(
                request.invoke_id_and_priority, ActionReturn(ActionResult.READ_WRITE_DENIED)
            )
            self._send(deny.to_bytes(), env)
            self.machine.fire(Trigger.HLS_FAILED, by_peer=True)
            raise
        ok = ActionResponseNormal(
            request.invoke_id_and_priority, ActionReturn(ActionResult.SUCCESS, OctetString(reply))
        )
        self._send(ok.to_bytes(), env)
        self.machine.fire(Trigger.HLS_SUCCEEDED, by_peer=True)
        negotiated = InitiateResponse(
            server_max_receive_pdu_size=self.settings.max_receive_pdu_size
        )
        return [
            AssociationEstablished(
                self._client_sap or 0, protection.peer_title, policy.mechanism, negotiated
            )
        ]

    # -- protection

    def _unwrap(self, apdu: Apdu) -> tuple[bytes, _Envelope]:
        policy = self._policy
        assert policy is not None  # noqa: S101 - guarded by the state check
        ciphered_context = policy.application_context in CIPHERED_CONTEXTS
        if not _is_ciphered(apdu):
            if ciphered_context:
                self._exception(state_error=1, service_error=1)
                raise InsufficientProtectionError("plain request in a ciphered association")
            return b"", _PLAIN
        if not ciphered_context or self._protection is None:
            self._exception(state_error=1, service_error=2)
            raise InsufficientProtectionError(
                "ciphered request in an association without ciphering"
            )
        try:
            return self._protection.unwrap(apdu, require_encryption=policy.require_encryption)
        except SecurityError as exc:
            if isinstance(exc, ReplayError):
                last = self._protection.material.peer_counter.last
                self._exception(state_error=1, service_error=6, invocation_counter=(last or 0) + 1)
            else:
                self._exception(state_error=1, service_error=5)
            raise

    def _exception(
        self, *, state_error: int, service_error: int, invocation_counter: int | None = None
    ) -> None:
        self._out.append(
            ExceptionResponse(state_error, service_error, invocation_counter).to_bytes()
        )

    def _send(self, plain: bytes, env: _Envelope) -> None:
        if env.kind is None:
            self._out.append(plain)
            return
        assert self._protection is not None  # noqa: S101 - a ciphered envelope implies protection
        self._out.append(self._protection.wrap(plain, env))

    def _context(self, env: _Envelope) -> RequestContext:
        policy = self._policy
        assert policy is not None  # noqa: S101
        return RequestContext(
            client_sap=self._client_sap or 0,
            mechanism=policy.mechanism,
            authenticated=True,
            protection=env.security,
        )

    def _finish(self, ctx: RequestContext) -> None:
        for action in ctx.deferred:
            action()

    # -- services

    def _serve(self, request: Apdu, env: _Envelope) -> list[Event]:
        if self._long_get is not None and not isinstance(request, GetRequestNext):
            self._long_get = None
            self.machine.fire(Trigger.BLOCK_ABORTED, by_peer=True)
        if self._long_write is not None and not isinstance(
            request, SetRequestWithDataBlock | ActionRequestWithPblock
        ):
            self._long_write = None
            self.machine.fire(Trigger.BLOCK_ABORTED, by_peer=True)
        ctx = self._context(env)
        if isinstance(request, GetRequestNormal):
            result = self.application.get(ctx, request.attribute)
            body = result if isinstance(result, DataAccessResult) else encode_data(result)
            self._answer_get(
                request.invoke_id_and_priority,
                GetResponseNormal(request.invoke_id_and_priority, result).to_bytes(),
                body,
                env,
            )
        elif isinstance(request, GetRequestWithList):
            results = tuple(self.application.get(ctx, a) for a in request.attributes)
            full = GetResponseWithList(request.invoke_id_and_priority, results).to_bytes()
            self._answer_get(request.invoke_id_and_priority, full, encode_get_results(results), env)
        elif isinstance(request, GetRequestNext):
            self._next_block(request, env)
        elif isinstance(request, SetRequestNormal):
            res = self.application.set(ctx, request.attribute, request.value)
            self._send(SetResponseNormal(request.invoke_id_and_priority, res).to_bytes(), env)
        elif isinstance(request, SetRequestWithList):
            if len(request.attributes) != len(request.values):
                self._exception(state_error=2, service_error=3)
                raise RemoteProtocolError("set-with-list: attribute and value counts differ")
            results = tuple(
                self.application.set(ctx, a, v)
                for a, v in zip(request.attributes, request.values, strict=True)
            )
            self._send(SetResponseWithList(request.invoke_id_and_priority, results).to_bytes(), env)  # type: ignore[arg-type]
        elif isinstance(
            request, SetRequestWithFirstDataBlock | SetRequestWithListAndFirstDataBlock
        ):
            targets = (
                (request.attribute,)
                if isinstance(request, SetRequestWithFirstDataBlock)
                else request.attributes
            )
            self._start_write(request.invoke_id_and_priority, targets, request.block, env, ctx)
        elif isinstance(request, SetRequestWithDataBlock | ActionRequestWithPblock):
            self._continue_write(request.invoke_id_and_priority, request.block, env, ctx)
        elif isinstance(request, ActionRequestNormal):
            if request.method == HLS_METHOD:
                ret = ActionReturn(ActionResult.READ_WRITE_DENIED)
            else:
                ret = self.application.action(ctx, request.method, request.parameters)
            self._send(ActionResponseNormal(request.invoke_id_and_priority, ret).to_bytes(), env)
        elif isinstance(request, ActionRequestWithList):
            if len(request.methods) != len(request.parameters):
                self._exception(state_error=2, service_error=3)
                raise RemoteProtocolError("action-with-list: method and parameter counts differ")
            rets = tuple(
                ActionReturn(ActionResult.READ_WRITE_DENIED)
                if m == HLS_METHOD
                else self.application.action(ctx, m, p)
                for m, p in zip(request.methods, request.parameters, strict=True)
            )
            self._send(ActionResponseWithList(request.invoke_id_and_priority, rets).to_bytes(), env)
        elif isinstance(request, ActionRequestWithFirstPblock):
            self._start_write(
                request.invoke_id_and_priority, request.method, request.block, env, ctx
            )
        elif isinstance(request, ActionRequestNextPblock):
            self._send(
                ActionResponseNormal(
                    request.invoke_id_and_priority,
                    ActionReturn(ActionResult.NO_LONG_ACTION_IN_PROGRESS),
                ).to_bytes(),
                env,
            )
        else:
            self._exception(state_error=2, service_error=2)
            raise RemoteProtocolError(f"{type(request).__name__} is not a request a server serves")
        self._finish(ctx)
        return []

    def _answer_get(
        self, invoke: int, full: bytes, body: bytes | DataAccessResult, env: _Envelope
    ) -> None:
        limit = min(self._client_max_pdu, 0xFFFF)
        if len(full) + _overhead(env) <= limit or isinstance(body, DataAccessResult):
            self._send(full, env)
            return
        size = _block_size(limit, env)
        if size < 1:
            self._send(GetResponseNormal(invoke, DataAccessResult.OTHER_REASON).to_bytes(), env)
            return
        # DM-11: the response exceeds the client's PDU after ciphering overhead: GET-with-block.
        self._long_get = _LongGet(invoke, body, size, 0, env)
        self.machine.fire(Trigger.BLOCK_GET_STARTED, by_peer=True)
        self._send_block()

    def _send_block(self) -> None:
        lg = self._long_get
        assert lg is not None  # noqa: S101
        start = lg.sent * lg.block_size
        chunk = lg.data[start : start + lg.block_size]
        lg.sent += 1
        last = start + lg.block_size >= len(lg.data)
        self._send(
            GetResponseWithDataBlock(
                lg.invoke, DataBlockG(last, lg.sent, raw_data=chunk)
            ).to_bytes(),
            lg.env,
        )
        if last:
            self._long_get = None
            self.machine.fire(Trigger.BLOCK_LAST, by_peer=True)
        else:
            self.machine.fire(Trigger.BLOCK_NEXT, by_peer=True)

    def _next_block(self, request: GetRequestNext, env: _Envelope) -> None:
        lg = self._long_get
        inv = request.invoke_id_and_priority
        if lg is None:
            err = DataBlockG(
                True, request.block_number, error=DataAccessResult.NO_LONG_GET_IN_PROGRESS
            )
            self._send(GetResponseWithDataBlock(inv, err).to_bytes(), env)
            return
        if request.block_number != lg.sent or inv != lg.invoke:
            err = DataBlockG(
                True, request.block_number, error=DataAccessResult.DATA_BLOCK_NUMBER_INVALID
            )
            self._long_get = None
            self.machine.fire(Trigger.BLOCK_ABORTED, by_peer=True)
            self._send(GetResponseWithDataBlock(inv, err).to_bytes(), env)
            return
        lg.env = env
        self._send_block()

    def _start_write(
        self,
        invoke: int,
        targets: tuple[AttributeWithSelection, ...] | MethodDescriptor,
        block: DataBlockSA,
        env: _Envelope,
        ctx: RequestContext,
    ) -> None:
        if block.block_number != 1:
            self._write_failed(invoke, targets, block.block_number, env)
            return
        self._long_write = _LongWrite(invoke, targets, bytearray(), 1)
        trigger = (
            Trigger.BLOCK_ACTION_STARTED
            if isinstance(targets, MethodDescriptor)
            else Trigger.BLOCK_SET_STARTED
        )
        self.machine.fire(trigger, by_peer=True)
        self._accept_block(block, env, ctx)

    def _continue_write(
        self, invoke: int, block: DataBlockSA, env: _Envelope, ctx: RequestContext
    ) -> None:
        lw = self._long_write
        if lw is None or invoke != lw.invoke or block.block_number != lw.expected + 1:
            targets: tuple[AttributeWithSelection, ...] | MethodDescriptor = (
                () if lw is None else lw.targets
            )
            self._long_write = None
            if lw is not None:
                self.machine.fire(Trigger.BLOCK_ABORTED, by_peer=True)
            self._write_failed(invoke, targets, block.block_number, env)
            return
        lw.expected = block.block_number
        self._accept_block(block, env, ctx)

    def _accept_block(self, block: DataBlockSA, env: _Envelope, ctx: RequestContext) -> None:
        lw = self._long_write
        assert lw is not None  # noqa: S101
        lw.buffer += block.raw_data
        if len(lw.buffer) > self.settings.max_long_transfer:
            self._long_write = None
            self.machine.fire(Trigger.BLOCK_ABORTED, by_peer=True)
            self._write_failed(lw.invoke, lw.targets, block.block_number, env)
            return
        if not block.last_block:
            self.machine.fire(Trigger.BLOCK_NEXT, by_peer=True)
            if isinstance(lw.targets, MethodDescriptor):
                self._send(ActionResponseNextPblock(lw.invoke, block.block_number).to_bytes(), env)
            else:
                self._send(SetResponseDataBlock(lw.invoke, block.block_number).to_bytes(), env)
            return
        self._long_write = None
        self.machine.fire(Trigger.BLOCK_LAST, by_peer=True)
        raw = bytes(lw.buffer)
        if isinstance(lw.targets, MethodDescriptor):
            try:
                params = decode_data_bytes(raw)
            except DecodeError:
                ret = ActionReturn(ActionResult.TYPE_UNMATCHED)
            else:
                ret = self.application.action(ctx, lw.targets, params)
            self._send(ActionResponseNormal(lw.invoke, ret).to_bytes(), env)
            return
        try:
            if len(lw.targets) == 1:
                values: tuple[Data, ...] = (decode_data_bytes(raw),)
            else:
                r = Reader(raw)
                values = tuple(decode_data(r) for _ in range(r.count(1)))
                r.expect_end("set-with-list values")
                if len(values) != len(lw.targets):
                    raise DecodeError("value count differs from attribute count")
        except DecodeError:
            results = tuple(DataAccessResult.TYPE_UNMATCHED for _ in lw.targets)
        else:
            results = tuple(
                self.application.set(ctx, a, v) for a, v in zip(lw.targets, values, strict=True)
            )
        if len(lw.targets) == 1:
            self._send(
                SetResponseLastDataBlock(lw.invoke, results[0], block.block_number).to_bytes(), env
            )
        else:
            self._send(
                SetResponseLastDataBlockWithList(lw.invoke, results, block.block_number).to_bytes(),
                env,
            )

    def _write_failed(
        self,
        invoke: int,
        targets: tuple[AttributeWithSelection, ...] | MethodDescriptor,
        number: int,
        env: _Envelope,
    ) -> None:
        if isinstance(targets, MethodDescriptor):
            self._send(
                ActionResponseNormal(
                    invoke, ActionReturn(ActionResult.LONG_ACTION_ABORTED)
                ).to_bytes(),
                env,
            )
        else:
            self._send(
                SetResponseLastDataBlock(
                    invoke, DataAccessResult.LONG_SET_ABORTED, number
                ).to_bytes(),
                env,
            )


# ------------------------------------------------------------------ client


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """How a client associates and protects its requests."""

    client_sap: int = 1
    server_sap: int = 1
    application_context: ApplicationContext = ApplicationContext.LN_CIPHERED
    mechanism: Mechanism = Mechanism.HLS_GMAC
    ciphering: CipheringKind = CipheringKind.GENERAL_GLO
    """Kind used for requests; a dedicated kind also proposes a fresh dedicated key."""
    request_security: SecurityControl = SecurityControl()
    require_encrypted_responses: bool = True
    conformance: Conformance = Conformance.ln_default()
    max_receive_pdu_size: int = 0xFFFF
    challenge_length: int = 16
    expected_server_system_title: bytes | None = None

    def __post_init__(self) -> None:
        if not MIN_CHALLENGE <= self.challenge_length <= MAX_CHALLENGE:
            raise ConfigurationError("challenge length must be 8..64 bytes")
        if self.mechanism not in (Mechanism.LOWEST, *HLS_MECHANISMS):
            raise ConfigurationError(f"mechanism {self.mechanism.name} is not supported")
        if not self.request_security.authenticated:
            raise ConfigurationError("requests are always authenticated")

    @classmethod
    def public(cls) -> ClientSettings:
        """The public client (SAP 16): LN context, no security."""
        return cls(
            client_sap=16,
            application_context=ApplicationContext.LN,
            mechanism=Mechanism.LOWEST,
        )


@dataclass(slots=True)
class _Pending:
    kind: str
    invoke: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    expected_block: int = 1
    blocks: list[bytes] = field(default_factory=list)
    env: _Envelope = _PLAIN


class ClientConnection(_Endpoint):
    """The client (head-end) side of one DLMS/COSEM association."""

    def __init__(
        self,
        settings: ClientSettings,
        security: SecurityMaterial | None = None,
        *,
        rng: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        ciphered = settings.application_context in CIPHERED_CONTEXTS
        if (ciphered or settings.mechanism in HLS_MECHANISMS) and security is None:
            raise ConfigurationError("a ciphered or HLS association needs security material")
        if settings.mechanism is Mechanism.HLS_ECDSA and (
            security is None or security.signing_key is None or security.peer_verifying_key is None
        ):
            raise ConfigurationError("HLS-ECDSA needs a signing key and the server's key")
        super().__init__(Role.CLIENT)
        self.settings = settings
        self.security = security
        self._rng = rng
        self._protection = None if security is None else _Protection(security)
        self._ciphered = ciphered
        self._ctos = b""
        self._stoc = b""
        self._pending: _Pending | None = None
        self._invoke = 0
        self._dedicated_key: SecretKey | None = None
        self.negotiated: InitiateResponse | None = None

    # -- public API

    @property
    def server_system_title(self) -> bytes | None:
        """The meter's system title from its AARE (DH-2)."""
        return None if self._protection is None else self._protection.peer_title

    def abort(self) -> None:
        """The transport closed: forget the association."""
        self.machine.fire(Trigger.ABORTED, by_peer=False)
        self._pending = None

    def associate(self) -> None:
        """Queue the AARQ (DH-2: LN-ciphering context, calling-AP-title, mechanism, CtoS)."""
        s = self.settings
        self.machine.fire(Trigger.AARQ_SENT, by_peer=False)
        if s.ciphering.dedicated:
            self._dedicated_key = SecretKey(self._rng(32 if self._suite() == 2 else 16))
        init = InitiateRequest(
            dedicated_key=self._dedicated_key,
            proposed_conformance=s.conformance,
            client_max_receive_pdu_size=s.max_receive_pdu_size,
        ).to_bytes()
        if self._ciphered:
            assert self._protection is not None  # noqa: S101 - checked in __init__
            user_info = self._protection.wrap(
                init,
                _Envelope(
                    CipheringKind.SERVICE_GLO, replace(s.request_security, suite=self._suite())
                ),
            )
        else:
            user_info = init
        hls = s.mechanism in HLS_MECHANISMS
        self._ctos = self._rng(s.challenge_length) if hls else b""
        own_title = None if self.security is None else self.security.system_title
        self._out.append(
            AARQ(
                application_context=s.application_context,
                calling_ap_title=own_title if (self._ciphered or hls) else None,
                authentication=hls,
                mechanism=s.mechanism if s.mechanism is not Mechanism.LOWEST else None,
                calling_authentication_value=self._ctos if hls else None,
                user_information=user_info,
            ).to_bytes()
        )
        self._pending = _Pending("aarq")

    def get(self, attribute: AttributeDescriptor, access: SelectiveAccess | None = None) -> int:
        """Queue a GET; return its invoke id."""
        inv = self._start("get")
        self._send(GetRequestNormal(inv, AttributeWithSelection(attribute, access)).to_bytes())
        return inv & 0x0F

    def get_with_list(self, attributes: tuple[AttributeWithSelection, ...]) -> int:
        """Queue a GET-with-list; return its invoke id."""
        inv = self._start("get-list")
        self._send(GetRequestWithList(inv, attributes).to_bytes())
        return inv & 0x0F

    def set(
        self, attribute: AttributeDescriptor, value: Data, access: SelectiveAccess | None = None
    ) -> int:
        """Queue a SET, in blocks if it does not fit the server's PDU; return its invoke id."""
        inv = self._start("set")
        target = AttributeWithSelection(attribute, access)
        plain = SetRequestNormal(inv, target, value).to_bytes()
        if len(plain) + _overhead(self._request_envelope()) <= self._server_pdu():
            self._send(plain)
            return inv & 0x0F
        self._pending = _Pending(
            "set-block", inv, blocks=self._split(encode_data(value), len(target.to_bytes()))
        )
        first = self._pending.blocks[0]
        self._send(
            SetRequestWithFirstDataBlock(
                inv, target, DataBlockSA(len(self._pending.blocks) == 1, 1, first)
            ).to_bytes()
        )
        return inv & 0x0F

    def action(self, method: MethodDescriptor, parameters: Data | None = None) -> int:
        """Queue an ACTION, in blocks if it does not fit the server's PDU; return its invoke id."""
        inv = self._start("action")
        plain = ActionRequestNormal(inv, method, parameters).to_bytes()
        if (
            parameters is None
            or len(plain) + _overhead(self._request_envelope()) <= self._server_pdu()
        ):
            self._send(plain)
            return inv & 0x0F
        self._pending = _Pending(
            "action-block",
            inv,
            blocks=self._split(encode_data(parameters), len(method.to_bytes())),
        )
        first = self._pending.blocks[0]
        self._send(
            ActionRequestWithFirstPblock(
                inv, method, DataBlockSA(len(self._pending.blocks) == 1, 1, first)
            ).to_bytes()
        )
        return inv & 0x0F

    def release(self) -> None:
        """Queue the RLRQ; ciphered contexts add a ciphered InitiateRequest, as dlms-cosem does."""
        self.machine.fire(Trigger.RLRQ_SENT, by_peer=False)
        info = None
        if self._ciphered and self._protection is not None:
            init = InitiateRequest(
                proposed_conformance=self.settings.conformance,
                client_max_receive_pdu_size=self.settings.max_receive_pdu_size,
            ).to_bytes()
            info = self._protection.wrap(
                init,
                _Envelope(
                    CipheringKind.SERVICE_GLO,
                    replace(self.settings.request_security, suite=self._suite()),
                ),
            )
        self._out.append(RLRQ(user_information=info).to_bytes())
        self._pending = _Pending("release")

    def receive(self, data: bytes) -> list[Event]:
        """Process one APDU from the server.

        Raises:
            DecodeError: malformed APDU.
            AssociationRejectedError: the AARE refused the association.
            SecurityError: a tag, counter, title, HLS or protection check failed.
            RemoteProtocolError: an unexpected APDU.
        """
        apdu = decode_apdu(data)
        if isinstance(apdu, AARE):
            return self._on_aare(apdu)
        if isinstance(apdu, RLRE):
            return self._on_rlre(apdu)
        if isinstance(apdu, ExceptionResponse | ConfirmedServiceError):
            # Sent plain by design; it can only end the pending request, never carry data.
            self._pending = None
            return [ExceptionReceived(apdu)]
        if self.machine.state not in (
            AssociationState.ASSOCIATED,
            AssociationState.AWAITING_HLS_RESULT,
        ):
            raise RemoteProtocolError(f"{type(apdu).__name__} outside an association")
        if self._ciphered:
            if not _is_ciphered(apdu):
                raise InsufficientProtectionError("plain response in a ciphered association")
            assert self._protection is not None  # noqa: S101
            plain, _ = self._protection.unwrap(
                apdu, require_encryption=self.settings.require_encrypted_responses
            )
            response: XdlmsApdu = decode_xdlms(plain)
        elif _is_ciphered(apdu):
            raise InsufficientProtectionError(
                "ciphered response in an association without ciphering"
            )
        else:
            response = apdu  # type: ignore[assignment]
        if isinstance(response, DataNotification | EventNotification):
            return [NotificationReceived(response)]
        if self.machine.state is AssociationState.AWAITING_HLS_RESULT:
            return self._on_hls_result(response)
        return self._on_response(response)

    # -- internals

    def _suite(self) -> int:
        return 0 if self.security is None else self.security.suite

    def _server_pdu(self) -> int:
        size = 0xFFFF if self.negotiated is None else self.negotiated.server_max_receive_pdu_size
        return size or 0xFFFF

    def _split(self, raw: bytes, header: int) -> list[bytes]:
        """Cut ``raw`` so each block plus ``header`` descriptor bytes fits the server PDU."""
        size = _block_size(self._server_pdu(), self._request_envelope()) - header
        if size < 1:
            raise LocalProtocolError("the server's PDU size leaves no room for block data")
        return [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]

    def _start(self, kind: str) -> int:
        if self.machine.state is not AssociationState.ASSOCIATED:
            raise LocalProtocolError(
                f"{kind} needs an established association ({self.machine.state.value})"
            )
        if self._pending is not None:
            raise LocalProtocolError("a request is already outstanding")
        self._invoke = (self._invoke + 1) % 16
        self._pending = _Pending(kind, invoke_id_and_priority(self._invoke))
        return self._pending.invoke

    def _request_envelope(self, *, global_key: bool = False) -> _Envelope:
        if not self._ciphered:
            return _PLAIN
        kind = self.settings.ciphering
        if global_key and kind.dedicated:
            kind = (
                CipheringKind.SERVICE_GLO
                if kind is CipheringKind.SERVICE_DED
                else CipheringKind.GENERAL_GLO
            )
        return _Envelope(kind, replace(self.settings.request_security, suite=self._suite()))

    def _send(self, plain: bytes, *, global_key: bool = False) -> None:
        env = self._request_envelope(global_key=global_key)
        if env.kind is None or self._protection is None:
            self._out.append(plain)
        else:
            self._out.append(self._protection.wrap(plain, env))

    def _on_aare(self, aare: AARE) -> list[Event]:
        if self.machine.state is not AssociationState.AWAITING_AARE:
            raise RemoteProtocolError("AARE without an AARQ")
        s = self.settings
        if aare.result is not AssociationResult.ACCEPTED:
            self.machine.fire(Trigger.AARE_REJECTED, by_peer=True)
            self._pending = None
            raise AssociationRejectedError(
                f"association rejected: {aare.result.name}, diagnostic {aare.diagnostic}",
                result=aare.result,
                diagnostic=aare.diagnostic,
            )
        try:
            init = self._initiate_response(aare)
        except _AARE_ERRORS:
            self.machine.fire(Trigger.ABORTED, by_peer=True)
            self._pending = None
            raise
        self.negotiated = init
        hls = s.mechanism in HLS_MECHANISMS
        if not hls:
            self.machine.fire(Trigger.AARE_ACCEPTED, by_peer=True)
            self._pending = None
            return [
                AssociationEstablished(s.client_sap, self.server_system_title, s.mechanism, init)
            ]
        stoc = aare.responding_authentication_value or b""
        if (
            aare.diagnostic != AcseServiceUserDiagnostic.AUTHENTICATION_REQUIRED
            or aare.mechanism is not s.mechanism
        ):
            self.machine.fire(Trigger.ABORTED, by_peer=True)
            raise HlsFailedError("server accepted without the HLS authentication we asked for")
        if not MIN_CHALLENGE <= len(stoc) <= MAX_CHALLENGE:
            self.machine.fire(Trigger.ABORTED, by_peer=True)
            raise HlsFailedError(
                f"StoC must be {MIN_CHALLENGE}..{MAX_CHALLENGE} bytes, got {len(stoc)}"
            )
        self.machine.fire(Trigger.AARE_HLS_REQUIRED, by_peer=True)
        self._stoc = stoc
        self._send_hls_reply(stoc)
        return []

    def _initiate_response(self, aare: AARE) -> InitiateResponse:
        s = self.settings
        if self._protection is not None:
            title = aare.responding_ap_title
            if title is None or len(title) != SYSTEM_TITLE_LENGTH:
                if self._ciphered or s.mechanism in HLS_MECHANISMS:
                    raise RemoteProtocolError("AARE lacks the meter's 8-byte system title")
            elif (
                s.expected_server_system_title is not None
                and title != s.expected_server_system_title
            ):
                # DH-7: an unexpected system title is a security event, not a detail.
                raise UnexpectedSystemTitleError(
                    f"meter answered with system title {title.hex()}, "
                    f"expected {s.expected_server_system_title.hex()}"
                )
            self._protection.peer_title = title
        if aare.user_information is None:
            raise RemoteProtocolError("AARE without InitiateResponse")
        inner = decode_apdu(aare.user_information)
        if self._ciphered:
            if not (isinstance(inner, ServiceCiphered) and inner.tag == 0x28):
                raise InsufficientProtectionError("ciphered context but plain InitiateResponse")
            assert self._protection is not None  # noqa: S101
            plain, _ = self._protection.unwrap(
                inner, require_encryption=s.require_encrypted_responses
            )
            inner = decode_xdlms(plain)
        if not isinstance(inner, InitiateResponse):
            raise RemoteProtocolError(f"AARE user information holds {type(inner).__name__}")
        return inner

    def _send_hls_reply(self, stoc: bytes) -> None:
        m = self.security
        assert m is not None and self._protection is not None  # noqa: S101
        server_title = self._protection.peer_title or b""
        if self.settings.mechanism is Mechanism.HLS_GMAC:
            if m.authentication_key is None:
                raise ConfigurationError("HLS-GMAC needs an authentication key")
            reply = hls_gmac(
                stoc,
                system_title=m.system_title,
                invocation_counter=m.send_counter.issue(),
                key=m.unicast_gcm(),
                authentication_key=m.authentication_key,
                suite=m.suite,
            )
        else:
            assert m.signing_key is not None  # noqa: S101
            reply = hls_ecdsa_sign(
                m.signing_key,
                own_title=m.system_title,
                peer_title=server_title,
                own_challenge_of_peer=stoc,
                peer_challenge=self._ctos,
            )
        self._invoke = (self._invoke + 1) % 16
        inv = invoke_id_and_priority(self._invoke)
        self._pending = _Pending("hls", inv)
        # Reference §1.7: the HLS reply uses the global key, even with a dedicated key.
        self._send(
            ActionRequestNormal(inv, HLS_METHOD, OctetString(reply)).to_bytes(), global_key=True
        )
        self.machine.fire(Trigger.HLS_REPLY_SENT, by_peer=False)

    def _on_hls_result(self, response: XdlmsApdu) -> list[Event]:
        m = self.security
        assert m is not None and self._protection is not None  # noqa: S101
        self._pending = None
        try:
            if (
                not isinstance(response, ActionResponseNormal)
                or response.response.result is not ActionResult.SUCCESS
            ):
                raise HlsFailedError("meter refused our HLS reply")
            ret = response.response.return_parameters
            if not isinstance(ret, OctetString):
                raise HlsFailedError("meter's f(CtoS) is missing")
            server_title = self._protection.peer_title or b""
            # DH-3: verify f(CtoS) and fail closed.
            if self.settings.mechanism is Mechanism.HLS_GMAC:
                assert m.authentication_key is not None  # noqa: S101
                verify_hls_gmac(
                    ret.value,
                    self._ctos,
                    system_title=server_title,
                    key=m.unicast_gcm(),
                    authentication_key=m.authentication_key,
                    suite=m.suite,
                )
            else:
                assert m.peer_verifying_key is not None  # noqa: S101
                hls_ecdsa_verify(
                    m.peer_verifying_key,
                    ret.value,
                    signer_title=server_title,
                    other_title=m.system_title,
                    answered_challenge=self._ctos,
                    signer_challenge=self._stoc,
                )
        except HlsFailedError:
            self.machine.fire(Trigger.HLS_FAILED, by_peer=True)
            raise
        self.machine.fire(Trigger.HLS_SUCCEEDED, by_peer=True)
        assert self.negotiated is not None  # noqa: S101
        if self._dedicated_key is not None:
            self._protection.dedicated = GcmKey(self._dedicated_key)
        return [
            AssociationEstablished(
                self.settings.client_sap, server_title, self.settings.mechanism, self.negotiated
            )
        ]

    def _on_rlre(self, rlre: RLRE) -> list[Event]:
        if self.machine.state is not AssociationState.AWAITING_RLRE:
            raise RemoteProtocolError("RLRE without an RLRQ")
        self.machine.fire(Trigger.RELEASED, by_peer=True)
        self._pending = None
        if rlre.user_information is not None and self._ciphered and self._protection is not None:
            inner = decode_apdu(rlre.user_information)
            if isinstance(inner, ServiceCiphered):
                self._protection.unwrap(
                    inner, require_encryption=self.settings.require_encrypted_responses
                )
        if self._protection is not None:
            self._protection.dedicated = None
            self._protection.ded_counter = ReceiveCounter()
        return [AssociationReleased()]

    def _on_response(self, response: XdlmsApdu) -> list[Event]:
        p = self._pending
        if p is None:
            raise RemoteProtocolError(f"unsolicited {type(response).__name__}")
        inv = getattr(response, "invoke_id_and_priority", None)
        if inv is not None and (inv & 0x0F) != (p.invoke & 0x0F):
            raise RemoteProtocolError("response invoke id does not match the request")
        ident = p.invoke & 0x0F
        if p.kind == "get" and isinstance(response, GetResponseNormal):
            self._pending = None
            return [GetCompleted(ident, response.result)]
        if p.kind == "get-list" and isinstance(response, GetResponseWithList):
            self._pending = None
            return [GetListCompleted(ident, response.results)]
        if p.kind in ("get", "get-list") and isinstance(response, GetResponseWithDataBlock):
            return self._on_get_block(p, response.block)
        if p.kind == "set" and isinstance(response, SetResponseNormal):
            self._pending = None
            return [SetCompleted(ident, (response.result,))]
        if p.kind == "set-block" and isinstance(response, SetResponseDataBlock):
            return self._next_write_block(p, response.block_number)
        if p.kind == "set-block" and isinstance(response, SetResponseLastDataBlock):
            self._pending = None
            return [SetCompleted(ident, (response.result,))]
        if p.kind == "action-block" and isinstance(response, ActionResponseNextPblock):
            return self._next_write_block(p, response.block_number)
        if p.kind in ("action", "action-block") and isinstance(response, ActionResponseNormal):
            self._pending = None
            return [
                ActionCompleted(
                    ident, response.response.result, response.response.return_parameters
                )
            ]
        raise RemoteProtocolError(f"{type(response).__name__} does not answer a pending {p.kind}")

    def _on_get_block(self, p: _Pending, block: DataBlockG) -> list[Event]:
        ident = p.invoke & 0x0F
        if block.error is not None:
            self._pending = None
            return [GetCompleted(ident, block.error)]
        if block.block_number != p.expected_block:
            self._pending = None
            raise RemoteProtocolError(
                f"block {block.block_number} arrived, expected {p.expected_block}"
            )
        p.buffer += block.raw_data or b""
        if len(p.buffer) > (1 << 26):
            self._pending = None
            raise RemoteProtocolError("long GET larger than 64 MiB")
        if not block.last_block:
            p.expected_block += 1
            self._send(GetRequestNext(p.invoke, block.block_number).to_bytes())
            return []
        self._pending = None
        raw = bytes(p.buffer)
        if p.kind == "get":
            return [GetCompleted(ident, decode_data_bytes(raw))]
        r = Reader(raw)
        results = decode_get_results(r)
        r.expect_end("get-with-list blocks")
        return [GetListCompleted(ident, results)]

    def _next_write_block(self, p: _Pending, acknowledged: int) -> list[Event]:
        if acknowledged != p.expected_block or acknowledged >= len(p.blocks):
            self._pending = None
            raise RemoteProtocolError(
                f"server acknowledged block {acknowledged}, expected {p.expected_block}"
            )
        p.expected_block += 1
        n = p.expected_block
        block = DataBlockSA(n == len(p.blocks), n, p.blocks[n - 1])
        if p.kind == "set-block":
            self._send(SetRequestWithDataBlock(p.invoke, block).to_bytes())
        else:
            self._send(ActionRequestWithPblock(p.invoke, block).to_bytes())
        return []
