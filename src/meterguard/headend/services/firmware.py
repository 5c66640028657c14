"""Firmware campaigns, signed status reports and attestation at the head-end (FW-11, FW-12, FW-14).

:class:`FirmwareUpdates` is the one place these rules live; the API, the dashboard, the demo
and the CLI call it.

* **Campaigns**: a utility user proposes one published image (from the TUF repository) for a
  set of active meters with a deadline; a *different* user approves it, and distribution
  starts; the activation is proposed and approved by two people again (FW-14). Each meter's
  command — download (the TUF target name), then activate (the image's SHA-256) — is signed,
  counted and audited by :meth:`~meterguard.headend.services.commands.Commands.issue` naming
  both people. Distribution is staged: :meth:`FirmwareUpdates.advance` keeps at most
  :data:`WAVE` meters of a campaign waiting for an answer. Meters not updated by the deadline
  are flagged ``late``.
* **Signed status reports** (FW-12): a meter's report (installed version, security counter,
  slot, result) is accepted only under the meter's registered attestation key, and never older
  than the last one; it moves the meter's campaign state (staged, updated, failed with the
  meter's reason). A refusal by a meter of an image from our own repository is a security
  event: someone tampered with what the meter was served.
* **Attestation** (FW-11): :meth:`FirmwareUpdates.challenge` sends a fresh nonce; the answer
  must carry that nonce (once, within :data:`NONCE_TTL`), verify under the attestation key, and
  measure an image of the repository with the value its signed target implies. Anything else
  quarantines the meter.

This module holds no SQL (the store does) and speaks no HTTP (the firmware endpoint does).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from meterguard.errors import (
    AccessDeniedError,
    ConflictError,
    DecodeError,
    InvalidValueError,
    MeterguardError,
    NotFoundError,
    RateLimitedError,
    ReplayError,
    SignatureInvalidError,
)
from meterguard.firmware.attestation import Attestation, expected_measurement, verify_signed
from meterguard.firmware.repository import TargetEntry
from meterguard.headend.ingest.processor import TokenBucket
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.commands import COMMAND_ROLES, DualControlError, firmware_request
from meterguard.headend.store.audit import Fields
from meterguard.headend.store.firmware import CampaignView, FirmwareStore, MeterFirmwareView

__all__ = [
    "NONCE_TTL",
    "WAVE",
    "CampaignStatus",
    "FirmwareUpdates",
]

log = logging.getLogger(__name__)

WAVE = 25
"""Meters of one campaign waiting for an answer at a time (staged distribution)."""
NONCE_TTL = 600
"""Seconds an attestation nonce stays valid."""
RESEND_AFTER = 60
"""Seconds a download command waits for the meter's report before it is sent again."""
REPORT_RATE, REPORT_BURST = 0.2, 20.0
"""Reports a meter may send: a few per update step, one every 5 s sustained."""
MAX_BUCKETS = 200_000
MAX_FUTURE = 300
"""Seconds a report's time may be ahead of the head-end's clock."""
MAX_METERS = 100_000
OPEN = ("pending", "sent", "staged", "activating")
SYSTEM = "system:firmware"


class Catalogue(Protocol):
    """The published images (:class:`~meterguard.firmware.repository.FirmwareRepository`)."""

    def target(self, name: str) -> TargetEntry:
        """One image by name or hash; raises NotFoundError."""

    def targets(self) -> list[TargetEntry]:
        """Every published image."""


class Issuer(Protocol):
    """Signs and sends a command (:class:`~meterguard.headend.services.commands.Commands`)."""

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
        """The command's id."""


@dataclass(frozen=True, slots=True)
class CampaignStatus:
    """A campaign with its meters counted per state and its failures (meter, reason)."""

    campaign: CampaignView
    counts: dict[str, int]
    failures: list[tuple[str, str]]


