"""DLMS/COSEM application-layer security (Green Book §9.2): ciphering, HLS and signing.

What is here:

* :class:`SecurityControl`, the SC byte (suite, authentication, encryption,
  broadcast key, compression).
* The ciphered APDU envelopes: service-specific glo/ded (:class:`ServiceCiphered`),
  general-glo/ded-ciphering (:class:`GeneralGloCiphering`), general-ciphering with
  key-info (:class:`GeneralCiphering`) and general-signing (:class:`GeneralSigning`).
* The recipes :func:`protect` / :func:`unprotect` (AES-GCM with the 12-byte tag,
  IV = originator system title ‖ IC, AAD per §1.5 of the reference),
  HLS mechanism 5 (:func:`hls_gmac`, :func:`verify_hls_gmac`) and 7
  (:func:`hls_ecdsa_sign`, :func:`hls_ecdsa_verify`), and general-signing
  (:func:`sign_general`, :func:`verify_general_signing`).

Every verification fails closed with a :class:`~meterguard.errors.SecurityError`
subclass and returns no plaintext on failure. Counter policy (replay checks) is
in :mod:`meterguard.cosem.counters`; which protection an association demands is
decided in :mod:`meterguard.cosem.connection`. Nothing here does IO.

Two layouts are marked *self-consistent* because no public vector covers them:
the AAD of general-ciphering (0xDD) appends transaction-id, originator and
recipient system titles, date-time and other-information, each with its A-XDR
length (as Gurux does); the general-signing signature covers those five fields
and the content, each with its length, excluding the 0xDF tag.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meterguard.cosem._codec import Reader, encode_length, pack_sized, pack_u32
from meterguard.cosem.counters import MAX_COUNTER, CounterCheck
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import SigningKey, VerifyingKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    AuthenticationFailedError,
    ConfigurationError,
    DecodeError,
    HlsFailedError,
    InsufficientProtectionError,
    SignatureInvalidError,
    UnexpectedSystemTitleError,
)

__all__ = [
    "SYSTEM_TITLE_LENGTH",
    "CipheringKind",
    "GeneralCiphering",
    "GeneralGloCiphering",
    "GeneralSigning",
    "KeyInfo",
    "SecurityControl",
    "ServiceCiphered",
    "glo_tag_for",
    "hls_ecdsa_sign",
    "hls_ecdsa_verify",
    "hls_gmac",
    "plain_tag_for",
    "protect",
    "sign_general",
    "unprotect",
    "verify_general_signing",
    "verify_hls_gmac",
]

SYSTEM_TITLE_LENGTH = 8


class CipheringKind(enum.Enum):
    """How an APDU is wrapped."""

    SERVICE_GLO = "glo"
    """Service-specific global ciphering (C8, C9, CB, ... and 21/28 in the AARQ/AARE)."""
    SERVICE_DED = "ded"
    """Service-specific dedicated ciphering (D0, D1, D3, ...)."""
    GENERAL_GLO = "general-glo"
    """general-glo-ciphering (DB): carries the originator's system title."""
    GENERAL_DED = "general-ded"
    """general-ded-ciphering (DC)."""

    @property
    def dedicated(self) -> bool:
        """True for the dedicated-key kinds."""
        return self in (CipheringKind.SERVICE_DED, CipheringKind.GENERAL_DED)


@dataclass(frozen=True, slots=True)
class SecurityControl:
    """The security control byte (Green Book §9.2.7.2.3)."""

    suite: int = 0
    authenticated: bool = True
    encrypted: bool = True
    broadcast: bool = False
    compressed: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.suite <= 15:
            raise ConfigurationError("security suite must fit in 4 bits")

    def to_byte(self) -> int:
        """Return the SC byte."""
        return (
            self.suite
            | (0x10 if self.authenticated else 0)
            | (0x20 if self.encrypted else 0)
            | (0x40 if self.broadcast else 0)
            | (0x80 if self.compressed else 0)
        )

    @classmethod
    def from_byte(cls, b: int) -> SecurityControl:
        """Parse an SC byte."""
        return cls(
            suite=b & 0x0F,
            authenticated=bool(b & 0x10),
            encrypted=bool(b & 0x20),
            broadcast=bool(b & 0x40),
            compressed=bool(b & 0x80),
        )

    def __str__(self) -> str:
        what = {
            (True, True): "authenticated+encrypted",
            (True, False): "authenticated",
            (False, True): "encrypted",
            (False, False): "none",
        }[(self.authenticated, self.encrypted)]
        key = "broadcast" if self.broadcast else "unicast"
        comp = ", compressed" if self.compressed else ""
        return f"SC=0x{self.to_byte():02X} (suite {self.suite}, {what}, {key} key{comp})"


