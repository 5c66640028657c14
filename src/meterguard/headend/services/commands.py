"""Critical commands under dual control (API-10): propose, approve, sign, send, answer.

:class:`Commands` is the service the web API calls. A command's life:

1. **proposed** by a utility user (operator, engineer, security administrator) with a
   reason — ``disconnect``, ``reconnect``, ``load_limit`` (W), ``tariff_change`` (1-8),
   ``key_change`` (a new unicast key, generated at approval, kept as ``new`` in the key
   store and wrapped under the meter's master key; ingest confirms it when the meter's
   pushes verify under it);
2. **approved** by a *different* utility user (dual control; the proposer approving
   their own command is refused and audited), or **rejected**; a proposal not approved
   within :data:`APPROVAL_WINDOW` expires;
3. on approval, in one transaction, the meter's next command **counter** is allocated
   (unique per meter, increasing), the plain DLMS ACTION/SET is protected with the
   meter's keys and signed with the head-end's **command key**
   (:func:`meterguard.cosem.command.seal_command`), and the state becomes ``sent``;
   after the commit the envelope is published to ``meters/<id>/commands`` — if no meter
   subscription took it (the meter is offline) the command is ``undelivered``;
4. the meter's result push comes back through ingest, and
   :meth:`~meterguard.headend.store.repository.Store.commit_ingest` marks the command
   ``executed`` (result 0) or ``failed`` in the batch's transaction.

Every step goes to the audit log in the same transaction, naming both approvers (LOG-1).
The service does not talk to the broker itself: ``publish`` is given by the caller (the
demo passes an MQTT publisher with the head-end's service identity). It does not decide
who is logged in — the API passes a :class:`~meterguard.headend.services.accounts.
Principal` it authenticated.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, Protocol

from meterguard.cosem.axdr import (
    Array,
    DoubleLongUnsigned,
    Enum,
    Integer,
    OctetString,
    Structure,
    Unsigned,
)
from meterguard.cosem.command import (
    ALARM_ACK,
    ATTESTATION,
    DISCONNECT_CONTROL,
    IMAGE_TRANSFER,
    IMPORT_REGISTER,
    LIMITER,
    SECURITY_SETUP,
    TARIFF,
    seal_command,
)
from meterguard.cosem.xdlms import (
    ActionRequestNormal,
    AttributeDescriptor,
    AttributeWithSelection,
    GetRequestNormal,
    MethodDescriptor,
    SetRequestNormal,
)
from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.errors import AccessDeniedError, InvalidValueError, TransportError
from meterguard.headend.services.accounts import Principal
from meterguard.headend.store.audit import Fields
from meterguard.headend.store.commands import CommandView

__all__ = [
    "APPROVAL_WINDOW",
    "COMMAND_ROLES",
    "FIRMWARE_KINDS",
    "KINDS",
    "CommandView",
    "Commands",
    "DualControlError",
    "firmware_request",
    "plain_request",
]

log = logging.getLogger(__name__)

COMMAND_ROLES = frozenset({"operator", "engineer", "security_admin"})
"""Who may propose and approve (auditors only read; consumers never see commands)."""
APPROVAL_WINDOW = 3600
"""Seconds a proposal waits for its second approver before it expires."""
KINDS = {
    "disconnect": None,
    "reconnect": None,
    "load_limit": (100, 100_000),  # W
    "tariff_change": (1, 8),  # tariff register index
    "key_change": None,  # a new global unicast key, wrapped under the meter's master key
}
"""Command kinds and the range of their value (None: no value)."""

MeterKeys = Callable[[str], tuple[bytes, SecretKey, SecretKey]]
"""meter id → (system title, unicast key, authentication key)."""
RotateKey = Callable[[str], bytes]
"""meter id → a new unicast key (kept as ``new`` in the key store) wrapped under its KEK."""
Publish = Callable[[str, bytes], bool]
"""(meter id, envelope) → on the wire; False if the meter was not there to take it."""


class DualControlError(AccessDeniedError):
    """The same person tried to be both proposer and approver of a command."""

    event = "dual_control_violation"


ACK_ACTOR = "system:ingest"
"""Who acknowledges alarms: the head-end itself, once the alarm is stored (TAMP-3)."""
MAX_ACKS = 32
"""Sequences one acknowledgement carries at most (the meter holds 8 pending)."""


def ack_request(sequences: Sequence[int]) -> bytes:
    """SET of the alarm acknowledgement object: the alarm push sequences that were stored."""
    attr = AttributeWithSelection(AttributeDescriptor(1, ALARM_ACK, 2))
    items = Array(tuple(DoubleLongUnsigned(s) for s in sorted(set(sequences))[:MAX_ACKS]))
    return SetRequestNormal(0xC1, attr, items).to_bytes()


FIRMWARE_KINDS = frozenset({"firmware_download", "firmware_activate", "attest"})
"""Commands a firmware campaign or an attestation sends (after its own dual control)."""


def firmware_request(kind: str, argument: str, length: int = 0) -> bytes:
    """The plain request of a firmware command.

    ``firmware_download``: image transfer initiate with the TUF target name and its length;
    ``firmware_activate``: image activate with the image's SHA-256 (FW-14 names the image);
    ``attest``: the nonce (hex) written to the attestation challenge (FW-11).
    """
    if kind == "firmware_download":
        method = MethodDescriptor(18, IMAGE_TRANSFER, 1)
        params = Structure((OctetString(argument.encode("ascii")), DoubleLongUnsigned(length)))
        return ActionRequestNormal(0xC1, method, params).to_bytes()
    if kind == "firmware_activate":
        method = MethodDescriptor(18, IMAGE_TRANSFER, 4)
        return ActionRequestNormal(0xC1, method, OctetString(bytes.fromhex(argument))).to_bytes()
    if kind == "attest":
        attr = AttributeWithSelection(AttributeDescriptor(1, ATTESTATION, 2))
        return SetRequestNormal(0xC1, attr, OctetString(bytes.fromhex(argument))).to_bytes()
    raise InvalidValueError(f"no firmware request for {kind}")


def plain_request(kind: str, value: int | None, wrapped_key: bytes | None = None) -> bytes:
    """The plain DLMS request a command kind stands for."""
    if kind == "key_change" and wrapped_key is not None:
        # Security setup (class 64) key_transfer: global unicast key (id 0), wrapped (RFC 3394).
        method = MethodDescriptor(64, SECURITY_SETUP, 2)
        item = Structure((Enum(int(KeyId.GLOBAL_UNICAST)), OctetString(wrapped_key)))
        return ActionRequestNormal(0xC1, method, Array((item,))).to_bytes()
    if kind == "read":
        attr = AttributeWithSelection(AttributeDescriptor(3, IMPORT_REGISTER, 2))
        return GetRequestNormal(0xC1, attr).to_bytes()
    if kind in ("disconnect", "reconnect"):
        method = MethodDescriptor(70, DISCONNECT_CONTROL, 1 if kind == "disconnect" else 2)
        return ActionRequestNormal(0xC1, method, Integer(0)).to_bytes()
    if kind == "load_limit" and value is not None:
        attr = AttributeWithSelection(AttributeDescriptor(71, LIMITER, 4))
        return SetRequestNormal(0xC1, attr, DoubleLongUnsigned(value)).to_bytes()
    if kind == "tariff_change" and value is not None:
        attr = AttributeWithSelection(AttributeDescriptor(1, TARIFF, 2))
        return SetRequestNormal(0xC1, attr, Unsigned(value)).to_bytes()
    raise InvalidValueError(f"no request for {kind}")


class OnDemandReads(Protocol):
    """Admits on-demand reads (:class:`~meterguard.headend.services.usage.ConsumptionData`)."""

    def on_demand_read(self, who: Principal, meter_id: str, *, now: int) -> None:
        """PRIV-1 and API-11 for one read."""


class Unit(Protocol):
    """One step's unit of work (:class:`~meterguard.headend.store.commands.CommandUnit`)."""

    def meter_state(self, meter_id: str) -> str | None:
        """The meter's lifecycle state."""

    def add(self, **values: Any) -> int:
        """A new command's id."""

    def locked(self, command_id: int) -> CommandView | None:
        """The command, locked for the step."""

    def set(self, command_id: int, **values: Any) -> None:
        """Change a command."""

    def next_counter(self, meter_id: str) -> int:
        """The meter's next command counter."""

    def audit(self, entries: Sequence[Fields]) -> None:
        """LOG-1 entries in the step's transaction."""


