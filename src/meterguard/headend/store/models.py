"""SQLAlchemy 2 typed models of the head-end database.

Readings are keyed by (meter, interval start) with integer Unix timestamps, so
storing the same reading twice is a no-op (idempotent ingest, REL-1). Keys are
never stored here: the meter registry refers to them by the key store's meter
id. On PostgreSQL the readings table is range-partitioned by time (see the
migration). This module declares tables only.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Alarm",
    "AuditRecord",
    "AuditTreeHead",
    "Base",
    "Bill",
    "Command",
    "Consent",
    "Counter",
    "DataAccess",
    "DpLedger",
    "DpRelease",
    "Export",
    "Meter",
    "MeterTariff",
    "PushCounter",
    "Quarantined",
    "Reading",
    "Recipient",
    "RegistryVersion",
    "SecurityEvent",
    "Tariff",
    "UseConsent",
    "User",
    "UserMeter",
    "WebAuthnChallenge",
    "WebAuthnCredential",
    "WebSession",
]


class Base(DeclarativeBase):
    """Declarative base."""


class Meter(Base):
    """A registered meter."""

    __tablename__ = "meters"
    __table_args__ = (
        Index("meters_state", "state", "id"),
        Index("meters_last_reading", "last_reading"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    serial: Mapped[str] = mapped_column(String(16), unique=True)
    system_title: Mapped[bytes] = mapped_column(LargeBinary(8), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_reading: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The start of the newest stored interval (raised by ingest in the same commit)."""


class RegistryVersion(Base):
    """The meter registry's version: one row, bumped with every meter added or changed.

    Running workers and brokers notice a revocation from any process with one cheap read
    (PKI-5).
    """

    __tablename__ = "registry_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


class Reading(Base):
    """A verified interval reading (cumulative registers at the end of the interval)."""

    __tablename__ = "readings"

    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    interval_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    import_wh: Mapped[int] = mapped_column(BigInteger)
    """-1 when the values are sealed (encryption at rest)."""
    export_wh: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[int] = mapped_column(BigInteger)
    key_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The meter's data key that sealed the values, or None (stored in clear)."""
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class Counter(Base):
    """The highest invocation counter accepted from a meter under one key (DH-4)."""

    __tablename__ = "counters"

    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    key_kind: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_ic: Mapped[int] = mapped_column(BigInteger)


class PushCounter(Base):
    """An invocation counter accepted from a meter's pushes: each is accepted once (ADR 6).

    The primary key is the anti-replay check shared by every ingest worker and lane;
    rows far below the meter's highest counter are pruned (nothing that old is accepted).
    """

    __tablename__ = "push_counters"

    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    ic: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class Alarm(Base):
    """A meter alarm (tamper etc.), latched until cleared by an authorised role."""

    __tablename__ = "alarms"
    __table_args__ = (UniqueConstraint("meter_id", "sequence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"))
    sequence: Mapped[int] = mapped_column(BigInteger)
    code: Mapped[int] = mapped_column(Integer)
    raised_at: Mapped[int] = mapped_column(BigInteger)
    """The meter's time of the event (its clock: simulated time in the demo)."""
    state: Mapped[str] = mapped_column(String(16), default="open")
    received_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """The head-end's time of receipt (the clock of every other head-end record)."""
    acknowledged_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    acknowledged_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cleared_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cleared_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class SecurityEvent(Base):
    """A security-relevant event: bad tag, replay, unknown or revoked meter, takeover."""

    __tablename__ = "security_events"
    __table_args__ = (
        Index("security_events_at", "at"),
        Index("security_events_summary", "meter_id", "event", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[int] = mapped_column(BigInteger)
    """When it was first seen (the start of its summary window)."""
    meter_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    event: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    """How many times it happened from ``at`` to ``last_at`` (repeats are counted, not rows)."""
    last_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Quarantined(Base):
    """A message refused by ingest, kept (bounded) with its reason for analysis."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("quarantine_summary", "meter_id", "kind", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[int] = mapped_column(BigInteger)
    topic: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    """A sample: the first refused payload of its (meter, kind, window)."""
    meter_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    kind: Mapped[str] = mapped_column(String(64), default="refused", server_default="refused")
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AuditRecord(Base):
    """One entry of the append-only audit log (LOG-1, LOG-2); ``leaf`` is its RFC 9162 hash."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    leaf: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCosignature(Base):
    """A witness's cosignature of a tree head (issue 12 item 10)."""

    __tablename__ = "audit_cosignatures"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    at: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[bytes] = mapped_column(LargeBinary(96))


class AuditTreeHead(Base):
    """A signed tree head of the audit log (LOG-3)."""

    __tablename__ = "audit_tree_heads"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    at: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[bytes] = mapped_column(LargeBinary(96))


class User(Base):
    """A person: a consumer or a utility role (API-1); passwords as argon2id hashes only.

    No name in clear (PRIV-4): the account is found by a keyed hash of its login name and the
    name is sealed under the user's own data key.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    """Only in rows from before migration 0018, until the head-end seals them (then NULL)."""
    login_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True, nullable=True)
    """HMAC of the login name under a key-store secret: what login finds the account by."""
    name_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The name, AES-GCM-sealed under the user's data key (NULL once the user is erased)."""
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(256))
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """AES-GCM-sealed under the head-end's secrets key, bound to the user id."""
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)
    mfa_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Wrong second-factor codes since ``mfa_window_start`` (API-7)."""
    mfa_window_start: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mfa_last_failure: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mfa_locked_until: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class UserMeter(Base):
    """Which meters a consumer may see (API-1 scoping)."""

    __tablename__ = "user_meters"

    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)


class WebSession(Base):
    """A server-side session (API-6); only the SHA-256 of its token is stored."""

    __tablename__ = "web_sessions"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"))
    csrf: Mapped[str] = mapped_column(String(64))
    mfa_done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)
    seen_at: Mapped[int] = mapped_column(BigInteger)
    mfa_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Wrong second-factor codes on this (pending) session."""


