"""The web API's request and response models (API-3): requests forbid unknown fields.

Responses carry only what the caller may see; no model here has a field for key material,
a password hash or a TOTP secret.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from meterguard.headend.services.billing import BillView
from meterguard.headend.services.commands import CommandView
from meterguard.headend.services.usage import Bucket
from meterguard.headend.store.firmware import CampaignView, MeterFirmwareView
from meterguard.headend.store.repository import AlarmView, SecurityEventView

MAX_ID = 2**53
"""Largest integer id or time a path or query accepts (larger answers 422, never 500)."""
MAX_TIME = 2**40


class ErrorBody(BaseModel):
    """Every error's body: one generic word or phrase, never a detail (API-8)."""

    error: str


ERRORS = {
    400: "malformed request",
    401: "not logged in",
    403: "forbidden (role, CSRF token, consent or dual control)",
    404: "not found, or not yours to see",
    409: "conflict (e.g. no billable readings)",
    411: "a request body must declare its length",
    413: "request body too large",
    422: "invalid request",
    429: "rate limited (Retry-After)",
}


class Strict(BaseModel):
    """Request bodies: unknown fields are refused (API-3)."""

    model_config = ConfigDict(extra="forbid")


class LoginRequest(Strict):
    """Step 1."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class TotpRequest(Strict):
    """Step 2 (utility roles)."""

    code: str = Field(pattern=r"^\d{6}$")


class LoginResponse(BaseModel):
    """What a login step tells the client (never the session token: that is the cookie)."""

    username: str
    role: str
    mfa_required: bool
    csrf_token: str
    webauthn: bool = False
    """The second step may be a WebAuthn assertion (the user has an authenticator)."""


class WebAuthnLogin(Strict):
    """A WebAuthn assertion (``PublicKeyCredential.toJSON()``)."""

    credential: dict[str, Any]


class WebAuthnRegistration(Strict):
    """A WebAuthn attestation and a name for the authenticator."""

    credential: dict[str, Any]
    label: str = Field(default="security key", min_length=1, max_length=64)


class Registered(BaseModel):
    """A stored authenticator."""

    id: int


class Me(BaseModel):
    """The caller."""

    username: str
    role: str


class MeterRef(BaseModel):
    """A meter the caller may see."""

    meter_id: str


class MeterList(BaseModel):
    """Meters the caller may see."""

    meters: list[MeterRef]


class Reading(BaseModel):
    """One interval."""

    interval_start: int
    import_wh: int
    export_wh: int


class Readings(BaseModel):
    """A meter's readings in a period."""

    meter_id: str
    readings: list[Reading]


class Access(BaseModel):
    """One access to a consumer's data by someone else."""

    at: int
    actor: str
    role: str
    what: str


class AccessLog(BaseModel):
    """Who read this meter's data (API-11)."""

    meter_id: str
    accesses: list[Access]


class AlarmList(BaseModel):
    """Alarms the caller may see, newest first."""

    alarms: list[AlarmView]


class FleetCounts(BaseModel):
    """Fleet totals for utility roles."""

    meters: int
    readings: int
    alarms: int
    security_events: int
    rejected_messages: int


class Usage(BaseModel):
    """Energy per bucket over a period."""

    meter_id: str
    granularity: str
    buckets: list[Bucket]


Granularity = Literal["interval", "hour", "day", "month"]


class ConsentBody(Strict):
    """How finely utility staff may see this meter's data (PRIV-1)."""

    granularity: Granularity


class ConsentView(BaseModel):
    """The recorded consent."""

    meter_id: str
    granularity: str
    given_by: str | None
    at: int | None


class BillList(BaseModel):
    """A meter's bills and the key that verifies them."""

    meter_id: str
    billing_key: str
    """Hex x||y of the billing key (P-256)."""
    bills: list[BillView]


class BillRequest(Strict):
    """Issue the bill of a period."""

    start: int = Field(ge=0, le=2**40)
    end: int = Field(ge=0, le=2**40)


class UserView(BaseModel):
    """An account as security administrators see it (never a hash or a secret)."""

    id: int
    username: str
    role: str
    disabled: bool
    mfa_failures: int = 0
    """Wrong second-factor codes in the current 15-minute window (API-7)."""
    mfa_last_failure: int | None = None
    mfa_locked_until: int | None = None
    """The account's second factor is refused until then (Unix seconds)."""


class UserList(BaseModel):
    """Every account."""

    users: list[UserView]


class NewUser(Strict):
    """Create an account (security administrators only)."""

    username: str = Field(pattern=r"^[a-z][a-z0-9._-]{1,31}$")
    password: str = Field(min_length=8, max_length=256)
    role: Literal["consumer", "operator", "engineer", "security_admin", "auditor"]
    meters: list[str] = Field(default_factory=list, max_length=16)


class CreatedUser(BaseModel):
    """The new account; utility roles get their TOTP enrolment URI, shown this once."""

    id: int
    totp_uri: str | None


class ProvisionRequest(Strict):
    """Register a new meter by its 10-digit serial (manufacturing record)."""

    serial: str = Field(pattern=r"^\d{10}$")


class Provisioned(BaseModel):
    """The registered meter (its keys stay in the key store: never in a response)."""

    meter_id: str