# Plain tag -> (glo tag, ded tag). Green Book tables; reference §1.6.
_CIPHER_TAGS: dict[int, tuple[int, int | None]] = {
    0x01: (0x21, 0x41),  # initiate-request
    0x08: (0x28, 0x48),  # initiate-response
    0x0E: (0x2E, 0x4E),  # confirmed-service-error
    0xC0: (0xC8, 0xD0),  # get-request
    0xC1: (0xC9, 0xD1),  # set-request
    0xC2: (0xCA, 0xD2),  # event-notification-request
    0xC3: (0xCB, 0xD3),  # action-request
    0xC4: (0xCC, 0xD4),  # get-response
    0xC5: (0xCD, 0xD5),  # set-response
    0xC7: (0xCF, 0xD7),  # action-response
}
_GLO_TO_PLAIN = {glo: plain for plain, (glo, _) in _CIPHER_TAGS.items()}
_DED_TO_PLAIN = {ded: plain for plain, (_, ded) in _CIPHER_TAGS.items() if ded is not None}
SERVICE_CIPHERED_TAGS = frozenset(_GLO_TO_PLAIN) | frozenset(_DED_TO_PLAIN)


def glo_tag_for(plain_tag: int, *, dedicated: bool = False) -> int:
    """Return the service-specific ciphered tag for a plain APDU tag.

    Raises:
        ConfigurationError: that APDU has no service-specific ciphered form.
    """
    pair = _CIPHER_TAGS.get(plain_tag)
    tag = None if pair is None else (pair[1] if dedicated else pair[0])
    if tag is None:
        raise ConfigurationError(
            f"APDU 0x{plain_tag:02X} has no service-specific ciphered form; use general ciphering"
        )
    return tag


def plain_tag_for(ciphered_tag: int) -> int | None:
    """Return the plain tag a service-specific ciphered tag wraps, or None."""
    return _GLO_TO_PLAIN.get(ciphered_tag, _DED_TO_PLAIN.get(ciphered_tag))


def _split_content(content: bytes) -> tuple[SecurityControl, int, bytes]:
    r = Reader(content)
    sc = SecurityControl.from_byte(r.u8())
    ic = r.u32()
    return sc, ic, r.rest()


@dataclass(frozen=True, slots=True)
class ServiceCiphered:
    """A service-specific glo- or ded- ciphered APDU: ``tag ‖ len ‖ SC ‖ IC ‖ payload``."""

    tag: int
    security: SecurityControl
    invocation_counter: int
    payload: bytes
    """Ciphertext (and tag), or plaintext and tag for authentication only."""

    @property
    def dedicated(self) -> bool:
        """True when the dedicated key protects this APDU."""
        return self.tag in _DED_TO_PLAIN

    @property
    def kind(self) -> CipheringKind:
        """The ciphering kind (for mirroring the response)."""
        return CipheringKind.SERVICE_DED if self.dedicated else CipheringKind.SERVICE_GLO

    def content(self) -> bytes:
        """Return ``SC ‖ IC ‖ payload``."""
        return bytes((self.security.to_byte(),)) + pack_u32(self.invocation_counter) + self.payload

    def to_bytes(self) -> bytes:
        """Encode."""
        c = self.content()
        return bytes((self.tag,)) + encode_length(len(c)) + c

    @classmethod
    def decode(cls, tag: int, r: Reader) -> ServiceCiphered:
        """Decode after the tag byte."""
        if tag not in SERVICE_CIPHERED_TAGS:
            raise DecodeError(f"0x{tag:02X} is not a service-specific ciphered APDU")
        sc, ic, payload = _split_content(r.sized())
        return cls(tag, sc, ic, payload)


