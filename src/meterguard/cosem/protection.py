"""Protection of a connection's APDUs: envelope kinds, block sizes, the shared endpoint.

See :mod:`meterguard.cosem.connection` for the rules both sides follow. No IO, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from meterguard.cosem.acse import (
    ApplicationContext,
    Mechanism,
)
from meterguard.cosem.apdu import Apdu
from meterguard.cosem.association import AssociationMachine, AssociationState, Role
from meterguard.cosem.counters import ReceiveCounter
from meterguard.cosem.keying import SecurityMaterial
from meterguard.cosem.obis import Obis
from meterguard.cosem.security import (
    ApduProtector,
    ApduUnprotector,
    CipheringKind,
    GeneralCiphering,
    GeneralGloCiphering,
    SecurityControl,
    ServiceCiphered,
    protect_general,
    unprotect_general,
)
from meterguard.cosem.xdlms import (
    MethodDescriptor,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    DecodeError,
    InsufficientProtectionError,
    LocalProtocolError,
    RemoteProtocolError,
    SecurityError,
    UnexpectedSystemTitleError,
)

__all__ = [
    "AARE_ERRORS",
    "BLOCK_HEADER",
    "CIPHERED_CONTEXTS",
    "GENERAL_CIPHERING_OVERHEAD",
    "HLS_MECHANISMS",
    "HLS_METHOD",
    "MAX_CHALLENGE",
    "MIN_CHALLENGE",
    "MIN_PDU_SIZE",
    "OVERHEAD",
    "PLAIN",
    "Endpoint",
    "Envelope",
    "Protection",
    "block_size",
    "is_ciphered",
    "overhead",
]

HLS_METHOD = MethodDescriptor(15, Obis(0, 0, 40, 0, 0, 255), 1)
"""Association LN, method 1: reply_to_HLS_authentication (HLS pass 3)."""

HLS_MECHANISMS = frozenset({Mechanism.HLS_GMAC, Mechanism.HLS_ECDSA})
MIN_CHALLENGE, MAX_CHALLENGE = 8, 64
MIN_PDU_SIZE = 64
CIPHERED_CONTEXTS = frozenset({ApplicationContext.LN_CIPHERED, ApplicationContext.SN_CIPHERED})

# Worst-case bytes that ciphering adds around an APDU, per kind:
# tag + length(3) + SC + IC + GCM tag; general-glo adds the 8-byte system title and its length.
OVERHEAD = {
    None: 0,
    CipheringKind.SERVICE_GLO: 1 + 3 + 5 + 12,
    CipheringKind.SERVICE_DED: 1 + 3 + 5 + 12,
    CipheringKind.GENERAL_GLO: 1 + 1 + 8 + 3 + 5 + 12,
    CipheringKind.GENERAL_DED: 1 + 1 + 8 + 3 + 5 + 12,
}
GENERAL_CIPHERING_OVERHEAD = 1 + 5 * 4 + 2 * 8 + 3 + 3 + 5 + 12  # plus transaction id etc.
BLOCK_HEADER = 3 + 1 + 4 + 1 + 3  # tag, choice, invoke, last, number, choice/len


@dataclass(frozen=True, slots=True)
class Envelope:
    """How an APDU arrived, so that the answer goes back in the same kind."""

    kind: CipheringKind | None
    security: SecurityControl | None = None
    general: GeneralCiphering | None = None


PLAIN = Envelope(None)
AARE_ERRORS = (SecurityError, RemoteProtocolError, DecodeError)


def overhead(env: Envelope) -> int:
    """Bytes that protecting an APDU in ``env`` adds (header, tag, general-ciphering fields)."""
    if env.general is not None:
        return (
            GENERAL_CIPHERING_OVERHEAD
            + len(env.general.transaction_id)
            + len(env.general.other_information)
            + len(env.general.date_time)
        )
    return OVERHEAD[env.kind]


class Protection:
    """Wraps and unwraps APDUs for one side of one association."""

    __slots__ = (
        "_protectors",
        "_unprotectors",
        "ded_counter",
        "dedicated",
        "material",
        "peer_title",
    )

    def __init__(self, material: SecurityMaterial) -> None:
        self.material = material
        self._protectors: dict[tuple[GcmKey, SecurityControl, SecretKey | None], ApduProtector] = {}
        self._unprotectors: dict[
            tuple[GcmKey, SecretKey | None, bool, bool, bytes], ApduUnprotector
        ] = {}
        self.peer_title: bytes | None = None
        self.dedicated: GcmKey | None = None
        self.ded_counter = ReceiveCounter()

    def wrap(self, plain: bytes, env: Envelope) -> bytes:
        """Protect ``plain`` in the kind of ``env`` (the kind the peer asked in, §1.6)."""
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
        protector = _cached(
            self._protectors,
            (key, sc, m.authentication_key),
            lambda: ApduProtector(
                key=key,
                authentication_key=m.authentication_key,
                system_title=m.system_title,
                security=sc,
            ),
        )
        return protector.protect(plain, ic, env.kind)

    def unwrap(self, apdu: Apdu, *, require_encryption: bool) -> tuple[bytes, Envelope]:
        """Check and decipher one ciphered APDU (DM-6 / DH-4 order: title, policy, counter, tag).

        Service-specific and general-glo/ded APDUs go through the one verifier the ingest hot
        path uses too (:class:`~meterguard.cosem.security.ApduUnprotector`); only
        general-ciphering with key-info, which no push uses, has checks of its own here.
        """
        m = self.material
        if self.peer_title is None:
            raise RemoteProtocolError("ciphered APDU before the peer's system title is known")
        if isinstance(apdu, ServiceCiphered | GeneralGloCiphering):
            sc = apdu.security
            if apdu.dedicated:
                if self.dedicated is None:
                    raise InsufficientProtectionError(
                        "dedicated ciphering but no dedicated key agreed"
                    )
                key, counter = self.dedicated, self.ded_counter
            elif sc.broadcast:
                key, counter = m.broadcast_gcm(), m.peer_broadcast_counter
            else:
                key, counter = m.unicast_gcm(), m.peer_counter
            verifier = self._unprotector(key, broadcast=sc.broadcast, encrypt=require_encryption)
            _, plain = verifier.unprotect(apdu.to_bytes(), counter)
            return plain, Envelope(apdu.kind, sc)
        if not isinstance(apdu, GeneralCiphering):
            raise RemoteProtocolError(f"{type(apdu).__name__} is not a ciphered APDU")
        if apdu.originator_system_title != self.peer_title:
            raise UnexpectedSystemTitleError(
                f"APDU from system title {apdu.originator_system_title.hex()}, "
                f"expected {self.peer_title.hex()}"
            )
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
        broadcast = sc.broadcast
        if apdu.key_info is not None:
            broadcast = apdu.key_info.choice == 0 and apdu.key_info.key_id == 1
        if broadcast:
            key, counter = m.broadcast_gcm(), m.peer_broadcast_counter
        else:
            key, counter = m.unicast_gcm(), m.peer_counter
        counter.check(apdu.invocation_counter)  # replay: cheap check before any crypto
        plain = unprotect_general(apdu, key=key, authentication_key=m.authentication_key)
        counter.commit(apdu.invocation_counter)  # only after the tag verified
        return plain, Envelope(CipheringKind.GENERAL_GLO, sc, general=apdu)

    def _unprotector(self, key: GcmKey, *, broadcast: bool, encrypt: bool) -> ApduUnprotector:
        m = self.material
        assert self.peer_title is not None  # noqa: S101 - checked by the caller
        title = self.peer_title
        return _cached(
            self._unprotectors,
            (key, m.authentication_key, broadcast, encrypt, title),
            lambda: ApduUnprotector(
                key=key,
                authentication_key=m.authentication_key,
                peer_system_title=title,
                suite=m.suite,
                require_encryption=encrypt,
                broadcast=broadcast,
            ),
        )


K = TypeVar("K")
V = TypeVar("V")


def _cached(cache: dict[K, V], key: K, make: Callable[[], V]) -> V:
    """``cache[key]``, made on first use; a cache that grew past 8 starts over (keys rotated)."""
    value = cache.get(key)
    if value is None:
        if len(cache) > 8:
            cache.clear()
        value = cache[key] = make()
    return value


def is_ciphered(apdu: Apdu) -> bool:
    """Is this APDU one of the ciphered kinds?"""
    return isinstance(apdu, ServiceCiphered | GeneralGloCiphering | GeneralCiphering)


def block_size(max_pdu: int, env: Envelope) -> int:
    """Payload bytes per block so that a protected block fits ``max_pdu`` (DM-11)."""
    return max_pdu - overhead(env) - BLOCK_HEADER


class Endpoint:
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