class FleetMeter(BaseModel):
    """A meter in the fleet list."""

    meter_id: str
    state: str
    last_reading_at: int | None
    """End of the newest stored interval, on the meter's clock (simulated in a demo)."""
    open_alarms: int
    supply: Literal["disconnected", "connected", "ready"]
    feeder: str | None
    firmware: str | None
    attestation: str | None


class FleetMeters(BaseModel):
    """One page of the fleet as searched, and how many meters match in all."""

    total: int
    page: int
    per_page: int
    meters: list[FleetMeter]


class KeyView(BaseModel):
    """A key the store holds for a meter: its kind, version and state (never material)."""

    kind: str
    version: int
    state: str


class CertificateView(BaseModel):
    """A certificate issued to a meter."""

    number: str
    kind: str
    not_after: str
    status: str


class MeterPageView(BaseModel):
    """One meter: identity, keys' state, certificates, firmware, alarms, events."""

    meter: FleetMeter
    serial: str
    created_at: int
    firmware_slot: str | None
    firmware_counter: int | None
    firmware_reported_at: int | None
    keys: list[KeyView]
    certificates: list[CertificateView]
    alarms: list[AlarmView]
    security_events: list[SecurityEventView]


class SecurityEvents(BaseModel):
    """Newest first."""

    events: list[SecurityEventView]


class CommandRequest(Strict):
    """Propose a critical command (API-10)."""

    meter_id: str = Field(min_length=1, max_length=32)
    kind: Literal["disconnect", "reconnect", "load_limit", "tariff_change", "key_change"]
    value: int | None = Field(default=None, ge=0, le=10**9)
    reason: str = Field(min_length=3, max_length=256)


class CommandList(BaseModel):
    """Newest first."""

    commands: list[CommandView]


class CampaignRequest(Strict):
    """Propose a firmware campaign (FW-12, FW-14): a published image, meters, a deadline."""

    image: str = Field(min_length=1, max_length=128, pattern=r"^[0-9A-Za-z._+-]+$")
    meters: str = Field(
        default="all",
        max_length=20_000,
        description='"all", or meter ids separated by commas or spaces',
    )
    deadline_hours: int = Field(default=24, ge=1, le=24 * 90)
    reason: str = Field(min_length=3, max_length=256)


class AttestRequest(Strict):
    """Ask meters for a signed measurement of their boot (FW-11)."""

    meters: str = Field(default="all", max_length=20_000)


class ImageInfo(BaseModel):
    """A published image (never key material)."""

    name: str
    sha256: str
    length: int
    version: str
    security_version: int
    model: str
    hw_revision: str


class CampaignInfo(BaseModel):
    """A campaign with its meters counted per state and its failures."""

    campaign: CampaignView
    counts: dict[str, int]
    failures: list[tuple[str, str]]


class CampaignList(BaseModel):
    """Newest first."""

    campaigns: list[CampaignInfo]


class FirmwareMeters(BaseModel):
    """Each meter's reported firmware and attestation state, and meters per version."""

    versions: dict[str, int]
    meters: list[MeterFirmwareView]


class CaseRequest(Strict):
    """Open a revenue-protection case on a meter."""

    meter_id: str = Field(min_length=1, max_length=32)
    note: str = Field(default="", max_length=500)


class CaseAssign(Strict):
    """Assign a case to an investigator."""

    assignee: str = Field(min_length=1, max_length=64)


class CaseClose(Strict):
    """Close a case with its outcome (confirmed, no-theft, inconclusive)."""

    outcome: str = Field(min_length=1, max_length=32)
    note: str = Field(default="", max_length=500)


Use = Literal["research", "energy-services", "grid-operator"]


class UseConsentBody(Strict):
    """A consumer's consent to share their data for a use (null granularity: withdraw)."""

    use: Use
    granularity: Granularity | None


class UseConsentView(BaseModel):
    """One use a consumer consented to."""

    use: str
    granularity: str
    given_by: str | None
    at: int | None


class UseConsentList(BaseModel):
    """Every use a meter's consumer consented to share their data for."""

    meter_id: str
    consents: list[UseConsentView]


class RecipientRequest(Strict):
    """A new third-party recipient."""

    name: str = Field(min_length=1, max_length=64)
    use: Use


class ExportBody(Strict):
    """An export for a recipient (PRIV-2)."""

    recipient_id: int = Field(ge=1, le=MAX_ID)
    start: int = Field(ge=0, le=MAX_TIME)
    end: int = Field(ge=0, le=MAX_TIME)
    granularity: Granularity = "day"
    rotation: Literal["day", "week", "month"] = "week"
    fields: list[Literal["import_wh", "export_wh"]] = Field(
        default=["import_wh"], min_length=1, max_length=2
    )
    k: int = Field(default=0, ge=0, le=100)
    meters: list[str] | None = Field(default=None, min_length=1, max_length=100_000)


class ReleaseBody(Strict):
    """A differentially private aggregate: a feeder (``feeder:NAME``) or ``all``, one UTC day."""

    scope: str = Field(min_length=1, max_length=72, pattern=r"^(all|feeder:[A-Za-z0-9 ._-]{1,64})$")
    day: int = Field(ge=0, le=MAX_TIME)
    epsilon: float = Field(gt=0, le=10)


class ErasureRequest(Strict):
    """A consumer's erasure request, by user name."""

    username: str = Field(min_length=1, max_length=64)