@dataclass(frozen=True, slots=True)
class GeneralGloCiphering:
    """general-glo-ciphering (0xDB) or general-ded-ciphering (0xDC)."""

    system_title: bytes
    security: SecurityControl
    invocation_counter: int
    payload: bytes
    dedicated: bool = False

    @property
    def tag(self) -> int:
        """0xDB for global keys, 0xDC for the dedicated key."""
        return 0xDC if self.dedicated else 0xDB

    @property
    def kind(self) -> CipheringKind:
        """The ciphering kind (for mirroring the response)."""
        return CipheringKind.GENERAL_DED if self.dedicated else CipheringKind.GENERAL_GLO

    def content(self) -> bytes:
        """Return ``SC ‖ IC ‖ payload``."""
        return bytes((self.security.to_byte(),)) + pack_u32(self.invocation_counter) + self.payload

    def to_bytes(self) -> bytes:
        """Encode."""
        return bytes((self.tag,)) + pack_sized(self.system_title) + pack_sized(self.content())

    @classmethod
    def decode(cls, tag: int, r: Reader) -> GeneralGloCiphering:
        """Decode after the tag byte."""
        st = r.sized()
        sc, ic, payload = _split_content(r.sized())
        return cls(st, sc, ic, payload, dedicated=tag == 0xDC)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """general-ciphering key-info: identified (0), wrapped (1) or agreed (2) key."""

    choice: int
    key_id: int = 0
    """identified-key: 0 = global unicast, 1 = global broadcast; wrapped-key: kek-id."""
    key_parameters: bytes = b""
    """agreed-key: 1 = One-Pass DH C(1e,1s), 2 = Static Unified Model C(0e,2s)."""
    key_ciphered_data: bytes = b""

    def to_bytes(self) -> bytes:
        """Encode (without the OPTIONAL presence byte)."""
        if self.choice == 0:
            return bytes((0, self.key_id))
        if self.choice == 1:
            return bytes((1, self.key_id)) + pack_sized(self.key_ciphered_data)
        return b"\x02" + pack_sized(self.key_parameters) + pack_sized(self.key_ciphered_data)

    @classmethod
    def decode(cls, r: Reader) -> KeyInfo:
        """Decode from the reader."""
        choice = r.u8()
        if choice == 0:
            key_id = r.u8()
            if key_id > 1:
                raise DecodeError(f"identified-key: unknown key id {key_id}")
            return cls(0, key_id=key_id)
        if choice == 1:
            return cls(1, key_id=r.u8(), key_ciphered_data=r.sized())
        if choice == 2:
            return cls(2, key_parameters=r.sized(), key_ciphered_data=r.sized())
        raise DecodeError(f"key-info: unknown choice {choice}")


@dataclass(frozen=True, slots=True)
class GeneralCiphering:
    """general-ciphering (0xDD)."""

    TAG = 0xDD

    transaction_id: bytes
    originator_system_title: bytes
    recipient_system_title: bytes
    date_time: bytes
    other_information: bytes
    key_info: KeyInfo | None
    security: SecurityControl
    invocation_counter: int
    payload: bytes

    def header_fields(self) -> bytes:
        """The five leading fields with their lengths (authenticated in the AAD)."""
        return b"".join(
            pack_sized(f)
            for f in (
                self.transaction_id,
                self.originator_system_title,
                self.recipient_system_title,
                self.date_time,
                self.other_information,
            )
        )

    def content(self) -> bytes:
        """Return ``SC ‖ IC ‖ payload``."""
        return bytes((self.security.to_byte(),)) + pack_u32(self.invocation_counter) + self.payload

    def to_bytes(self) -> bytes:
        """Encode."""
        ki = b"\x00" if self.key_info is None else b"\x01" + self.key_info.to_bytes()
        return bytes((self.TAG,)) + self.header_fields() + ki + pack_sized(self.content())

    @classmethod
    def decode(cls, r: Reader) -> GeneralCiphering:
        """Decode after the tag byte."""
        tid, originator, recipient, stamp, other = (r.sized() for _ in range(5))
        key_info = KeyInfo.decode(r) if r.u8() else None
        sc, ic, payload = _split_content(r.sized())
        return cls(tid, originator, recipient, stamp, other, key_info, sc, ic, payload)