class FirmwareUpdates:
    """The firmware service (see the module docstring)."""

    def __init__(
        self,
        store: FirmwareStore,
        catalogue: Catalogue,
        issuer: Issuer,
        *,
        quarantine: Callable[[str, int], None],
        security_event: Callable[..., None],
    ) -> None:
        self._store = store
        self._catalogue = catalogue
        self._issuer = issuer
        self._quarantine = quarantine
        self._event = security_event
        self._buckets: dict[str, TokenBucket] = {}

    def __repr__(self) -> str:
        return "FirmwareUpdates()"

    # -- meters ---------------------------------------------------------------------------

    def register(self, meter_id: str, attestation_key_pem: bytes) -> bool:
        """Record a meter's attestation public key at manufacture (False: already known)."""
        return self._store.register(meter_id, attestation_key_pem.decode("ascii"))

    def meters(self, meter_ids: Sequence[str] | None = None) -> list[MeterFirmwareView]:
        """Each meter's firmware as last reported, and its attestation state."""
        return self._store.meters(meter_ids)

    def images(self) -> list[TargetEntry]:
        """The published images."""
        return self._catalogue.targets()

    def all_meters(self) -> list[str]:
        """Every active meter."""
        return self._store.all_active_meters()

    def versions(self) -> dict[str, int]:
        """Meters per reported version."""
        return self._store.versions()

    # -- campaigns --------------------------------------------------------------------------

    @staticmethod
    def _may(who: Principal, what: str) -> None:
        if who.role not in COMMAND_ROLES:
            raise AccessDeniedError(f"role {who.role} may not {what}")

    @staticmethod
    def _entry(
        who: str, cid: int | None, action: str, result: str, detail: str, now: int
    ) -> Fields:
        return Fields(
            at=now, actor=who, target=f"campaign-{cid}" if cid else "campaign",
            action=action, result=result, detail=detail[:300],
        )  # fmt: skip

    def propose(
        self,
        who: Principal,
        image: str,
        meter_ids: Sequence[str] | None,
        *,
        deadline: int,
        reason: str,
        now: int,
    ) -> CampaignView:
        """Propose a campaign: ``image`` (name or hash) for ``meter_ids`` by ``deadline``.

        ``meter_ids`` None means every active meter.

        Raises:
            AccessDeniedError: the role may not.
            NotFoundError: no such published image.
            InvalidValueError: no active meter named, too many, or a deadline in the past.
        """
        self._may(who, "propose firmware campaigns")
        entry = self._catalogue.target(image)
        if deadline <= now:
            raise InvalidValueError("the deadline must be in the future")
        if meter_ids is not None and len(meter_ids) > MAX_METERS:
            raise InvalidValueError(f"at most {MAX_METERS} meters per campaign")
        meters = (
            self._store.all_active_meters()
            if meter_ids is None
            else self._store.active_meters(sorted(set(meter_ids)))
        )
        if not meters:
            raise InvalidValueError("no active meter in the campaign")
        values = {
            "image": entry.name,
            "sha256": entry.sha256,
            "version": str(entry.custom.get("version", "")),
            "length": entry.length,
            "deadline": deadline,
            "state": "proposed",
            "reason": reason[:256],
            "proposed_by": who.actor,
            "proposed_at": now,
        }
        detail = f"{entry.name} sha256 {entry.sha256} for {len(meters)} meter(s); {reason[:100]}"
        cid = self._store.add_campaign(
            values,
            meters,
            [self._entry(who.actor, None, "campaign_proposed", "proposed", detail, now)],
            now=now,
        )
        view = self._store.campaign(cid)
        assert view is not None  # noqa: S101 - just written
        return view

    def _dual(self, who: Principal, cid: int, first: str | None, action: str, now: int) -> None:
        if first == who.actor:
            self._store.audit(
                [self._entry(who.actor, cid, action, "denied_same_person",
                             "dual control: the proposer cannot approve", now)]
            )  # fmt: skip
            raise DualControlError("the proposer cannot approve it")

    def _campaign(self, cid: int) -> CampaignView:
        view = self._store.campaign(cid)
        if view is None:
            raise NotFoundError(f"no campaign {cid}")
        return view

    def approve(self, who: Principal, cid: int, *, now: int) -> CampaignView:
        """Second person: distribution starts (the next :meth:`advance` sends the first wave).

        Raises:
            DualControlError: the proposer approving (audited).
            ConflictError: the campaign is not proposed.
        """
        self._may(who, "approve firmware campaigns")
        c = self._campaign(cid)
        if c.state != "proposed":
            raise ConflictError(f"campaign {cid} is {c.state}")
        self._dual(who, cid, c.proposed_by, "campaign_approved", now)
        entry = self._entry(
            who.actor, cid, "campaign_approved", "distributing",
            f"proposed by {c.proposed_by}, approved by {who.actor}; {c.image}", now,
        )  # fmt: skip
        if not self._store.move_campaign(
            cid, "proposed", [entry], state="distributing", approved_by=who.actor,
            approved_at=now,
        ):  # fmt: skip
            raise ConflictError(f"campaign {cid} changed meanwhile")
        return self._campaign(cid)

    def propose_activation(self, who: Principal, cid: int, *, now: int) -> CampaignView:
        """Propose activating the distributed image (FW-14: a second person approves)."""
        self._may(who, "propose activations")
        c = self._campaign(cid)
        if c.state != "distributing":
            raise ConflictError(f"campaign {cid} is {c.state}")
        entry = self._entry(who.actor, cid, "activation_proposed", "proposed",
                            f"activate sha256 {c.sha256}", now)  # fmt: skip
        if not self._store.move_campaign(
            cid, "distributing", [entry], state="activation_proposed", activation_by=who.actor,
            activation_at=now,
        ):  # fmt: skip
            raise ConflictError(f"campaign {cid} changed meanwhile")
        return self._campaign(cid)

    def approve_activation(self, who: Principal, cid: int, *, now: int) -> CampaignView:
        """Second person: the staged meters are told to activate the image by its hash."""
        self._may(who, "approve activations")
        c = self._campaign(cid)
        if c.state != "activation_proposed":
            raise ConflictError(f"campaign {cid} is {c.state}")
        self._dual(who, cid, c.activation_by, "activation_approved", now)
        entry = self._entry(
            who.actor, cid, "activation_approved", "activating",
            f"proposed by {c.activation_by}, approved by {who.actor}; sha256 {c.sha256}", now,
        )  # fmt: skip
        if not self._store.move_campaign(
            cid, "activation_proposed", [entry], state="activating", activated_by=who.actor,
            activated_at=now,
        ):  # fmt: skip
            raise ConflictError(f"campaign {cid} changed meanwhile")
        return self._campaign(cid)

    def cancel(self, who: Principal, cid: int, *, now: int) -> CampaignView:
        """Stop a campaign that has not finished (meters already updated stay updated)."""
        self._may(who, "cancel firmware campaigns")
        c = self._campaign(cid)
        if c.state in ("done", "cancelled", "rejected"):
            raise ConflictError(f"campaign {cid} is {c.state}")
        entry = self._entry(who.actor, cid, "campaign_cancelled", "cancelled", c.image, now)
        if not self._store.move_campaign(cid, c.state, [entry], state="cancelled"):
            raise ConflictError(f"campaign {cid} changed meanwhile")
        return self._campaign(cid)

    def campaigns(self, limit: int = 20) -> list[CampaignStatus]:
        """The newest campaigns with their progress."""
        return [self.status(c.id) for c in self._store.campaigns(limit=limit)]

    def status(self, cid: int) -> CampaignStatus:
        """One campaign's progress: meters per state, failures with the meters' reasons."""
        c = self._campaign(cid)
        failed = self._store.campaign_meters(cid, states=("failed", "late"), limit=50)
        return CampaignStatus(c, self._store.counts(cid), [(m, d or s) for m, s, d, _ in failed])

    def advance(self, *, now: int) -> int:
        """One step of every running campaign (next wave, activations, lateness); commands sent."""
        sent = 0
        running = ("distributing", "activation_proposed", "activating")
        for c in self._store.campaigns(states=running):
            if now > c.deadline:
                late = self._store.campaign_meters(c.id, states=OPEN)
                self._store.set_meters(
                    c.id, [m for m, *_ in late], "late", now=now,
                    detail="not updated by the deadline", expect=OPEN,
                )  # fmt: skip
                entry = self._entry(SYSTEM, c.id, "campaign_finished", "deadline",
                                    f"{len(late)} meter(s) late", now)  # fmt: skip
                self._store.move_campaign(c.id, c.state, [entry], state="done")
                continue
            if c.state == "distributing":
                # A download command no meter took (offline at that moment), or whose answer
                # was lost: the meter goes back in line (downloading again is harmless).
                stale = [
                    m
                    for m, _, _, at in self._store.campaign_meters(c.id, states=("sent",))
                    if now - at > RESEND_AFTER
                ]
                self._store.set_meters(c.id, stale, "pending", now=now, detail="re-sent",
                                       expect=("sent",))  # fmt: skip
                sent += self._wave(c, "pending", "sent", "firmware_download", c.image, now)
            elif c.state == "activating":
                sent += self._wave(c, "staged", "activating", "firmware_activate", c.sha256, now)
                counts = self._store.counts(c.id)
                if not any(counts.get(s) for s in OPEN):
                    entry = self._entry(SYSTEM, c.id, "campaign_finished", "done",
                                        str(counts), now)  # fmt: skip
                    self._store.move_campaign(c.id, "activating", [entry], state="done")
        return sent

    def _wave(self, c: CampaignView, source: str, to: str, kind: str, arg: str, now: int) -> int:
        waiting = self._store.counts(c.id).get(to, 0)
        room = WAVE - waiting
        if room <= 0:
            return 0
        batch = [m for m, *_ in self._store.campaign_meters(c.id, states=(source,), limit=room)]
        plain = firmware_request(kind, arg, c.length)
        approver = c.approved_by if kind == "firmware_download" else c.activated_by
        proposer = c.proposed_by if kind == "firmware_download" else c.activation_by
        sent = 0
        for m in batch:
            self._store.set_meters(c.id, [m], to, now=now, expect=(source,))
            try:
                self._issuer.issue(
                    m, kind, plain, proposed_by=proposer or "", approved_by=approver or "",
                    reference=f"campaign {c.id}: {c.image}", now=now,
                )  # fmt: skip
                sent += 1
            except MeterguardError as exc:  # e.g. the meter was quarantined meanwhile
                self._store.set_meters(c.id, [m], "failed", now=now, detail=f"not sent: {exc}")
        return sent

    # -- what meters send ---------------------------------------------------------------------

    def _admit(self, data: bytes, now: int) -> None:
        """A bucket per claimed meter before any signature check or write (DOS-1)."""
        claimed = Attestation.from_bytes(data).body.get("meter")
        key = claimed if isinstance(claimed, str) and len(claimed) <= 32 else "?"
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.clear()
            bucket = self._buckets[key] = TokenBucket(REPORT_RATE, REPORT_BURST)
        if not bucket.allow(now):
            raise RateLimitedError("too many firmware reports", retry_after=60)

    def _verified(self, data: bytes, now: int) -> tuple[str, dict[str, Any]]:
        doc = Attestation.from_bytes(data)
        meter = doc.body.get("meter")
        if not isinstance(meter, str) or len(meter) > 32:
            raise DecodeError("a signed document without a meter")
        key = self._store.attestation_key(meter)
        if key is None:
            raise AccessDeniedError("a signed document from an unknown meter")
        try:
            return meter, verify_signed(doc, key.encode("ascii"))
        except SignatureInvalidError:
            self._event(at=now, event="firmware_report_forged", detail="signature does not verify",
                        meter_id=meter, summarise=True)  # fmt: skip
            raise

    def receive(self, data: bytes, *, now: int) -> str:
        """A signed document from a meter (a status report or an attestation); what it did.

        Raises:
            DecodeError: not a signed document.
            AccessDeniedError: an unknown meter.
            SignatureInvalidError: the signature does not verify (a security event).
            ReplayError: an old report, or a nonce not outstanding (a security event).
            RateLimitedError: the meter sent too many reports (refused before any work).
        """
        self._admit(data, now)
        meter, body = self._verified(data, now)
        if body.get("kind") == "attestation":
            return self._attestation(meter, body, now)
        if body.get("kind") != "status":
            raise DecodeError("unknown kind of signed document")
        return self._report(meter, body, now)

    def _report(self, meter: str, body: dict[str, Any], now: int) -> str:
        try:
            at = int(dt_seconds(str(body["at"])))
            values: dict[str, Any] = {
                "version": str(body["version"])[:32],
                "sha256": str(body["firmware_sha256"])[:64],
                "slot": str(body["slot"])[:1],
                "counter": int(body["counter"]),
                "result": str(body["result"])[:64],
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError("a status report without its fields") from exc
        last = self._store.meter(meter)
        if (last is not None and last.reported_at is not None and at < last.reported_at) or (
            at > now + MAX_FUTURE
        ):
            self._event(at=now, event="firmware_report_replayed",
                        detail="report older than the last", meter_id=meter,
                        summarise=True)  # fmt: skip
            raise ReplayError("a report older than the meter's last")
        self._store.record_report(meter, at=at, **values)
        result, target = str(values["result"]), str(body.get("target") or "")
        running = ("distributing", "activation_proposed", "activating")
        campaigns = self._store.meter_campaigns(meter, target, running)
        for cid in campaigns:
            if result == "staged":
                self._store.set_meters(cid, [meter], "staged", now=now, expect=("sent", "pending"))
            elif result == "confirmed":
                self._store.set_meters(
                    cid, [meter], "updated", now=now, detail=str(values["version"])
                )
            else:
                self._store.set_meters(cid, [meter], "failed", now=now, detail=result)
        if result.startswith("refused:") and campaigns:
            self._event(at=now, event="firmware_refused",
                        detail=f"meter refused {target[:80]}: {result}", meter_id=meter,
                        summarise=True)  # fmt: skip
        return result

    def challenge(self, who: Principal, meter_ids: Sequence[str], *, now: int) -> int:
        """Send each meter a fresh attestation nonce (FW-11); how many were sent."""
        self._may(who, "request attestations")
        sent = 0
        for m in self._store.active_meters(sorted(set(meter_ids))[:1000]):
            nonce = secrets.token_hex(16)
            if not self._store.set_nonce(m, nonce, at=now):
                continue
            self._issuer.issue(
                m, "attest", firmware_request("attest", nonce), proposed_by=who.actor,
                approved_by=who.actor, reference="attestation challenge", now=now,
            )  # fmt: skip
            sent += 1
        return sent

    def _attestation(self, meter: str, body: dict[str, Any], now: int) -> str:
        nonce = str(body.get("nonce", ""))
        issued = self._store.take_nonce(meter, nonce) if nonce else None
        if issued is None or now - issued > NONCE_TTL:
            self._event(at=now, event="attestation_replayed", detail="nonce not outstanding",
                        meter_id=meter, summarise=True)  # fmt: skip
            raise ReplayError("an attestation without an outstanding nonce")
        sha = str(body.get("firmware_sha256", ""))
        try:
            expected = expected_measurement(self._catalogue.target(sha).custom, sha)
        except (NotFoundError, KeyError, TypeError):
            expected = None
        if expected is not None and body.get("measurement") == expected:
            self._store.set_attestation(meter, "trusted", at=now)
            return "trusted"
        self._store.set_attestation(meter, "mismatch", at=now)
        why = "an image the repository does not hold" if expected is None else "a wrong measurement"
        self._event(at=now, event="attestation_mismatch", detail=f"meter measures {why}",
                    meter_id=meter)  # fmt: skip
        try:
            self._quarantine(meter, now)
        except MeterguardError as exc:  # already quarantined, or retired
            log.info("attestation mismatch of %s: %s", meter, exc)
        return "mismatch"


def dt_seconds(iso: str) -> float:
    """Seconds since the epoch of an ISO 8601 time with an offset."""
    t = dt.datetime.fromisoformat(iso)
    if t.tzinfo is None:
        raise ValueError("a time without an offset")
    return t.timestamp()
