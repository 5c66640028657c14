"""The sans-IO DLMS/COSEM client side: :class:`ClientConnection` and its settings.

See :mod:`meterguard.cosem.connection` for the rules both sides follow. No IO, no clock.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace

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
)
from meterguard.cosem.apdu import decode_apdu
from meterguard.cosem.association import ANSWERS, Answer, AssociationState, Request, Role, Trigger
from meterguard.cosem.axdr import Data, OctetString, decode_data_bytes, encode_data
from meterguard.cosem.counters import ReceiveCounter
from meterguard.cosem.events import (
    ActionCompleted,
    AssociationEstablished,
    AssociationReleased,
    Event,
    ExceptionReceived,
    GetCompleted,
    GetListCompleted,
    NotificationReceived,
    SetCompleted,
)
from meterguard.cosem.keying import SecurityMaterial
from meterguard.cosem.protection import (
    AARE_ERRORS,
    CIPHERED_CONTEXTS,
    HLS_MECHANISMS,
    HLS_METHOD,
    MAX_CHALLENGE,
    MIN_CHALLENGE,
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
    SecurityControl,
    ServiceCiphered,
    hls_ecdsa_sign,
    hls_ecdsa_verify,
    hls_gmac,
    verify_hls_gmac,
)
from meterguard.cosem.xdlms import (
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithPblock,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResult,
    AttributeDescriptor,
    AttributeWithSelection,
    ConfirmedServiceError,
    Conformance,
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
    SelectiveAccess,
    SetRequestNormal,
    SetRequestWithDataBlock,
    SetRequestWithFirstDataBlock,
    SetResponseDataBlock,
    SetResponseLastDataBlock,
    SetResponseNormal,
    XdlmsApdu,
    decode_get_results,
    decode_xdlms,
    invoke_id_and_priority,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    AssociationRejectedError,
    ConfigurationError,
    HlsFailedError,
    InsufficientProtectionError,
    LocalProtocolError,
    RemoteProtocolError,
    UnexpectedSystemTitleError,
)

__all__ = ["ClientConnection", "ClientSettings"]


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
    kind: Request
    invoke: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    expected_block: int = 1
    blocks: list[bytes] = field(default_factory=list)
    env: Envelope = PLAIN


class ClientConnection(Endpoint):
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
        self._protection = None if security is None else Protection(security)
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
                Envelope(
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
        self._pending = _Pending(Request.AARQ)

    def get(self, attribute: AttributeDescriptor, access: SelectiveAccess | None = None) -> int:
        """Queue a GET; return its invoke id."""
        inv = self._start(Request.GET)
        self._send(GetRequestNormal(inv, AttributeWithSelection(attribute, access)).to_bytes())
        return inv & 0x0F

    def get_with_list(self, attributes: tuple[AttributeWithSelection, ...]) -> int:
        """Queue a GET-with-list; return its invoke id."""
        inv = self._start(Request.GET_LIST)
        self._send(GetRequestWithList(inv, attributes).to_bytes())
        return inv & 0x0F

    def set(
        self, attribute: AttributeDescriptor, value: Data, access: SelectiveAccess | None = None
    ) -> int:
        """Queue a SET, in blocks if it does not fit the server's PDU; return its invoke id."""
        inv = self._start(Request.SET)
        target = AttributeWithSelection(attribute, access)
        plain = SetRequestNormal(inv, target, value).to_bytes()
        if len(plain) + overhead(self._request_envelope()) <= self._server_pdu():
            self._send(plain)
            return inv & 0x0F
        self._pending = _Pending(
            Request.SET_BLOCK, inv, blocks=self._split(encode_data(value), len(target.to_bytes()))
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
        inv = self._start(Request.ACTION)
        plain = ActionRequestNormal(inv, method, parameters).to_bytes()
        if (
            parameters is None
            or len(plain) + overhead(self._request_envelope()) <= self._server_pdu()
        ):
            self._send(plain)
            return inv & 0x0F
        self._pending = _Pending(
            Request.ACTION_BLOCK,
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
                Envelope(
                    CipheringKind.SERVICE_GLO,
                    replace(self.settings.request_security, suite=self._suite()),
                ),
            )
        self._out.append(RLRQ(user_information=info).to_bytes())
        self._pending = _Pending(Request.RELEASE)

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
            if not is_ciphered(apdu):
                raise InsufficientProtectionError("plain response in a ciphered association")
            assert self._protection is not None  # noqa: S101
            plain, _ = self._protection.unwrap(
                apdu, require_encryption=self.settings.require_encrypted_responses
            )
            response: XdlmsApdu = decode_xdlms(plain)
        elif is_ciphered(apdu):
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
        size = block_size(self._server_pdu(), self._request_envelope()) - header
        if size < 1:
            raise LocalProtocolError("the server's PDU size leaves no room for block data")
        return [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]

    def _start(self, kind: Request) -> int:
        if self.machine.state is not AssociationState.ASSOCIATED:
            raise LocalProtocolError(
                f"{kind} needs an established association ({self.machine.state.value})"
            )
        if self._pending is not None:
            raise LocalProtocolError("a request is already outstanding")
        self._invoke = (self._invoke + 1) % 16
        self._pending = _Pending(kind, invoke_id_and_priority(self._invoke))
        return self._pending.invoke

    def _request_envelope(self, *, global_key: bool = False) -> Envelope:
        if not self._ciphered:
            return PLAIN
        kind = self.settings.ciphering
        if global_key and kind.dedicated:
            kind = (
                CipheringKind.SERVICE_GLO
                if kind is CipheringKind.SERVICE_DED
                else CipheringKind.GENERAL_GLO
            )
        return Envelope(kind, replace(self.settings.request_security, suite=self._suite()))

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
        except AARE_ERRORS:
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
        self._pending = _Pending(Request.HLS, inv)
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
        answer = ANSWERS.get((p.kind, type(response)))
        if answer is None:
            raise RemoteProtocolError(
                f"{type(response).__name__} does not answer a pending {p.kind.value}"
            )
        if answer is Answer.GET_BLOCK:
            assert isinstance(response, GetResponseWithDataBlock)  # noqa: S101 - the table's row
            return self._on_get_block(p, response.block)
        if answer is Answer.WRITE_BLOCK_ACKNOWLEDGED:
            assert isinstance(response, SetResponseDataBlock | ActionResponseNextPblock)  # noqa: S101
            return self._next_write_block(p, response.block_number)
        self._pending = None
        if isinstance(response, GetResponseNormal):
            return [GetCompleted(ident, response.result)]
        if isinstance(response, GetResponseWithList):
            return [GetListCompleted(ident, response.results)]
        if isinstance(response, SetResponseNormal | SetResponseLastDataBlock):
            return [SetCompleted(ident, (response.result,))]
        assert isinstance(response, ActionResponseNormal)  # noqa: S101 - the table's last rows
        return [
            ActionCompleted(ident, response.response.result, response.response.return_parameters)
        ]

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
        if p.kind is Request.GET:
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
        if p.kind is Request.SET_BLOCK:
            self._send(SetRequestWithDataBlock(p.invoke, block).to_bytes())
        else:
            self._send(ActionRequestWithPblock(p.invoke, block).to_bytes())
        return []