@dataclass(frozen=True, slots=True)
class GeneralSigning:
    """general-signing (0xDF): an APDU (plain or ciphered) signed with ECDSA."""

    TAG = 0xDF

    transaction_id: bytes
    originator_system_title: bytes
    recipient_system_title: bytes
    date_time: bytes
    other_information: bytes
    content: bytes
    signature: bytes

    def signed_data(self) -> bytes:
        """Everything the signature covers: each field with its length, up to the content."""
        return b"".join(
            pack_sized(f)
            for f in (
                self.transaction_id,
                self.originator_system_title,
                self.recipient_system_title,
                self.date_time,
                self.other_information,
                self.content,
            )
        )

    def to_bytes(self) -> bytes:
        """Encode."""
        return bytes((self.TAG,)) + self.signed_data() + pack_sized(self.signature)

    @classmethod
    def decode(cls, r: Reader) -> GeneralSigning:
        """Decode after the tag byte."""
        fields = [r.sized() for _ in range(7)]
        return cls(*fields)


# ------------------------------------------------------------------ recipes


def _check_st(st: bytes) -> None:
    if len(st) != SYSTEM_TITLE_LENGTH:
        raise ConfigurationError(f"system title must be 8 bytes, got {len(st)}")


def _aad(sc: SecurityControl, ak: SecretKey | None, extra: bytes) -> bytes:
    if ak is None:
        raise ConfigurationError("authentication requested but no authentication key is set")
    return bytes((sc.to_byte(),)) + ak.expose_secret() + extra


def _seal(
    plain: bytes, sc: SecurityControl, iv: bytes, key: GcmKey, ak: SecretKey | None, extra: bytes
) -> bytes:
    if sc.compressed:
        raise ConfigurationError("V.44 compression is not supported")
    if sc.authenticated and sc.encrypted:
        return key.seal(iv, plain, _aad(sc, ak, extra))
    if sc.authenticated:
        return plain + key.mac(iv, _aad(sc, ak, extra + plain))
    if sc.encrypted:
        return key.encrypt_only(iv, plain)
    raise ConfigurationError("security control asks for neither authentication nor encryption")


def _open(
    payload: bytes, sc: SecurityControl, iv: bytes, key: GcmKey, ak: SecretKey | None, extra: bytes
) -> bytes:
    if sc.compressed:
        raise DecodeError("V.44 compressed APDUs are not supported")
    if sc.authenticated and sc.encrypted:
        return key.open(iv, payload, _aad(sc, ak, extra))
    if sc.authenticated:
        if len(payload) < 12:
            raise AuthenticationFailedError("authentication failed: payload shorter than tag")
        plain, tag = payload[:-12], payload[-12:]
        key.verify_mac(iv, _aad(sc, ak, extra + plain), tag)
        return plain
    if sc.encrypted:
        return key.decrypt_only(iv, payload)
    raise InsufficientProtectionError("ciphered APDU with neither authentication nor encryption")


def protect(
    plain: bytes,
    *,
    kind: CipheringKind,
    security: SecurityControl,
    invocation_counter: int,
    system_title: bytes,
    key: GcmKey,
    authentication_key: SecretKey | None,
) -> bytes:
    """Cipher a plain APDU and return the wrapped bytes.

    ``system_title`` is the originator's (ours); it forms the IV with the counter.

    Raises:
        ConfigurationError: bad system title, counter out of range, APDU without a
            service-specific form, or authentication without an authentication key.
    """
    _check_st(system_title)
    if not 0 <= invocation_counter <= MAX_COUNTER:
        raise ConfigurationError("invocation counter out of range")
    if not plain:
        raise ConfigurationError("cannot protect an empty APDU")
    iv = system_title + pack_u32(invocation_counter)
    payload = _seal(plain, security, iv, key, authentication_key, b"")
    if kind in (CipheringKind.SERVICE_GLO, CipheringKind.SERVICE_DED):
        tag = glo_tag_for(plain[0], dedicated=kind is CipheringKind.SERVICE_DED)
        return ServiceCiphered(tag, security, invocation_counter, payload).to_bytes()
    return GeneralGloCiphering(
        system_title, security, invocation_counter, payload, dedicated=kind.dedicated
    ).to_bytes()


