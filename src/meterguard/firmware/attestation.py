"""Measured boot and signed meter documents, shared by the meter and the head-end (FW-11, FW-12).

:func:`measure` is the hash chain over the boot stages; :class:`Attestation` a document the
meter signs with its attestation key (a measurement answering a nonce, or a status report);
:func:`verify_signed` the head-end's check of that signature; :func:`expected_measurement`
the reference value the head-end computes from the repository's signed target. Pure: no IO.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meterguard.errors import DecodeError, SignatureInvalidError

__all__ = ["MAX_DOCUMENT", "Attestation", "expected_measurement", "measure", "verify_signed"]

MAX_DOCUMENT = 4096
"""The largest signed document a meter sends (bytes of JSON)."""


def measure(bootloader_sha256: str, firmware_sha256: str, settings: dict[str, Any]) -> str:
    """The measured-boot hash chain over the boot stages, as hex.

    ``m0 = 0^32``; each stage extends it: ``m = SHA-256(m ‖ stage hash)`` for the bootloader,
    the running image and its configuration (the canonical JSON of its settings), in that order.
    """
    config = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    m = bytes(32)
    for stage in (bootloader_sha256, firmware_sha256, config):
        m = hashlib.sha256(m + bytes.fromhex(stage)).digest()
    return m.hex()


@dataclass(frozen=True, slots=True)
class Attestation:
    """A signed document from the meter: a measurement answering a nonce, or a status report."""

    body: dict[str, Any]
    signature: bytes

    def payload(self) -> bytes:
        """The signed bytes (canonical JSON of the body)."""
        return json.dumps(self.body, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> dict[str, Any]:
        """As JSON (the signature in hex)."""
        return {"body": self.body, "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, doc: object) -> Attestation:
        """Parse; raises :class:`~meterguard.errors.DecodeError`."""
        if not isinstance(doc, dict) or not isinstance(doc.get("body"), dict):
            raise DecodeError("not a signed meter document")
        try:
            signature = bytes.fromhex(str(doc["signature"]))
        except (KeyError, ValueError) as exc:
            raise DecodeError("not a signed meter document") from exc
        if len(signature) > 80:
            raise DecodeError("signature too long")
        return cls(dict(doc["body"]), signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> Attestation:
        """Parse JSON bytes of at most :data:`MAX_DOCUMENT`."""
        if len(data) > MAX_DOCUMENT:
            raise DecodeError(f"a signed document of {len(data)} bytes")
        try:
            return cls.from_json(json.loads(data))
        except (ValueError, RecursionError) as exc:
            raise DecodeError("not JSON") from exc


def verify_signed(doc: Attestation, public_pem: bytes) -> dict[str, Any]:
    """Check a meter's signature under its attestation key; the body.

    Raises:
        SignatureInvalidError: the signature does not verify.
    """
    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureInvalidError("not an attestation key")
    try:
        key.verify(doc.signature, doc.payload(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureInvalidError("meter signature does not verify") from exc
    return doc.body


def expected_measurement(custom: dict[str, Any], sha256: str) -> str:
    """The measurement a meter running the target (``custom`` fields, image hash) must report."""
    return measure(str(custom["bootloader_sha256"]), sha256, dict(custom["settings"]))
