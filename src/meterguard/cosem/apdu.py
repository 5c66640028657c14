"""Decode any DLMS/COSEM APDU: ACSE, plain xDLMS, or a ciphered/signed envelope.

:func:`decode_apdu` looks at the first byte and hands the bytes to the right
codec; it raises only :class:`~meterguard.errors.DecodeError` (a fuzz test
holds it to that). Decoding a ciphered APDU returns its envelope; deciphering
needs keys and is done by :mod:`meterguard.cosem.security`.
"""

from __future__ import annotations

from typing import TypeAlias

from meterguard.cosem._codec import Reader
from meterguard.cosem.acse import AARE, AARQ, RLRE, RLRQ
from meterguard.cosem.security import (
    SERVICE_CIPHERED_TAGS,
    GeneralCiphering,
    GeneralGloCiphering,
    GeneralSigning,
    ServiceCiphered,
)
from meterguard.cosem.xdlms import XDLMS_TAGS, XdlmsApdu, decode_xdlms
from meterguard.errors import DecodeError

__all__ = ["Apdu", "decode_apdu"]

Apdu: TypeAlias = (
    AARQ
    | AARE
    | RLRQ
    | RLRE
    | XdlmsApdu
    | ServiceCiphered
    | GeneralGloCiphering
    | GeneralCiphering
    | GeneralSigning
)


def decode_apdu(data: bytes) -> Apdu:
    """Decode one APDU; the whole input must be consumed.

    Raises:
        DecodeError: empty, unknown tag, malformed, truncated or trailing bytes.
    """
    if not data:
        raise DecodeError("empty APDU")
    tag = data[0]
    if tag == AARQ.TAG:
        return AARQ.from_bytes(data)
    if tag == AARE.TAG:
        return AARE.from_bytes(data)
    if tag == RLRQ.TAG:
        return RLRQ.from_bytes(data)
    if tag == RLRE.TAG:
        return RLRE.from_bytes(data)
    if tag in XDLMS_TAGS:
        return decode_xdlms(data)
    r = Reader(data, 1)
    apdu: Apdu
    if tag in SERVICE_CIPHERED_TAGS:
        apdu = ServiceCiphered.decode(tag, r)
    elif tag in (0xDB, 0xDC):
        apdu = GeneralGloCiphering.decode(tag, r)
    elif tag == GeneralCiphering.TAG:
        apdu = GeneralCiphering.decode(r)
    elif tag == GeneralSigning.TAG:
        apdu = GeneralSigning.decode(r)
    else:
        raise DecodeError(f"unknown APDU tag 0x{tag:02X}")
    r.expect_end(type(apdu).__name__)
    return apdu