def unprotect(
    apdu: ServiceCiphered | GeneralGloCiphering,
    *,
    system_title: bytes,
    key: GcmKey,
    authentication_key: SecretKey | None,
) -> bytes:
    """Verify and decipher; return the plain APDU bytes.

    ``system_title`` is the originator's, which the caller knows from the
    association (service-specific APDUs carry none). For general-glo APDUs the
    caller must already have compared the carried title with the expected one.
    The counter is *not* checked here; check it before and commit it after.

    Raises:
        AuthenticationFailedError: the tag does not verify.
        InsufficientProtectionError: neither authenticated nor encrypted.
        DecodeError: compressed APDU.
    """
    _check_st(system_title)
    iv = system_title + pack_u32(apdu.invocation_counter)
    plain = _open(apdu.payload, apdu.security, iv, key, authentication_key, b"")
    if isinstance(apdu, ServiceCiphered) and plain and plain[0] != plain_tag_for(apdu.tag):
        raise AuthenticationFailedError(
            f"ciphered tag 0x{apdu.tag:02X} wraps an unexpected APDU 0x{plain[0]:02X}"
        )
    return plain


def protect_general(
    plain: bytes,
    *,
    transaction_id: bytes,
    originator: bytes,
    recipient: bytes,
    date_time: bytes = b"",
    other_information: bytes = b"",
    key_id: int = 0,
    security: SecurityControl,
    invocation_counter: int,
    key: GcmKey,
    authentication_key: SecretKey | None,
) -> GeneralCiphering:
    """Build a general-ciphering APDU with an identified key (0 unicast, 1 broadcast)."""
    _check_st(originator)
    template = GeneralCiphering(
        transaction_id,
        originator,
        recipient,
        date_time,
        other_information,
        KeyInfo(0, key_id=key_id),
        security,
        invocation_counter,
        b"",
    )
    iv = originator + pack_u32(invocation_counter)
    payload = _seal(plain, security, iv, key, authentication_key, template.header_fields())
    return GeneralCiphering(
        transaction_id,
        originator,
        recipient,
        date_time,
        other_information,
        template.key_info,
        security,
        invocation_counter,
        payload,
    )


def unprotect_general(
    apdu: GeneralCiphering, *, key: GcmKey, authentication_key: SecretKey | None
) -> bytes:
    """Verify and decipher a general-ciphering APDU with an identified key.

    The caller selects ``key`` from ``apdu.key_info.key_id`` and checks the
    originator system title and counter.

    Raises:
        DecodeError: key-info is not an identified key.
        AuthenticationFailedError: the tag does not verify.
    """
    if apdu.key_info is None or apdu.key_info.choice != 0:
        raise DecodeError("only general-ciphering with an identified key is supported")
    _check_st(apdu.originator_system_title)
    iv = apdu.originator_system_title + pack_u32(apdu.invocation_counter)
    return _open(apdu.payload, apdu.security, iv, key, authentication_key, apdu.header_fields())


# ------------------------------------------------------------------ hot path


_SERVICE_HEADS: dict[CipheringKind, dict[int, bytes]] = {
    CipheringKind.SERVICE_GLO: {p: bytes((g,)) for p, (g, _) in _CIPHER_TAGS.items()},
    CipheringKind.SERVICE_DED: {
        p: bytes((d,)) for p, (_, d) in _CIPHER_TAGS.items() if d is not None
    },
    CipheringKind.GENERAL_GLO: {},
    CipheringKind.GENERAL_DED: {},
}
_GENERAL_GLO_PREFIX = b"\xdb\x08"
_GENERAL_GLO = CipheringKind.GENERAL_GLO
_SHORT_LENGTHS = tuple(bytes((i,)) for i in range(0x80))
_GENERAL_DED_PREFIX = b"\xdc\x08"


