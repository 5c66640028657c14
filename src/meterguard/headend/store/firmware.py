"""The SQL of firmware: campaigns, their meters, what each meter reported, attestation nonces.

Every change is one transaction with its audit entries (LOG-1). The rules — who may propose or
approve, what a report means, when a meter is late, what a measurement must equal — are the
firmware service's (:mod:`meterguard.headend.services.firmware`); this module only stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, insert, or_, select, update

from meterguard.headend.store.audit import AuditWriter, Fields
from meterguard.headend.store.models import CampaignMeter, FirmwareCampaign, Meter, MeterFirmware

__all__ = ["CampaignView", "FirmwareStore", "MeterFirmwareView"]


@dataclass(frozen=True, slots=True)
class CampaignView:
    """A campaign as the API shows it."""

    id: int
    image: str
    sha256: str
    version: str
    length: int
    deadline: int
    state: str
    reason: str
    proposed_by: str
    proposed_at: int
    approved_by: str | None
    approved_at: int | None
    activation_by: str | None
    activation_at: int | None
    activated_by: str | None
    activated_at: int | None


@dataclass(frozen=True, slots=True)
class MeterFirmwareView:
    """A meter's firmware as it last reported it, and its attestation state."""

    meter_id: str
    version: str | None
    sha256: str | None
    slot: str | None
    counter: int | None
    result: str | None
    reported_at: int | None
    attestation: str
    attested_at: int | None


