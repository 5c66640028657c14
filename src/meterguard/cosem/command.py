"""Signed, protected commands from the head-end to a meter over MQTT (API-10), sans-IO.

A command travels on ``meters/<id>/commands`` with no DLMS association, so it carries
everything the meter needs to trust it:

``general-signing`` (0xDF) whose

* ``transaction-id`` is the command counter (8 bytes, big endian): monotonic per meter,
  never reused; the meter refuses a counter at or below the highest it has executed;
* ``originator-system-title`` is the head-end's title, ``recipient-system-title`` the
  meter's own (a command for another meter is refused);
* ``date-time`` is the COSEM date-time the command was signed;
* ``content`` is a ``general-glo-ciphering`` APDU — the plain ACTION or SET request
  authenticated and encrypted with the meter's own unicast and authentication keys,
  originator the head-end's title and invocation counter equal to the command counter;
* ``signature`` is ECDSA P-256 by the head-end's *command key* (a key of its own, whose
  public half the meter holds), over all the fields above.

So a command needs both the meter's symmetric keys and the command key: someone who
stole a meter's keys cannot command it, and someone with the command key alone cannot
read or forge a meter's traffic. :func:`seal_command` and :func:`open_command` are the
two halves; the meter executes the returned plain APDU and reports the outcome with a
:func:`result_body` push (a DataNotification the head-end's ingest decodes with
:func:`parse_result`).

This module does no IO and keeps no state: the meter persists the highest counter
itself (write-ahead, before acting), the head-end allocates counters in its database.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from meterguard.cosem.apdu import decode_apdu
from meterguard.cosem.axdr import (
    Data,
    DoubleLongUnsigned,
    Enum,
    OctetString,
    Structure,
)
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.obis import Obis
from meterguard.cosem.security import (
    CipheringKind,
    GeneralGloCiphering,
    GeneralSigning,
    SecurityControl,
    protect,
    sign_general,
    unprotect,
    verify_general_signing,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import SigningKey, VerifyingKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    DecodeError,
    InsufficientProtectionError,
    ReplayError,
    UnexpectedSystemTitleError,
)

__all__ = [
    "ALARM_ACK",
    "ATTESTATION",
    "DISCONNECT_CONTROL",
    "IMAGE_TRANSFER",
    "IMPORT_REGISTER",
    "LIMITER",
    "MAX_COMMAND",
    "RESULT_TAG",
    "SECURITY_SETUP",
    "TARIFF",
    "CommandResult",
    "ControlState",
    "OpenedCommand",
    "open_command",
    "parse_result",
    "result_body",
    "seal_command",
]

DISCONNECT_CONTROL = Obis(0, 0, 96, 3, 10, 255)
"""Disconnect control (class 70): method 1 remote_disconnect, 2 remote_reconnect."""
LIMITER = Obis(0, 0, 17, 0, 0, 255)
"""Limiter (class 71): attribute 4 threshold_normal, in W."""
SECURITY_SETUP = Obis(0, 0, 43, 0, 0, 255)
"""Security setup (class 64): method 2 key_transfer."""
TARIFF = Obis(0, 0, 96, 14, 0, 255)
"""Currently active tariff (class 1 data, unsigned)."""
IMPORT_REGISTER = Obis(1, 0, 1, 8, 0, 255)
"""Active energy import, total (class 3 register, attribute 2 value in Wh)."""
ALARM_ACK = Obis(0, 0, 96, 50, 0, 255)
"""Alarm acknowledgement (class 1 data, manufacturer-specific 96.50): writing an array of
alarm push sequences tells the meter the head-end stored them (TAMP-3); reading it gives
the sequences still pending."""
IMAGE_TRANSFER = Obis(0, 0, 44, 0, 0, 255)
"""Image transfer (class 18): method 1 initiate (the TUF target name), 4 activate (its hash)."""
ATTESTATION = Obis(0, 128, 96, 99, 0, 255)
"""Attestation challenge (class 1 data, manufacturer-specific): a nonce written there is answered
with a signed measurement of the meter's boot (FW-11)."""
MAX_COMMAND = 1024
"""Largest command envelope a meter accepts (bytes)."""
RESULT_TAG = b"command-result"
"""First element of a result push's structure: tells it from readings and alarms."""
MAX_COUNTER = 0xFFFFFFFF
"""The counter is also the GCM invocation counter, so it fits 32 bits."""


class ControlState(enum.IntEnum):
    """Disconnect control's ``control_state`` (IEC 62056-6-2, class 70)."""

    DISCONNECTED = 0
    CONNECTED = 1
    READY_FOR_RECONNECTION = 2


@dataclass(frozen=True, slots=True)
class OpenedCommand:
    """A command whose signature, recipient, counter and tag all verified."""

    counter: int
    signed_at: dt.datetime
    plain: bytes
    """The plain ACTION or SET request to execute."""