class ApduProtector:
    """Protects APDUs from one originator under one key and security control: the hot path.

    Everything that does not change per APDU — the SC byte, the AAD prefix
    ``SC ‖ AK``, the system title and the ``AESGCM`` object — is computed once,
    so a call costs one AES-GCM operation plus a few concatenations. The output
    is byte-identical to :func:`protect` (a test holds them together).
    """

    __slots__ = (
        "_aad",
        "_encrypt",
        "_fast_heads",
        "_general_head",
        "_heads",
        "_key",
        "_mode",
        "_sc_byte",
        "_title",
    )

    def __init__(
        self,
        *,
        key: GcmKey,
        authentication_key: SecretKey | None,
        system_title: bytes,
        security: SecurityControl,
    ) -> None:
        _check_st(system_title)
        if security.compressed:
            raise ConfigurationError("V.44 compression is not supported")
        if not (security.authenticated or security.encrypted):
            raise ConfigurationError(
                "security control asks for neither authentication nor encryption"
            )
        self._key = key
        self._encrypt = key.seal_function()
        self._title = system_title
        self._sc_byte = bytes((security.to_byte(),))
        self._mode = (2 if security.authenticated else 0) | (1 if security.encrypted else 0)
        self._aad = _aad(security, authentication_key, b"") if security.authenticated else b""
        self._general_head = _GENERAL_GLO_PREFIX + system_title
        self._fast_heads = {
            **_SERVICE_HEADS,
            CipheringKind.GENERAL_DED: dict.fromkeys(
                range(256), _GENERAL_DED_PREFIX + system_title
            ),
        }
        self._heads = {
            CipheringKind.GENERAL_GLO: _GENERAL_GLO_PREFIX + system_title,
            CipheringKind.GENERAL_DED: _GENERAL_DED_PREFIX + system_title,
        }

    def protect(
        self, plain: bytes, invocation_counter: int, kind: CipheringKind = CipheringKind.GENERAL_GLO
    ) -> bytes:
        """Cipher ``plain`` with ``invocation_counter``; return the wrapped APDU.

        Raises:
            ConfigurationError: counter out of range, empty APDU, or an APDU with no
                service-specific form asked for as such.
        """
        try:
            icb = invocation_counter.to_bytes(4, "big")
        except OverflowError:
            raise ConfigurationError("invocation counter out of range") from None
        if self._mode == 3 and plain:
            # The hot path (pushes, ingest, associations): one AES-GCM call, a few concatenations.
            head = (
                self._general_head if kind is _GENERAL_GLO else self._fast_heads[kind].get(plain[0])
            )
            if head is not None:
                ct = self._encrypt(self._title + icb, plain, self._aad)
                n = len(ct) + 1  # SC + IC + ciphertext + 12-byte tag = len(ct) - 4 + 5
                length = _SHORT_LENGTHS[n] if n < 0x80 else encode_length(n)
                return head + length + self._sc_byte + icb + ct[:-4]
        return self._protect_any(plain, icb, kind)

    def _protect_any(self, plain: bytes, icb: bytes, kind: CipheringKind) -> bytes:
        if not plain:
            raise ConfigurationError("cannot protect an empty APDU")
        mode = self._mode
        if mode == 3:  # authenticated encryption: one AES-GCM call, 12-byte tag kept
            payload = self._encrypt(self._title + icb, plain, self._aad)[:-4]
        elif mode == 2:  # authentication only: GMAC over SC ‖ AK ‖ APDU
            payload = plain + self._encrypt(self._title + icb, b"", self._aad + plain)[:12]
        else:  # encryption only (no tag): the GCM keystream
            payload = self._key.encrypt_only(self._title + icb, plain)
        n = len(payload) + 5
        length = bytes((n,)) if n < 0x80 else encode_length(n)
        head = self._heads.get(kind) or _SERVICE_HEADS[kind].get(plain[0])
        if head is None:
            raise ConfigurationError(f"APDU 0x{plain[0]:02X} has no service-specific ciphered form")
        return head + length + self._sc_byte + icb + payload