class DataAccess(Base):
    """Who read a consumer's meter data, and when: the log the consumer sees (API-11, LOG-6)."""

    __tablename__ = "data_access"
    __table_args__ = (Index("data_access_meter", "meter_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[int] = mapped_column(BigInteger)
    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"))
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    what: Mapped[str] = mapped_column(String(128))


class Command(Base):
    """A critical command under dual control (API-10): proposed, approved, sent, answered.

    ``counter`` is allocated when the command is approved and signed: unique per meter and
    increasing, it is the command's transaction id and GCM invocation counter.
    """

    __tablename__ = "commands"
    __table_args__ = (
        UniqueConstraint("meter_id", "counter"),
        Index("commands_state", "state", "proposed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"))
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(256))
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    counter: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    result: Mapped[int | None] = mapped_column(Integer, nullable=True)
    control_state: Mapped[int | None] = mapped_column(Integer, nullable=True)
    answered_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reading: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """An on-demand read's value (Wh of the import register), as the meter reported it."""


class Tariff(Base):
    """A tariff: flat or time-of-use unit rates and a daily standing charge.

    Money is integer ten-thousandths of the currency unit (``…_e4``); ``bands`` is JSON,
    a list of ``[from_hour, to_hour, rate_e4]`` covering 0-24 h UTC (one band when flat).
    """

    __tablename__ = "tariffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    standing_e4_per_day: Mapped[int] = mapped_column(BigInteger)
    bands: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class MeterTariff(Base):
    """Which tariff a meter is billed on."""

    __tablename__ = "meter_tariffs"

    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    tariff_id: Mapped[int] = mapped_column(Integer, ForeignKey("tariffs.id"))


class Bill(Base):
    """A bill from verified readings, signed by the head-end's billing key (canonical JSON)."""

    __tablename__ = "bills"
    __table_args__ = (UniqueConstraint("meter_id", "period_start", "period_end"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"))
    period_start: Mapped[int] = mapped_column(BigInteger)
    period_end: Mapped[int] = mapped_column(BigInteger)
    document: Mapped[str] = mapped_column(Text)
    """The canonical JSON the signature covers (tariff, bands' energy, charges, total)."""
    signature: Mapped[bytes] = mapped_column(LargeBinary(96))
    issued_at: Mapped[int] = mapped_column(BigInteger)


class Consent(Base):
    """A consumer's recorded choice of how finely the utility may see their data (PRIV-1)."""

    __tablename__ = "consents"

    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    granularity: Mapped[str] = mapped_column(String(16))
    """The finest resolution utility roles may read: ``interval``, ``hour``, ``day``, ``month``."""
    given_by: Mapped[str] = mapped_column(String(64))
    at: Mapped[int] = mapped_column(BigInteger)


class WebAuthnCredential(Base):
    """A user's registered authenticator (passkey or security key): public key only."""

    __tablename__ = "webauthn_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"))
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1024), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    label: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)


class WebAuthnChallenge(Base):
    """A ceremony in flight: the challenge issued to one session, single use, short-lived."""

    __tablename__ = "webauthn_challenges"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    challenge: Mapped[bytes] = mapped_column(LargeBinary(64))
    expires_at: Mapped[int] = mapped_column(BigInteger)