class FirmwareStore:
    """Firmware rows over one engine."""

    def __init__(self, engine: Engine, audit: AuditWriter) -> None:
        self.engine, self._audit = engine, audit

    def __repr__(self) -> str:
        return "FirmwareStore()"

    # -- meters ---------------------------------------------------------------------------------

    def register(self, meter_id: str, attestation_key: str) -> bool:
        """Record a meter's attestation public key (at manufacture); False if already known."""
        with self.engine.begin() as conn:
            if conn.scalar(
                select(MeterFirmware.meter_id).where(MeterFirmware.meter_id == meter_id)
            ):
                return False
            conn.execute(
                insert(MeterFirmware).values(meter_id=meter_id, attestation_key=attestation_key)
            )
        return True

    def attestation_key(self, meter_id: str) -> str | None:
        """The meter's registered attestation public key (PEM)."""
        with self.engine.connect() as conn:
            return conn.scalar(
                select(MeterFirmware.attestation_key).where(MeterFirmware.meter_id == meter_id)
            )

    def meter(self, meter_id: str) -> MeterFirmwareView | None:
        """One meter's firmware row."""
        rows = self.meters([meter_id])
        return rows[0] if rows else None

    def meters(
        self, meter_ids: Sequence[str] | None = None, limit: int = 500
    ) -> list[MeterFirmwareView]:
        """Meters' firmware rows, by meter id."""
        q = select(
            MeterFirmware.meter_id, MeterFirmware.version, MeterFirmware.sha256, MeterFirmware.slot,
            MeterFirmware.counter, MeterFirmware.result, MeterFirmware.reported_at,
            MeterFirmware.attestation, MeterFirmware.attested_at,
        ).order_by(MeterFirmware.meter_id).limit(limit)  # fmt: skip
        if meter_ids is not None:
            q = q.where(MeterFirmware.meter_id.in_(list(meter_ids)))
        with self.engine.connect() as conn:
            return [MeterFirmwareView(*r) for r in conn.execute(q)]

    def versions(self) -> dict[str, int]:
        """How many meters report each version."""
        q = select(MeterFirmware.version, func.count()).group_by(MeterFirmware.version)
        with self.engine.connect() as conn:
            return {str(v): int(n) for v, n in conn.execute(q)}

    def record_report(self, meter_id: str, *, at: int, **values: Any) -> None:
        """Store what a verified report says."""
        with self.engine.begin() as conn:
            conn.execute(
                update(MeterFirmware)
                .where(MeterFirmware.meter_id == meter_id)
                .values(reported_at=at, **values)
            )

    def set_nonce(self, meter_id: str, nonce: str, *, at: int) -> bool:
        """Remember the nonce sent to a meter (one outstanding per meter); False if unknown."""
        with self.engine.begin() as conn:
            done = conn.execute(
                update(MeterFirmware)
                .where(MeterFirmware.meter_id == meter_id)
                .values(nonce=nonce, nonce_at=at)
            )
            return bool(done.rowcount)

    def take_nonce(self, meter_id: str, nonce: str) -> int | None:
        """Consume the meter's outstanding nonce if it is ``nonce``; when it was issued."""
        with self.engine.begin() as conn:
            at = conn.scalar(
                select(MeterFirmware.nonce_at).where(
                    MeterFirmware.meter_id == meter_id, MeterFirmware.nonce == nonce
                )
            )
            if at is None:
                return None
            conn.execute(
                update(MeterFirmware)
                .where(MeterFirmware.meter_id == meter_id, MeterFirmware.nonce == nonce)
                .values(nonce=None, nonce_at=None)
            )
            return int(at)

    def set_attestation(self, meter_id: str, state: str, *, at: int) -> None:
        """A meter's attestation state (trusted, mismatch)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(MeterFirmware)
                .where(MeterFirmware.meter_id == meter_id)
                .values(attestation=state, attested_at=at)
            )

    # -- campaigns ------------------------------------------------------------------------------

    def active_meters(self, meter_ids: Sequence[str]) -> list[str]:
        """Which of ``meter_ids`` are active meters."""
        with self.engine.connect() as conn:
            q = select(Meter.id).where(Meter.id.in_(list(meter_ids)), Meter.state == "active")
            return sorted(str(m) for m in conn.scalars(q))

    def all_active_meters(self) -> list[str]:
        """Every active meter."""
        with self.engine.connect() as conn:
            return sorted(
                str(m) for m in conn.scalars(select(Meter.id).where(Meter.state == "active"))
            )

    def add_campaign(
        self,
        values: dict[str, Any],
        meter_ids: Sequence[str],
        entries: Sequence[Fields],
        *,
        now: int,
    ) -> int:
        """A new campaign with its meters (pending) and its audit entry; its id."""
        with self.engine.begin() as conn:
            cid = int(
                conn.execute(
                    insert(FirmwareCampaign).values(**values).returning(FirmwareCampaign.id)
                ).scalar_one()
            )
            conn.execute(
                insert(CampaignMeter),
                [
                    {
                        "campaign_id": cid,
                        "meter_id": m,
                        "state": "pending",
                        "detail": "",
                        "updated_at": now,
                    }
                    for m in meter_ids
                ],
            )
            self._audit.append_in(conn, [{**e, "request_id": f"campaign-{cid}"} for e in entries])
        return cid

    def campaign(self, campaign_id: int) -> CampaignView | None:
        """One campaign."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(FirmwareCampaign).where(FirmwareCampaign.id == campaign_id)
            ).first()
        return None if row is None else CampaignView(**row._asdict())

    def campaigns(
        self, *, states: Sequence[str] | None = None, limit: int = 50
    ) -> list[CampaignView]:
        """Newest first."""
        q = select(FirmwareCampaign).order_by(FirmwareCampaign.id.desc()).limit(limit)
        if states is not None:
            q = q.where(FirmwareCampaign.state.in_(list(states)))
        with self.engine.connect() as conn:
            return [CampaignView(**r._asdict()) for r in conn.execute(q)]

    def move_campaign(
        self, campaign_id: int, expect: str, entries: Sequence[Fields], **values: Any
    ) -> bool:
        """Change a campaign that is in state ``expect``, with its audit entries.

        False if it was not (another step got there first).
        """
        with self.engine.begin() as conn:
            done = conn.execute(
                update(FirmwareCampaign)
                .where(FirmwareCampaign.id == campaign_id, FirmwareCampaign.state == expect)
                .values(**values)
            )
            if not done.rowcount:
                return False
            self._audit.append_in(
                conn, [{**e, "request_id": f"campaign-{campaign_id}"} for e in entries]
            )
        return True

    def audit(self, entries: Sequence[Fields]) -> None:
        """Audit entries on their own (a denial)."""
        with self.engine.begin() as conn:
            self._audit.append_in(conn, entries)

    def campaign_meters(
        self, campaign_id: int, *, states: Sequence[str] | None = None, limit: int | None = None
    ) -> list[tuple[str, str, str, int]]:
        """(meter, state, detail, updated at) of a campaign's meters, by meter id."""
        q = (
            select(CampaignMeter.meter_id, CampaignMeter.state, CampaignMeter.detail,
                   CampaignMeter.updated_at)
            .where(CampaignMeter.campaign_id == campaign_id)
            .order_by(CampaignMeter.meter_id)
        )  # fmt: skip
        if states is not None:
            q = q.where(CampaignMeter.state.in_(list(states)))
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [(str(m), str(s), str(d), int(t)) for m, s, d, t in conn.execute(q)]

    def counts(self, campaign_id: int) -> dict[str, int]:
        """How many of a campaign's meters are in each state."""
        q = (
            select(CampaignMeter.state, func.count())
            .where(CampaignMeter.campaign_id == campaign_id)
            .group_by(CampaignMeter.state)
        )
        with self.engine.connect() as conn:
            return {str(s): int(n) for s, n in conn.execute(q)}

    def set_meters(
        self,
        campaign_id: int,
        meter_ids: Sequence[str],
        state: str,
        *,
        now: int,
        detail: str = "",
        expect: Sequence[str] | None = None,
    ) -> int:
        """Move campaign meters to ``state`` (only those in ``expect``, if given); how many."""
        if not meter_ids:
            return 0
        q = update(CampaignMeter).where(
            CampaignMeter.campaign_id == campaign_id, CampaignMeter.meter_id.in_(list(meter_ids))
        )
        if expect is not None:
            q = q.where(CampaignMeter.state.in_(list(expect)))
        with self.engine.begin() as conn:
            return int(
                conn.execute(q.values(state=state, detail=detail[:128], updated_at=now)).rowcount
            )

    def meter_campaigns(self, meter_id: str, target: str, states: Sequence[str]) -> list[int]:
        """Campaigns of image ``target`` (its name or hash) in ``states`` including the meter."""
        q = (
            select(FirmwareCampaign.id)
            .join(CampaignMeter, CampaignMeter.campaign_id == FirmwareCampaign.id)
            .where(
                CampaignMeter.meter_id == meter_id,
                or_(FirmwareCampaign.sha256 == target, FirmwareCampaign.image == target),
                FirmwareCampaign.state.in_(list(states)),
            )
        )
        with self.engine.connect() as conn:
            return [int(c) for c in conn.scalars(q)]