class ApduUnprotector:
    """Checks and deciphers APDUs from one known originator under one key: the hot path.

    Accepts service-specific glo/ded and general-glo/ded APDUs. In order, it
    checks: the carried system title (general kinds) against the expected
    originator, the suite, that authentication is applied (and encryption when
    required), the invocation counter against ``counter`` (cheap, before any
    cryptography), then the tag; only then is the counter committed.
    """

    __slots__ = ("_ak", "_broadcast", "_key", "_open", "_require_encryption", "_suite", "_title")

    def __init__(
        self,
        *,
        key: GcmKey,
        authentication_key: SecretKey | None,
        peer_system_title: bytes,
        suite: int = 0,
        require_encryption: bool = True,
        broadcast: bool = False,
    ) -> None:
        _check_st(peer_system_title)
        self._broadcast = broadcast
        self._key = key
        self._open = key.open_function()
        self._ak = authentication_key
        self._title = peer_system_title
        self._suite = suite
        self._require_encryption = require_encryption

    def unprotect(self, raw: bytes, counter: CounterCheck | None = None) -> tuple[int, bytes]:
        """Return ``(invocation counter, plain APDU)``.

        Raises:
            DecodeError: malformed envelope, or V.44 compression.
            UnexpectedSystemTitleError: a general APDU from another originator.
            InsufficientProtectionError: unauthenticated, unencrypted when required, wrong
                suite or key set.
            ReplayError: the counter is not above the last accepted one.
            AuthenticationFailedError: the tag does not verify.
        """
        # Hand-rolled parse: this runs once per ingested message, so no dataclasses here.
        size = len(raw)
        if size < 2:
            raise DecodeError("truncated ciphered APDU")
        tag = raw[0]
        general = tag in (0xDB, 0xDC)
        if general:
            if raw[1] != 8 or size < 11:
                raise DecodeError("general-glo: bad system title length")
            if raw[2:10] != self._title:
                raise UnexpectedSystemTitleError(
                    f"APDU from system title {raw[2:10].hex()}, expected {self._title.hex()}"
                )
            pos = 10
        elif tag in SERVICE_CIPHERED_TAGS:
            pos = 1
        else:
            raise DecodeError(f"0x{tag:02X} is not a glo/ded or general-glo/ded APDU")
        n = raw[pos]
        if n < 0x80:
            start = pos + 1
        else:
            r = Reader(raw, pos)
            n = r.length()
            start = r.pos
        if start + n != size:
            raise DecodeError(
                f"ciphered APDU length {n} does not match the {size - start} bytes present"
            )
        if n < 5:
            raise DecodeError("ciphered content shorter than its security header")
        sc = raw[start]
        # Green Book §9.2.7.2.3 SC bits; DM-6: tags always verified, so authentication is required.
        if sc & 0x80:
            raise DecodeError("V.44 compressed APDUs are not supported")
        if sc & 0x0F != self._suite:
            raise InsufficientProtectionError(
                f"APDU uses suite {sc & 0x0F}, expected {self._suite}"
            )
        if not sc & 0x10:
            raise InsufficientProtectionError("APDU is not authenticated")
        if self._require_encryption and not sc & 0x20:
            raise InsufficientProtectionError("APDU is not encrypted but the policy requires it")
        if bool(sc & 0x40) != self._broadcast:
            raise InsufficientProtectionError("APDU is protected with the other key set")
        icb = raw[start + 1 : start + 5]
        ic = int.from_bytes(icb, "big")
        if counter is not None:
            counter.check(ic)  # replay: refused before any cryptography
        iv = self._title + icb
        if self._ak is None:
            raise ConfigurationError("authentication requested but no authentication key is set")
        aad = bytes((sc,)) + self._ak.expose_secret()
        payload = raw[start + 5 :]
        if sc & 0x20:
            if len(payload) < 12:
                raise AuthenticationFailedError("authentication failed: payload shorter than tag")
            opened = self._open(iv, payload, aad)
            if opened is None:
                raise AuthenticationFailedError("authentication failed: GCM tag mismatch")
            plain = opened
        else:
            if len(payload) < 12:
                raise AuthenticationFailedError("authentication failed: payload shorter than tag")
            plain = payload[:-12]
            self._key.verify_mac(iv, aad + plain, payload[-12:])
        if not general and plain and plain[0] != plain_tag_for(tag):
            raise AuthenticationFailedError(f"ciphered tag 0x{tag:02X} wraps an unexpected APDU")
        if counter is not None:
            counter.commit(ic)
        return ic, plain