class FirmwareCampaign(Base):
    """A firmware campaign (FW-12, FW-14): one image for a set of meters, by a deadline.

    ``state``: proposed → distributing (approved by a second person) → activation_proposed →
    activating (approved by a second person: the activation is dual-controlled) → done; or
    rejected / cancelled.
    """

    __tablename__ = "firmware_campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    length: Mapped[int] = mapped_column(BigInteger)
    deadline: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(String(256))
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[int] = mapped_column(BigInteger)
    approved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    activation_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    activation_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    activated_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    activated_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class CampaignMeter(Base):
    """One meter of a campaign and where it stands.

    pending → sent → staged → activating → updated; or failed (with the meter's reason), or
    late (not updated by the deadline).
    """

    __tablename__ = "campaign_meters"
    __table_args__ = (Index("campaign_meters_state", "campaign_id", "state"),)

    campaign_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("firmware_campaigns.id"), primary_key=True
    )
    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(128), default="")
    updated_at: Mapped[int] = mapped_column(BigInteger)


class MeterFirmware(Base):
    """What a meter last reported of its firmware (signed, FW-12) and its attestation (FW-11).

    ``attestation_key`` is the public half of the meter's attestation key, registered at
    manufacture; ``attestation`` is unknown, trusted or mismatch.
    """

    __tablename__ = "meter_firmware"

    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    attestation_key: Mapped[str] = mapped_column(String(512))
    version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    slot: Mapped[str | None] = mapped_column(String(1), nullable=True)
    counter: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reported_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    attestation: Mapped[str] = mapped_column(String(16), default="unknown")
    attested_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    nonce: Mapped[str | None] = mapped_column(String(128), nullable=True)
    nonce_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Feeder(Base):
    """A distribution transformer (feeder) and the meter that measures what it delivers."""

    __tablename__ = "feeders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class FeederMember(Base):
    """A home's meter behind a feeder (one feeder per meter)."""

    __tablename__ = "feeder_members"

    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    feeder_id: Mapped[int] = mapped_column(Integer, ForeignKey("feeders.id"), index=True)


class TheftScore(Base):
    """A meter's latest theft score and its evidence (one row a meter: storage is bounded)."""

    __tablename__ = "theft_scores"

    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    week_end: Mapped[int] = mapped_column(BigInteger)
    """The end of the week scored (meter time)."""
    scored_at: Mapped[int] = mapped_column(BigInteger)
    evidence: Mapped[str] = mapped_column(String(4000))
    """JSON: the evidence numbers, the feeder, the daily kWh of the week and of its history."""


class TheftCase(Base):
    """A revenue-protection case on a meter: opened, assigned, closed (audited)."""

    __tablename__ = "theft_cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    opened_by: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[float] = mapped_column(Float)
    assignee: Mapped[str | None] = mapped_column(String(64), nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    closed_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str] = mapped_column(String(500), default="")


class UseConsent(Base):
    """A consumer's consent to share their data for one use, and how finely (PRIV-2)."""

    __tablename__ = "use_consents"

    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    use: Mapped[str] = mapped_column(String(32), primary_key=True)
    granularity: Mapped[str] = mapped_column(String(16))
    given_by: Mapped[str] = mapped_column(String(64))
    at: Mapped[int] = mapped_column(BigInteger)


class Recipient(Base):
    """A third party data is exported to (a research institute, an ESCO, the grid operator)."""

    __tablename__ = "recipients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    use: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)


class Export(Base):
    """One generated export: what, for whom, how many consumers in and refused, the manifest."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recipient_id: Mapped[int] = mapped_column(Integer, ForeignKey("recipients.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)
    granularity: Mapped[str] = mapped_column(String(16))
    rotation: Mapped[str] = mapped_column(String(8))
    k: Mapped[int] = mapped_column(Integer)
    included: Mapped[int] = mapped_column(Integer)
    refused: Mapped[int] = mapped_column(Integer)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(512))


class DpRelease(Base):
    """A differentially private aggregate curve released once (a repeat returns this row)."""

    __tablename__ = "dp_releases"
    __table_args__ = (UniqueConstraint("scope", "day", "epsilon", name="dp_release_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(64))
    day: Mapped[int] = mapped_column(BigInteger)
    epsilon: Mapped[float] = mapped_column(Float)
    homes: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    curve: Mapped[str] = mapped_column(String(2000))


class DpLedger(Base):
    """The privacy budget a consumer's day has spent in DP releases (one row per meter-day)."""

    __tablename__ = "dp_ledger"

    meter_id: Mapped[str] = mapped_column(String(32), ForeignKey("meters.id"), primary_key=True)
    day: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    spent: Mapped[float] = mapped_column(Float)
