"""The sans-IO DLMS/COSEM server side: :class:`ServerConnection`.

See :mod:`meterguard.cosem.connection` for the rules both sides follow. No IO, no clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

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
from meterguard.cosem.association import AssociationState, Role, Trigger
from meterguard.cosem.axdr import OctetString, encode_data
from meterguard.cosem.events import AssociationEstablished, AssociationReleased, Event
from meterguard.cosem.protection import (
    CIPHERED_CONTEXTS,
    HLS_MECHANISMS,
    HLS_METHOD,
    MAX_CHALLENGE,
    MIN_CHALLENGE,
    MIN_PDU_SIZE,
    PLAIN,
    Endpoint,
    Envelope,
    Protection,
    block_size,
    is_ciphered,
    overhead,
)
from meterguard.cosem.security import (
    SYSTEM_TITLE_LENGTH,
    CipheringKind,
    GeneralCiphering,
    GeneralGloCiphering,
    SecurityControl,
    ServiceCiphered,
    hls_ecdsa_sign,
    hls_ecdsa_verify,
    hls_gmac,
    verify_hls_gmac,
)
from meterguard.cosem.server_app import (
    AssociationPolicy,
    CosemServerApplication,
    LongGet,
    LongWrite,
    RequestContext,
    ServerSettings,
    complete_write,
    write_aborted,
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
    AttributeWithSelection,
    ConfirmedServiceError,
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
    InitiateRequest,
    InitiateResponse,
    MethodDescriptor,
    SetRequestNormal,
    SetRequestWithDataBlock,
    SetRequestWithFirstDataBlock,
    SetRequestWithList,
    SetRequestWithListAndFirstDataBlock,
    SetResponseDataBlock,
    SetResponseNormal,
    SetResponseWithList,
    decode_xdlms,
    encode_get_results,
)
from meterguard.crypto.aead import GcmKey
from meterguard.errors import (
    ConfigurationError,
    DecodeError,
    HlsFailedError,
    InsufficientProtectionError,
    LocalProtocolError,
    RemoteProtocolError,
    ReplayError,
    SecurityError,
)

__all__ = ["ServerConnection"]


class ServerConnection(Endpoint):
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
        self._protection: Protection | None = None
        self._client_sap: int | None = None
        self._ctos = b""
        self._stoc = b""
        self._client_max_pdu = 0xFFFF
        self._long_get: LongGet | None = None
        self._long_write: LongWrite | None = None

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
        env = PLAIN
        if self._policy.application_context in CIPHERED_CONTEXTS:
            env = Envelope(CipheringKind.GENERAL_GLO, SecurityControl(suite=self._suite()))
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
        protection = None if policy.security is None else Protection(policy.security)
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
                Envelope(CipheringKind.SERVICE_GLO, SecurityControl(suite=self._suite())),
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
        self, user_information: bytes, protection: Protection | None, ciphered: bool
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
                    Envelope(CipheringKind.SERVICE_GLO, SecurityControl(suite=self._suite())),
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

    def _on_hls_pending(self, request: Apdu, env: Envelope) -> list[Event]:
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

    def _unwrap(self, apdu: Apdu) -> tuple[bytes, Envelope]:
        policy = self._policy
        assert policy is not None  # noqa: S101 - guarded by the state check
        ciphered_context = policy.application_context in CIPHERED_CONTEXTS
        if not is_ciphered(apdu):
            if ciphered_context:
                self._exception(state_error=1, service_error=1)
                raise InsufficientProtectionError("plain request in a ciphered association")
            return b"", PLAIN
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

    def _send(self, plain: bytes, env: Envelope) -> None:
        if env.kind is None:
            self._out.append(plain)
            return
        assert self._protection is not None  # noqa: S101 - a ciphered envelope implies protection
        self._out.append(self._protection.wrap(plain, env))

    def _context(self, env: Envelope) -> RequestContext:
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

    def _serve(self, request: Apdu, env: Envelope) -> list[Event]:
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
        self, invoke: int, full: bytes, body: bytes | DataAccessResult, env: Envelope
    ) -> None:
        limit = min(self._client_max_pdu, 0xFFFF)
        if len(full) + overhead(env) <= limit or isinstance(body, DataAccessResult):
            self._send(full, env)
            return
        size = block_size(limit, env)
        if size < 1:
            self._send(GetResponseNormal(invoke, DataAccessResult.OTHER_REASON).to_bytes(), env)
            return
        # DM-11: the response exceeds the client's PDU after ciphering overhead: GET-with-block.
        self._long_get = LongGet(invoke, body, size, 0, env)
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

    def _next_block(self, request: GetRequestNext, env: Envelope) -> None:
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
        env: Envelope,
        ctx: RequestContext,
    ) -> None:
        if block.block_number != 1:
            self._write_failed(invoke, targets, block.block_number, env)
            return
        self._long_write = LongWrite(invoke, targets, bytearray(), 1)
        trigger = (
            Trigger.BLOCK_ACTION_STARTED
            if isinstance(targets, MethodDescriptor)
            else Trigger.BLOCK_SET_STARTED
        )
        self.machine.fire(trigger, by_peer=True)
        self._accept_block(block, env, ctx)

    def _continue_write(
        self, invoke: int, block: DataBlockSA, env: Envelope, ctx: RequestContext
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

    def _accept_block(self, block: DataBlockSA, env: Envelope, ctx: RequestContext) -> None:
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
        response = complete_write(
            self.application, ctx, lw.invoke, lw.targets, bytes(lw.buffer), block.block_number
        )
        self._send(response, env)

    def _write_failed(
        self,
        invoke: int,
        targets: tuple[AttributeWithSelection, ...] | MethodDescriptor,
        number: int,
        env: Envelope,
    ) -> None:
        self._send(write_aborted(invoke, targets, number), env)