# ------------------------------------------------------------------ HLS


def hls_gmac(
    challenge: bytes,
    *,
    system_title: bytes,
    invocation_counter: int,
    key: GcmKey,
    authentication_key: SecretKey,
    suite: int = 0,
) -> bytes:
    """HLS mechanism 5: return ``SC ‖ IC ‖ GMAC(SC ‖ AK ‖ challenge)`` with SC = 0x10 | suite.

    IV = own system title ‖ IC; key = global unicast key (reference §1.8, V4/V5).
    """
    _check_st(system_title)
    sc = 0x10 | suite
    iv = system_title + pack_u32(invocation_counter)
    aad = bytes((sc,)) + authentication_key.expose_secret() + challenge
    return bytes((sc,)) + pack_u32(invocation_counter) + key.mac(iv, aad)


def verify_hls_gmac(
    response: bytes,
    challenge: bytes,
    *,
    system_title: bytes,
    key: GcmKey,
    authentication_key: SecretKey,
    suite: int = 0,
) -> int:
    """Check the peer's f(challenge) for HLS mechanism 5; return the counter it carried.

    ``system_title`` is the peer's (the responder computed the GMAC with its own).

    Raises:
        HlsFailedError: wrong length, wrong SC, or the GMAC does not verify.
    """
    if len(response) != 17:
        raise HlsFailedError(f"HLS-GMAC response must be 17 bytes, got {len(response)}")
    if response[0] != 0x10 | suite:
        raise HlsFailedError(f"HLS-GMAC response has SC 0x{response[0]:02X}")
    ic = int.from_bytes(response[1:5], "big")
    iv = system_title + response[1:5]
    aad = bytes((response[0],)) + authentication_key.expose_secret() + challenge
    try:
        key.verify_mac(iv, aad, response[5:])
    except AuthenticationFailedError:
        raise HlsFailedError("HLS-GMAC: f(challenge) does not verify") from None
    return ic


def hls_ecdsa_sign(
    signing_key: SigningKey,
    *,
    own_title: bytes,
    peer_title: bytes,
    own_challenge_of_peer: bytes,
    peer_challenge: bytes,
) -> bytes:
    """HLS mechanism 7: sign ``own ST ‖ peer ST ‖ challenge-to-answer ‖ own challenge``.

    For the client's f(StoC): own = client, challenge-to-answer = StoC, own challenge = CtoS.
    For the server's f(CtoS): own = server, challenge-to-answer = CtoS, own challenge = StoC.
    """
    return signing_key.sign(own_title + peer_title + own_challenge_of_peer + peer_challenge)


def hls_ecdsa_verify(
    verifying_key: VerifyingKey,
    signature: bytes,
    *,
    signer_title: bytes,
    other_title: bytes,
    answered_challenge: bytes,
    signer_challenge: bytes,
) -> None:
    """Verify an HLS mechanism 7 response.

    Raises:
        HlsFailedError: the signature does not verify.
    """
    try:
        verifying_key.verify(
            signature, signer_title + other_title + answered_challenge + signer_challenge
        )
    except SignatureInvalidError:
        raise HlsFailedError("HLS-ECDSA: f(challenge) signature does not verify") from None


# ------------------------------------------------------------------ general-signing


def sign_general(
    content: bytes,
    *,
    signing_key: SigningKey,
    transaction_id: bytes,
    originator: bytes,
    recipient: bytes,
    date_time: bytes = b"",
    other_information: bytes = b"",
) -> GeneralSigning:
    """Wrap ``content`` (a plain or ciphered APDU) in general-signing."""
    unsigned = GeneralSigning(
        transaction_id, originator, recipient, date_time, other_information, content, b""
    )
    return GeneralSigning(
        transaction_id,
        originator,
        recipient,
        date_time,
        other_information,
        content,
        signing_key.sign(unsigned.signed_data()),
    )


def verify_general_signing(apdu: GeneralSigning, verifying_key: VerifyingKey) -> bytes:
    """Verify a general-signing APDU and return its content.

    Raises:
        SignatureInvalidError: the signature does not verify.
    """
    verifying_key.verify(apdu.signature, apdu.signed_data())
    return apdu.content
