"""The engineer's trace decoder: hex APDUs or wrapper frames in, a readable tree out.

:class:`TraceDecoder` decodes any APDU meterguard knows and, given keys,
deciphers what is ciphered — but only after the tag verified: an APDU whose
tag fails yields :class:`~meterguard.errors.AuthenticationFailedError` and no
decrypted line at all. Across a session it learns the client's and the meter's
system titles from the AARQ and AARE (service-specific APDUs carry none), the
challenges, so it can check HLS pass 3 and 4, and with a KEK it checks the
wrapped keys of ``key_transfer`` without ever printing key material.

This module returns lines; printing and exit codes belong to the CLI. It does
no IO and keeps no counters: a trace is evidence, not a live association.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

from meterguard.cosem.acse import AARE, AARQ, RLRE, RLRQ
from meterguard.cosem.apdu import Apdu, decode_apdu
from meterguard.cosem.axdr import (
    Array,
    CompactArray,
    Data,
    Enum,
    OctetString,
    Structure,
)
from meterguard.cosem.connection import HLS_METHOD
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.obis import Obis
from meterguard.cosem.security import (
    GeneralCiphering,
    GeneralGloCiphering,
    GeneralSigning,
    SecurityControl,
    ServiceCiphered,
    unprotect,
    unprotect_general,
    verify_hls_gmac,
)
from meterguard.cosem.wrapper import WrapperDecoder
from meterguard.cosem.xdlms import ActionRequestNormal, ActionResponseNormal
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keywrap import unwrap_key
from meterguard.errors import AuthenticationFailedError, DecodeError, HlsFailedError, KeyUnwrapError

__all__ = ["TraceDecoder", "render"]

# Tags whose originator is the client (requests) or the server (responses).
_CLIENT_TAGS = frozenset({0x21, 0x41, 0xC8, 0xC9, 0xCB, 0xD0, 0xD1, 0xD3})
_SERVER_TAGS = frozenset({0x28, 0x48, 0x2E, 0x4E, 0xCA, 0xCC, 0xCD, 0xCF, 0xD2, 0xD4, 0xD5, 0xD7})
_KEY_TRANSFER = (64, 2)
_CIPHERED_NAMES = {
    0x21: "glo-initiate-request",
    0x28: "glo-initiate-response",
    0x2E: "glo-confirmed-service-error",
    0x41: "ded-initiate-request",
    0x48: "ded-initiate-response",
    0x4E: "ded-confirmed-service-error",
    0xC8: "glo-get-request",
    0xC9: "glo-set-request",
    0xCA: "glo-event-notification-request",
    0xCB: "glo-action-request",
    0xCC: "glo-get-response",
    0xCD: "glo-set-response",
    0xCF: "glo-action-response",
    0xD0: "ded-get-request",
    0xD1: "ded-set-request",
    0xD2: "ded-event-notification-request",
    0xD3: "ded-action-request",
    0xD4: "ded-get-response",
    0xD5: "ded-set-response",
    0xD7: "ded-action-response",
}


def _hex(b: bytes) -> str:
    return b.hex().upper()


def _data_line(d: Data) -> str:
    name = type(d).__name__
    if isinstance(d, OctetString):
        hint = ""
        if len(d.value) == 6:
            hint = f"  (OBIS {Obis.from_bytes(d.value)}?)"
        elif len(d.value) == 12:
            try:
                hint = f"  (date-time {CosemDateTime.from_bytes(d.value)})"
            except DecodeError:
                hint = ""
        return f"octet-string[{len(d.value)}] {_hex(d.value)}{hint}"
    value = getattr(d, "value", None)
    if value is None:
        bits = getattr(d, "bits", None)
        return name if bits is None else f"{name} {bits}"
    return f"{name} {value}"


def render(obj: object, indent: int = 0, label: str = "") -> list[str]:
    """Render a decoded APDU, Data value or field as indented lines."""
    pad = "  " * indent
    prefix = f"{pad}{label}: " if label else pad
    if isinstance(obj, Array | Structure):
        kind = "array" if isinstance(obj, Array) else "structure"
        lines = [f"{prefix}{kind}[{len(obj.items)}]"]
        for item in obj.items:
            lines += render(item, indent + 1)
        return lines
    if isinstance(obj, CompactArray):
        lines = [f"{prefix}compact-array[{len(obj.items)}] of {obj.description.tag.name}"]
        for item in obj.items:
            lines += render(item, indent + 1)
        return lines
    if isinstance(obj, Obis | CosemDateTime | SecretKey | SecurityControl):
        return [f"{prefix}{obj}"]
    if isinstance(obj, int) and label == "invocation_counter":
        return [f"{prefix}{obj} (0x{obj:08X})"]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if type(obj).__module__.endswith("axdr"):
            return [f"{prefix}{_data_line(obj)}"]  # type: ignore[arg-type]
        name = type(obj).__name__
        tag = getattr(obj, "tag", None)
        if isinstance(obj, ServiceCiphered) and isinstance(tag, int):
            name += f" {_CIPHERED_NAMES.get(tag, '')} (0x{tag:02X})"
        lines = [f"{prefix}{name}"]
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None or (f.name == "tag" and isinstance(value, int)):
                continue
            lines += render(value, indent + 1, f.name)
        return lines
    if isinstance(obj, bytes):
        return [f"{prefix}{_hex(obj)}"]
    if isinstance(obj, enum.Enum):
        return [f"{prefix}{obj.name}"]
    if isinstance(obj, int) and label.startswith("invoke_id"):
        return [f"{prefix}0x{obj:02X}"]
    if isinstance(obj, tuple):
        lines = [f"{prefix}[{len(obj)}]"]
        for item in obj:
            lines += render(item, indent + 1)
        return lines
    return [f"{prefix}{obj}"]


@dataclass
class TraceDecoder:
    """Decodes a stream of APDUs with optional keys, learning titles and challenges."""

    unicast_key: SecretKey | None = None
    authentication_key: SecretKey | None = None
    master_key: SecretKey | None = None
    dedicated_key: SecretKey | None = None
    system_title: bytes | None = None
    """Originator of service-specific APDUs when the trace has no AARQ/AARE."""
    client_title: bytes | None = None
    server_title: bytes | None = None
    ctos: bytes | None = None
    stoc: bytes | None = None
    _frames: WrapperDecoder = field(default_factory=WrapperDecoder, repr=False)

    def decode_hex(self, text: str) -> list[str]:
        """Decode one hex APDU or wrapper frame (whitespace ignored).

        Raises:
            DecodeError: not hex, or not a valid APDU.
            AuthenticationFailedError: a tag did not verify (no decrypted output).
        """
        try:
            unverified = bytes.fromhex("".join(text.split()))
        except ValueError:
            raise DecodeError("input is not hex") from None
        return self.decode(unverified)

    def decode(self, unverified: bytes) -> list[str]:
        """Decode bytes not yet verified: a wrapper frame if it looks like one, else an APDU.

        Nothing ciphered is shown deciphered unless its tag verified with the given keys.
        """
        if (
            len(unverified) >= 8
            and unverified[:2] == b"\x00\x01"
            and int.from_bytes(unverified[6:8], "big") == len(unverified) - 8
        ):
            frames = WrapperDecoder().feed(unverified)
            frame = frames[0]
            head = (
                f"wrapper  source wPort {frame.source_wport}  "
                f"destination wPort {frame.destination_wport}  length {len(frame.apdu)}"
            )
            return [head, *self._apdu_lines(frame.apdu, 1)]
        return self._apdu_lines(unverified, 0)

    def _apdu_lines(self, raw: bytes, indent: int) -> list[str]:
        apdu = decode_apdu(raw)
        lines = render(apdu, indent)
        lines += self._inner(apdu, indent + 1)
        return lines

    def _inner(self, apdu: Apdu, indent: int) -> list[str]:
        pad = "  " * indent
        if isinstance(apdu, AARQ):
            self.client_title = apdu.calling_ap_title or self.client_title
            self.ctos = apdu.calling_authentication_value or self.ctos
            return self._user_info(apdu.user_information, indent)
        if isinstance(apdu, AARE):
            self.server_title = apdu.responding_ap_title or self.server_title
            self.stoc = apdu.responding_authentication_value or self.stoc
            return self._user_info(apdu.user_information, indent)
        if isinstance(apdu, RLRQ | RLRE):
            return self._user_info(apdu.user_information, indent)
        if isinstance(apdu, ServiceCiphered | GeneralGloCiphering | GeneralCiphering):
            plain = self._decipher(apdu)
            if plain is None:
                return [f"{pad}(ciphered: give --ek and --ak to decrypt and verify)"]
            inner = decode_apdu(plain)
            return [
                f"{pad}deciphered, tag verified:",
                *render(inner, indent + 1),
                *self._check(inner, indent + 1),
            ]
        if isinstance(apdu, GeneralSigning):
            return [f"{pad}(general-signing: signature verification needs the signer's public key)"]
        return self._check(apdu, indent)

    def _user_info(self, info: bytes | None, indent: int) -> list[str]:
        if info is None:
            return []
        return ["  " * indent + "user-information:", *self._apdu_lines(info, indent + 1)]

    def _originator(
        self, apdu: ServiceCiphered | GeneralGloCiphering | GeneralCiphering
    ) -> bytes | None:
        if isinstance(apdu, GeneralGloCiphering):
            return apdu.system_title
        if isinstance(apdu, GeneralCiphering):
            return apdu.originator_system_title
        if self.system_title is not None:
            return self.system_title
        if apdu.tag in _CLIENT_TAGS:
            return self.client_title
        if apdu.tag in _SERVER_TAGS:
            return self.server_title
        return None

    def _decipher(
        self, apdu: ServiceCiphered | GeneralGloCiphering | GeneralCiphering
    ) -> bytes | None:
        dedicated = isinstance(apdu, ServiceCiphered | GeneralGloCiphering) and apdu.dedicated
        key = self.dedicated_key if dedicated else self.unicast_key
        if key is None:
            return None
        if apdu.security.authenticated and self.authentication_key is None:
            return None
        gcm = GcmKey(key)
        if isinstance(apdu, GeneralCiphering):
            return unprotect_general(apdu, key=gcm, authentication_key=self.authentication_key)
        st = self._originator(apdu)
        if st is None:
            raise DecodeError(
                "service-specific APDU: originator system title unknown (give --system-title)"
            )
        return unprotect(apdu, system_title=st, key=gcm, authentication_key=self.authentication_key)

    def _check(self, apdu: Apdu, indent: int) -> list[str]:
        """Verify HLS replies and key transfers we have the material for."""
        pad = "  " * indent
        ek, ak = self.unicast_key, self.authentication_key
        if isinstance(apdu, ActionRequestNormal) and apdu.method == HLS_METHOD:
            reply = apdu.parameters
            if isinstance(reply, OctetString) and ek and ak and self.stoc and self.client_title:
                try:
                    verify_hls_gmac(
                        reply.value,
                        self.stoc,
                        system_title=self.client_title,
                        key=GcmKey(ek),
                        authentication_key=ak,
                    )
                except HlsFailedError:
                    raise AuthenticationFailedError(
                        "authentication failed: HLS f(StoC) does not verify"
                    ) from None
                return [f"{pad}HLS pass 3: f(StoC) verified against the meter's challenge"]
        if isinstance(apdu, ActionResponseNormal):
            ret = apdu.response.return_parameters
            if (
                isinstance(ret, OctetString)
                and len(ret.value) == 17
                and ek
                and ak
                and self.ctos
                and self.server_title
            ):
                try:
                    verify_hls_gmac(
                        ret.value,
                        self.ctos,
                        system_title=self.server_title,
                        key=GcmKey(ek),
                        authentication_key=ak,
                    )
                except HlsFailedError:
                    return []  # not an HLS reply, just a 17-byte octet-string
                return [f"{pad}HLS pass 4: f(CtoS) verified against the client's challenge"]
        if (
            isinstance(apdu, ActionRequestNormal)
            and (apdu.method.class_id, apdu.method.method) == _KEY_TRANSFER
            and self.master_key is not None
            and isinstance(apdu.parameters, Array)
        ):
            lines = []
            for item in apdu.parameters.items:
                if isinstance(item, Structure) and len(item.items) == 2:
                    kid, wrapped = item.items
                    if isinstance(kid, Enum) and isinstance(wrapped, OctetString):
                        name = (
                            KeyId(kid.value).name
                            if kid.value in KeyId._value2member_map_
                            else kid.value
                        )
                        try:
                            key = unwrap_key(self.master_key, wrapped.value)
                        except KeyUnwrapError:
                            lines.append(
                                f"{pad}key_transfer {name}: unwrap FAILED (wrong KEK or tampered)"
                            )
                        else:
                            lines.append(
                                f"{pad}key_transfer {name}: unwrapped, {key.bits}-bit, "
                                f"fingerprint {key.fingerprint()}"
                            )
            return lines
        return []
