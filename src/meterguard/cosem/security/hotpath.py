"""The hot path: ApduProtector and ApduUnprotector, pre-keyed for one peer (ingest, meters).

Part of :mod:`meterguard.cosem.security`, which re-exports it.
"""

from __future__ import annotations

from meterguard.cosem._codec import Reader, encode_length
from meterguard.cosem.counters import CounterCheck
from meterguard.cosem.security.envelopes import (
    _CIPHER_TAGS,
    SERVICE_CIPHERED_TAGS,
    CipheringKind,
    SecurityControl,
    plain_tag_for,
)
from meterguard.cosem.security.recipes import _aad, _check_st
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    AuthenticationFailedError,
    ConfigurationError,
    DecodeError,
    InsufficientProtectionError,
    UnexpectedSystemTitleError,
)

__all__ = ["ApduProtector", "ApduUnprotector"]


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
