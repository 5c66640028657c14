"""The SC byte and the ciphered APDU envelopes: glo/ded, general-glo/ded, general, signing.

Part of :mod:`meterguard.cosem.security`, which re-exports it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meterguard.cosem._codec import Reader, encode_length, pack_sized, pack_u32
from meterguard.errors import (
    ConfigurationError,
    DecodeError,
)

__all__ = [
    "SERVICE_CIPHERED_TAGS",
    "SYSTEM_TITLE_LENGTH",
    "CipheringKind",
    "GeneralCiphering",
    "GeneralGloCiphering",
    "GeneralSigning",
    "KeyInfo",
    "SecurityControl",
    "ServiceCiphered",
    "glo_tag_for",
    "plain_tag_for",
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