class Repository(Protocol):
    """Where commands are kept (:class:`~meterguard.headend.store.commands.CommandRepository`)."""

    def transaction(self) -> AbstractContextManager[Unit]:
        """One step, all or nothing."""

    def get(self, command_id: int) -> CommandView | None:
        """One command."""

    def list(self, *, meter_id: str | None = None, limit: int = 100) -> list[CommandView]:
        """Newest first."""

    def mark_undelivered(self, command_id: int) -> None:
        """No meter took it."""


class Commands:
    """Dual-control commands: the rules, over a repository (unit-testable in memory)."""

    def __init__(
        self,
        repository: Repository,
        meter_keys: MeterKeys,
        command_key: SigningKey,
        headend_title: bytes,
        publish: Publish | None = None,
        rotate_key: RotateKey | None = None,
        *,
        reads: OnDemandReads,
    ) -> None:
        self._repo = repository
        self._reads = reads
        self._keys = meter_keys
        self._command_key = command_key
        self.headend_title = headend_title
        self.publish = publish
        self._rotate_key = rotate_key

    def __repr__(self) -> str:
        return f"Commands(headend={self.headend_title.hex()}, command key <redacted>)"

    # ------------------------------------------------------------------ reading

    def get(self, command_id: int) -> CommandView | None:
        """One command, or None."""
        return self._repo.get(command_id)

    def list(self, *, meter_id: str | None = None, limit: int = 100) -> list[CommandView]:
        """Newest first."""
        return self._repo.list(meter_id=meter_id, limit=limit)

    # ------------------------------------------------------------------ the steps

    @staticmethod
    def _may_command(who: Principal, what: str) -> None:
        if who.role not in COMMAND_ROLES:
            raise AccessDeniedError(f"role {who.role} may not {what}")

    @staticmethod
    def _active_meter(tx: Unit, meter_id: str) -> None:
        if tx.meter_state(meter_id) != "active":
            raise InvalidValueError("no such active meter")

    @staticmethod
    def _audit(
        tx: Unit,
        actor: str,
        cmd: tuple[int, str],
        action: str,
        result: str,
        detail: str = "",
        *,
        now: int,
    ) -> None:
        """LOG-1: one step of command ``cmd`` = (id, meter), in the step's transaction."""
        cid, meter_id = cmd
        entry = Fields(
            at=now,
            actor=actor,
            target=meter_id,
            action=action,
            result=result,
            request_id=f"command-{cid}",
            detail=detail,
        )
        tx.audit([entry])

    def propose(
        self,
        who: Principal,
        meter_id: str,
        kind: str,
        value: int | None,
        reason: str,
        *,
        now: int,
    ) -> CommandView:
        """Record a proposal (audited).

        Raises:
            AccessDeniedError: the caller's role may not command.
            InvalidValueError: unknown kind, bad value, unknown or inactive meter.
        """
        self._may_command(who, "propose commands")
        if kind not in KINDS or (kind == "key_change" and self._rotate_key is None):
            raise InvalidValueError(f"unknown command kind {kind!r}")
        bounds = KINDS[kind]
        if bounds is None:
            if value is not None:
                raise InvalidValueError(f"{kind} takes no value")
        elif value is None or not bounds[0] <= value <= bounds[1]:
            raise InvalidValueError(f"{kind} needs a value in {bounds[0]}..{bounds[1]}")
        with self._repo.transaction() as tx:
            self._active_meter(tx, meter_id)
            cid = tx.add(
                meter_id=meter_id,
                kind=kind,
                value=value,
                state="proposed",
                proposed_by=who.actor,
                proposed_at=now,
                reason=reason,
            )
            detail = f"value={value} reason={reason[:200]}"
            self._audit(
                tx,
                who.actor,
                (cid, meter_id),
                f"command_proposed:{kind}",
                "proposed",
                detail,
                now=now,
            )
        view = self.get(cid)
        assert view is not None  # noqa: S101
        return view

    def read_now(self, who: Principal, meter_id: str, *, now: int) -> CommandView:
        """An on-demand read: not critical, so one person; still signed, counted and audited.

        The read is consumption data: the consumption-data service admits it (once per
        consented period, PRIV-1) and logs it in the consumer's access log (API-11).

        Raises:
            AccessDeniedError: the caller's role may not command, or the consent does not
                allow another read yet.
            NotFoundError: no such meter.
            InvalidValueError: inactive meter.
        """
        self._may_command(who, "read meters on demand")
        self._reads.on_demand_read(who, meter_id, now=now)
        with self._repo.transaction() as tx:
            self._active_meter(tx, meter_id)
            counter = tx.next_counter(meter_id)
            envelope = self._seal(meter_id, plain_request("read", None), counter, now)
            cid = tx.add(
                meter_id=meter_id,
                kind="read",
                state="sent",
                proposed_by=who.actor,
                proposed_at=now,
                reason="on-demand read",
                approved_by=who.actor,
                approved_at=now,
                counter=counter,
            )
            self._audit(
                tx,
                who.actor,
                (cid, meter_id),
                "on_demand_read",
                "signed_and_sent",
                f"counter {counter}",
                now=now,
            )
        self._send(cid, meter_id, envelope)
        view = self.get(cid)
        assert view is not None  # noqa: S101
        return view

    def acknowledge_alarms(self, meter_id: str, sequences: Sequence[int], *, now: int) -> int:
        """Tell a meter its alarms ``sequences`` are stored, so it stops re-sending them (TAMP-3).

        Not a critical command and not a person's: the head-end sends it after the alarm's
        commit, through the same counter, signature and audit as every command (kind
        ``alarm_ack``). Idempotent on the meter (a sequence no longer pending is ignored).
        Returns the command's id.

        Raises:
            NotFoundError: no such meter.
            InvalidValueError: no sequences, or an inactive meter.
        """
        if not sequences:
            raise InvalidValueError("no alarm to acknowledge")
        seqs = sorted(set(sequences))[:MAX_ACKS]
        with self._repo.transaction() as tx:
            self._active_meter(tx, meter_id)
            counter = tx.next_counter(meter_id)
            envelope = self._seal(meter_id, ack_request(seqs), counter, now)
            detail = f"alarm(s) {', '.join(map(str, seqs))} stored; counter {counter}"
            cid = tx.add(
                meter_id=meter_id,
                kind="alarm_ack",
                state="sent",
                proposed_by=ACK_ACTOR,
                proposed_at=now,
                reason=detail[:200],
                approved_by=ACK_ACTOR,
                approved_at=now,
                counter=counter,
            )
            self._audit(
                tx, ACK_ACTOR, (cid, meter_id), "alarm_acknowledged", "signed_and_sent", detail,
                now=now,
            )  # fmt: skip
        self._send(cid, meter_id, envelope)
        return cid

    def issue(
        self,
        meter_id: str,
        kind: str,
        plain: bytes,
        *,
        proposed_by: str,
        approved_by: str,
        reference: str,
        now: int,
    ) -> int:
        """Sign and send a command whose dual control happened upstream; its id.

        A firmware campaign is proposed and approved by two people as a whole (and its
        activation again by two): each meter's command then carries both names, the counter,
        the signature and an audit entry, like every command. ``reference`` (the campaign) goes
        in the command's reason.

        Raises:
            InvalidValueError: not a firmware kind, an inactive meter, or one person twice.
        """
        if kind not in FIRMWARE_KINDS:
            raise InvalidValueError(f"{kind} is not issued this way")
        if proposed_by == approved_by and kind != "attest":
            raise DualControlError("one person cannot propose and approve")
        with self._repo.transaction() as tx:
            self._active_meter(tx, meter_id)
            counter = tx.next_counter(meter_id)
            envelope = self._seal(meter_id, plain, counter, now)
            cid = tx.add(
                meter_id=meter_id,
                kind=kind,
                state="sent",
                proposed_by=proposed_by,
                proposed_at=now,
                reason=reference[:200],
                approved_by=approved_by,
                approved_at=now,
                counter=counter,
            )
            detail = f"{reference[:150]}; proposed by {proposed_by}, approved by {approved_by}"
            self._audit(
                tx, approved_by, (cid, meter_id), f"command_issued:{kind}", "signed_and_sent",
                f"{detail}; counter {counter}", now=now,
            )  # fmt: skip
        self._send(cid, meter_id, envelope)
        return cid

    def _seal(self, meter_id: str, plain: bytes, counter: int, now: int) -> bytes:
        title, ek, ak = self._keys(meter_id)
        return seal_command(
            plain,
            counter=counter,
            command_key=self._command_key,
            headend_title=self.headend_title,
            meter_title=title,
            unicast_key=ek,
            authentication_key=ak,
            signed_at=dt.datetime.fromtimestamp(now, dt.UTC),
        )

    def _send(self, command_id: int, meter_id: str, envelope: bytes) -> None:
        """Publish after the commit; a meter that was not there makes it ``undelivered``."""
        if self.publish is None:
            return
        try:
            delivered = self.publish(meter_id, envelope)
        except TransportError as exc:
            log.warning("command %d not published: %s", command_id, exc)
            delivered = False
        if not delivered:  # the meter was offline: it never saw this counter
            self._repo.mark_undelivered(command_id)

    @staticmethod
    def _pending(tx: Unit, command_id: int, now: int) -> CommandView | None:
        """The command, locked for this step; a proposal past its window expires."""
        cmd = tx.locked(command_id)
        if cmd is not None and cmd.state == "proposed" and now - cmd.proposed_at > APPROVAL_WINDOW:
            tx.set(cmd.id, state="expired")
            cmd = replace(cmd, state="expired")
        return cmd

    def approve(self, who: Principal, command_id: int, *, now: int) -> CommandView | None:
        """Second approver: sign and send. None if there is no such pending command.

        Raises:
            DualControlError: the approver proposed it (audited as a denial).
            AccessDeniedError: the caller's role may not command.
        """
        self._may_command(who, "approve commands")
        envelope: bytes | None = None
        with self._repo.transaction() as tx:
            cmd = self._pending(tx, command_id, now)
            if cmd is None or cmd.state != "proposed":
                return None
            ref = (cmd.id, cmd.meter_id)
            if cmd.proposed_by == who.actor:
                self._audit(
                    tx,
                    who.actor,
                    ref,
                    f"command_approved:{cmd.kind}",
                    "denied_same_person",
                    "dual control: the proposer cannot approve",
                    now=now,
                )
                error = DualControlError("the proposer of a command cannot approve it")
            else:
                error = None
                counter = tx.next_counter(cmd.meter_id)
                wrapped = None
                if cmd.kind == "key_change":
                    assert self._rotate_key is not None  # noqa: S101 - checked at proposal
                    wrapped = self._rotate_key(cmd.meter_id)
                plain = plain_request(cmd.kind, cmd.value, wrapped)
                envelope = self._seal(cmd.meter_id, plain, counter, now)
                tx.set(
                    cmd.id, state="sent", approved_by=who.actor, approved_at=now, counter=counter
                )
                both = f"proposed by {cmd.proposed_by}, approved by {who.actor}"
                self._audit(
                    tx,
                    who.actor,
                    ref,
                    f"command_approved:{cmd.kind}",
                    "signed_and_sent",
                    f"{both}, counter {counter}",
                    now=now,
                )
        if error is not None:
            raise error
        if envelope is not None:
            self._send(command_id, cmd.meter_id, envelope)
        return self.get(command_id)

    def reject(self, who: Principal, command_id: int, *, now: int) -> CommandView | None:
        """Withdraw (proposer) or reject (another utility user) a pending command."""
        self._may_command(who, "reject commands")
        with self._repo.transaction() as tx:
            cmd = self._pending(tx, command_id, now)
            if cmd is None or cmd.state != "proposed":
                return None
            tx.set(cmd.id, state="rejected")
            self._audit(
                tx,
                who.actor,
                (cmd.id, cmd.meter_id),
                f"command_rejected:{cmd.kind}",
                "rejected",
                now=now,
            )
        return self.get(command_id)