def seal_command(
    plain: bytes,
    *,
    counter: int,
    command_key: SigningKey,
    headend_title: bytes,
    meter_title: bytes,
    unicast_key: SecretKey,
    authentication_key: SecretKey,
    signed_at: dt.datetime,
) -> bytes:
    """Protect ``plain`` for one meter with its keys, then sign it with the command key."""
    if not 1 <= counter <= MAX_COUNTER:
        raise ValueError("command counter out of range")
    inner = protect(
        plain,
        kind=CipheringKind.GENERAL_GLO,
        security=SecurityControl(),
        invocation_counter=counter,
        system_title=headend_title,
        key=GcmKey(unicast_key),
        authentication_key=authentication_key,
    )
    return sign_general(
        inner,
        signing_key=command_key,
        transaction_id=counter.to_bytes(8, "big"),
        originator=headend_title,
        recipient=meter_title,
        date_time=CosemDateTime.from_datetime(signed_at).to_bytes(),
    ).to_bytes()


def open_command(
    unverified: bytes,
    *,
    command_key: VerifyingKey,
    headend_title: bytes,
    meter_title: bytes,
    unicast_key: SecretKey,
    authentication_key: SecretKey,
    last_counter: int,
) -> OpenedCommand:
    """Verify a command for this meter; return it, or raise without having acted.

    The checks run cheapest first and all must pass: size, envelope shape, titles,
    counter above ``last_counter``, the command key's signature, then the GCM tag with
    the meter's own keys.

    Raises:
        DecodeError: oversized, not general-signing around general-glo-ciphering.
        UnexpectedSystemTitleError: not from the head-end, or addressed to another meter.
        ReplayError: a counter at or below the highest executed one.
        SignatureInvalidError: not signed by the head-end's command key.
        AuthenticationFailedError: the inner APDU does not verify with this meter's keys.
        InsufficientProtectionError: the inner APDU is not authenticated and encrypted.
    """
    if len(unverified) > MAX_COMMAND:
        raise DecodeError(f"command of {len(unverified)} bytes")
    envelope = decode_apdu(unverified)
    if not isinstance(envelope, GeneralSigning):
        raise DecodeError("a command must be general-signing")
    if envelope.originator_system_title != headend_title:
        raise UnexpectedSystemTitleError("command not from this meter's head-end")
    if envelope.recipient_system_title != meter_title:
        raise UnexpectedSystemTitleError("command addressed to another meter")
    if len(envelope.transaction_id) != 8:
        raise DecodeError("command counter must be 8 bytes")
    counter = int.from_bytes(envelope.transaction_id, "big")
    if counter <= last_counter:
        raise ReplayError(f"command counter {counter} not above {last_counter}")
    content = verify_general_signing(envelope, command_key)
    inner = decode_apdu(content)
    if not isinstance(inner, GeneralGloCiphering) or inner.dedicated:
        raise DecodeError("a command's content must be general-glo-ciphering")
    if inner.system_title != headend_title or inner.invocation_counter != counter:
        raise UnexpectedSystemTitleError("inner title or counter differs from the envelope")
    if not (inner.security.authenticated and inner.security.encrypted):
        raise InsufficientProtectionError("commands must be authenticated and encrypted")
    plain = unprotect(
        inner,
        system_title=headend_title,
        key=GcmKey(unicast_key),
        authentication_key=authentication_key,
    )
    try:
        signed_at = CosemDateTime.from_bytes(envelope.date_time).to_datetime()
    except (DecodeError, ValueError) as exc:
        raise DecodeError(f"command date-time: {exc}") from None
    return OpenedCommand(counter, signed_at, plain)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a meter reports after a command: counter, DLMS result code, relay state."""

    counter: int
    result: int
    """ActionResult / DataAccessResult code; 0 is success."""
    control_state: ControlState
    at: dt.datetime
    value: int | None = None
    """A read's value (an on-demand read of the import register), else None."""


def result_body(r: CommandResult) -> Structure:
    """The DataNotification body a meter pushes on its ``events`` topic (a read adds its value)."""
    items: tuple[Data, ...] = (
        OctetString(RESULT_TAG),
        DoubleLongUnsigned(r.counter),
        Enum(r.result),
        Enum(int(r.control_state)),
        OctetString(CosemDateTime.from_datetime(r.at).to_bytes()),
    )
    if r.value is not None:
        items += (DoubleLongUnsigned(r.value),)
    return Structure(items)


def parse_result(body: Data) -> CommandResult | None:
    """A :func:`result_body` structure back, or None if ``body`` is not one.

    Raises:
        DecodeError: it starts like a result but is malformed.
    """
    if not (
        isinstance(body, Structure)
        and len(body.items) in (5, 6)
        and isinstance(body.items[0], OctetString)
        and body.items[0].value == RESULT_TAG
    ):
        return None
    _, counter, result, state, stamp = body.items[:5]
    value = body.items[5] if len(body.items) == 6 else None
    if value is not None and not isinstance(value, DoubleLongUnsigned):
        raise DecodeError("malformed command result value")
    if not (
        isinstance(counter, DoubleLongUnsigned)
        and isinstance(result, Enum)
        and isinstance(state, Enum)
        and isinstance(stamp, OctetString)
    ):
        raise DecodeError("malformed command result")
    try:
        control = ControlState(state.value)
    except ValueError:
        raise DecodeError(f"unknown control state {state.value}") from None
    at = CosemDateTime.from_bytes(stamp.value).to_datetime()
    return CommandResult(
        counter.value, result.value, control, at, None if value is None else value.value
    )
