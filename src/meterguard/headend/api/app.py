"""The head-end's web API (FastAPI at the edge): login, sessions, scoped meter data.

(No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations at
runtime, and they name dependencies local to :func:`create_app`.)

:func:`create_app` builds the ASGI app over an :class:`~meterguard.headend.services.
accounts.Accounts` service and the store. Routes only parse, authorise and call services:

* **every route declares its roles** by depending on a :class:`Guard`, which enforces
  them; :func:`create_app` reads the roles back from each route into
  ``app.state.route_roles`` and refuses to build an app with a route that has neither a
  guard nor a place on the short public list (API-2, default deny);
* **sessions** live server-side; the client holds a 256-bit token in the ``__Host-``
  cookie (Secure, HttpOnly, SameSite=Strict, Path=/) — rotated at each login step —
  and sends the session's CSRF token in ``X-CSRF-Token`` on every state change (API-6);
* **login** is rate-limited per account and per client address *before* the password
  hash is computed, answering 429 with ``Retry-After`` (API-7);
* **scoping**: a meter the caller may not see is a 404, exactly like one that does not
  exist (API-1, BOLA);
* request models forbid unknown fields (API-3); errors have generic bodies; every
  response carries the security headers of API-8 and no server banner.

HTTPS is the server's job (uvicorn with TLS, API-9); this module does not listen.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from meterguard.errors import (
    AccessDeniedError,
    AuthenticationFailedError,
    ConfigurationError,
    InvalidValueError,
)
from meterguard.headend.api.guard import COOKIE, Guard, Limits, denied
from meterguard.headend.services.accounts import (
    ROLES,
    UTILITY_ROLES,
    Accounts,
    Principal,
    SessionInfo,
)
from meterguard.headend.services.billing import Billing, BillView
from meterguard.headend.services.commands import COMMAND_ROLES, Commands, CommandView
from meterguard.headend.services.usage import Bucket, Consents, finer, usage
from meterguard.headend.services.webauthn import Passkeys
from meterguard.headend.store.repository import AlarmView, MeterStatus, SecurityEventView, Store
from meterguard.headend.web.pages import PAGE_PUBLIC, add_pages

__all__ = ["COOKIE", "PUBLIC", "PUBLIC_PATHS", "Guard", "create_app", "route_table"]

PUBLIC: frozenset[str] = frozenset()
HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Content-Security-Policy": (
        "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ErrorBody(BaseModel):
    """Every error's body: one generic word or phrase, never a detail (API-8)."""

    error: str


_ERRORS = {
    400: "malformed request",
    401: "not logged in",
    403: "forbidden (role, CSRF token, consent or dual control)",
    404: "not found, or not yours to see",
    409: "conflict (e.g. no billable readings)",
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


class FleetMeters(BaseModel):
    """Every meter's status."""

    meters: list[MeterStatus]


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


def _roles_of(route: APIRoute) -> frozenset[str] | None:
    """The roles of the :class:`Guard` a route depends on, if it has one."""
    for dep in route.dependant.dependencies:
        if isinstance(dep.call, Guard):
            return dep.call.roles
    return None


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"


def _login_response(info: SessionInfo) -> LoginResponse:
    p = info.principal
    return LoginResponse(
        username=p.username, role=p.role, mfa_required=not info.mfa_done, csrf_token=info.csrf
    )


ACK_ROLES = frozenset({"operator", "engineer", "security_admin"})
CLEAR_ROLES = frozenset({"engineer", "security_admin"})


def _alarm_move(
    store: Store, dependency: Guard, from_states: tuple[str, ...], to: str
) -> Callable[..., Awaitable[None]]:
    async def move(alarm_id: int, who: Annotated[Principal, Depends(dependency)]) -> None:
        moved = store.move_alarm(
            alarm_id, from_states=from_states, to=to, actor=who.username, now=int(time.time())
        )
        if moved is None:
            raise HTTPException(404)

    return move


def _set_session(response: Response, info: SessionInfo) -> None:
    response.set_cookie(COOKIE, info.token, secure=True, httponly=True, samesite="strict", path="/")


def create_app(
    accounts: Accounts,
    store: Store,
    *,
    commands: Commands | None = None,
    billing: Billing | None = None,
    revoke: Callable[[str], None] | None = None,
    provision: Callable[[str], str] | None = None,
    passkeys: Passkeys | None = None,
    api_rate: float = 20.0,
    api_burst: float = 200.0,
) -> FastAPI:
    """The API (and the dashboard on it), ready for an ASGI server with TLS.

    ``commands`` and ``billing`` add their routes; ``revoke`` (meter id → revoke its
    certificates at the PKI and the broker) enables decommissioning and revocation.
    """
    app = FastAPI(title="meterguard head-end", version="1", docs_url=None, redoc_url=None)
    app.state.accounts = accounts
    app.state.store = store
    app.state.limits = Limits()
    app.state.api_limits = Limits(rate=api_rate, burst=api_burst)
    consents = Consents(store.engine)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for k, v in HEADERS.items():
            response.headers[k] = v
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        generic = {
            303: "see other",
            401: "not logged in",
            403: "forbidden",
            404: "not found",
            409: "conflict",
            429: "slow down",
        }
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            methods = {
                m
                for r in app.routes
                if isinstance(r, APIRoute) and r.path_regex.match(request.url.path)
                for m in r.methods or ()
            }
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse(
            {"error": generic.get(exc.status_code, "request failed")},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, _e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request"}, status_code=422)

    def audit(actor: str, target: str, action: str, result: str, detail: str = "") -> None:
        """LOG-1: a security-relevant action to the tamper-evident audit log."""
        store.audit.append(
            at=int(time.time()),
            actor=actor[:64],
            target=target[:128],
            action=action,
            result=result,
            detail=detail,
        )

    def login_audit(action: str, actor: str, result: str, request: Request) -> None:
        """Logins and their failures, with the client's address."""
        audit(actor, "web", action, result, f"from {_peer(request)}")

    def second_step(
        request: Request,
        response: Response,
        action: str,
        verify: Callable[[str, int], SessionInfo],
    ) -> LoginResponse:
        """A second-factor step on step 1's session: verify, audit, rotate the cookie."""
        token = request.cookies.get(COOKIE)
        if not token:
            raise HTTPException(401)
        try:
            info = verify(token, int(time.time()))
        except AuthenticationFailedError:
            login_audit(action, "?", "failed", request)
            raise HTTPException(401) from None
        login_audit(action, info.principal.username, "ok", request)
        _set_session(response, info)
        return _login_response(info)

    anyone, utility = Guard(ROLES), Guard(UTILITY_ROLES)

    @app.post("/api/v1/auth/login", response_model=LoginResponse)
    async def login(body: LoginRequest, request: Request, response: Response) -> LoginResponse:
        now = time.time()
        peer = _peer(request)
        limits: Limits = request.app.state.limits
        wait = max(limits.allow(f"user:{body.username}", now), limits.allow(f"addr:{peer}", now))
        if wait:
            login_audit("login", body.username, "rate_limited", request)
            raise HTTPException(429, headers={"Retry-After": str(int(wait) + 1)})
        try:
            info = accounts.login(body.username, body.password, now=int(now))
        except AuthenticationFailedError:
            login_audit("login", body.username, "failed", request)
            raise HTTPException(401) from None
        login_audit("login", body.username, "password_ok", request)
        _set_session(response, info)
        out = _login_response(info)
        if passkeys is not None and not info.mfa_done:
            out.webauthn = passkeys.count(info.principal.user_id) > 0
        return out

    @app.post("/api/v1/auth/totp", response_model=LoginResponse)
    async def totp(body: TotpRequest, request: Request, response: Response) -> LoginResponse:
        return second_step(
            request,
            response,
            "login_totp",
            lambda token, now: accounts.second_factor(token, body.code, now=now),
        )

    if passkeys is not None:

        @app.post("/api/v1/auth/webauthn/options")
        async def webauthn_options(request: Request) -> Response:
            token = request.cookies.get(COOKIE)
            if not token:
                raise HTTPException(401)
            assert passkeys is not None  # noqa: S101
            try:
                options = passkeys.authentication_options(token, now=int(time.time()))
            except AuthenticationFailedError:
                raise HTTPException(401) from None
            return Response(options, media_type="application/json")

        @app.post("/api/v1/auth/webauthn", response_model=LoginResponse)
        async def webauthn_login(
            body: WebAuthnLogin, request: Request, response: Response
        ) -> LoginResponse:
            assert passkeys is not None  # noqa: S101
            keys = passkeys
            return second_step(
                request,
                response,
                "login_webauthn",
                lambda token, now: keys.authenticate(token, body.credential, now=now),
            )

        @app.post("/api/v1/webauthn/register/options")
        async def register_options(
            request: Request, _who: Annotated[Principal, Depends(anyone)]
        ) -> Response:
            assert passkeys is not None  # noqa: S101
            options = passkeys.registration_options(request.state.session, now=int(time.time()))
            return Response(options, media_type="application/json")

        @app.post("/api/v1/webauthn/register", response_model=Registered, status_code=201)
        async def register(
            body: WebAuthnRegistration,
            request: Request,
            who: Annotated[Principal, Depends(anyone)],
        ) -> Registered:
            assert passkeys is not None  # noqa: S101
            info, now = request.state.session, int(time.time())
            try:
                rid = passkeys.register(info, body.credential, body.label, now=now)
            except AuthenticationFailedError:
                login_audit("webauthn_registered", who.username, "failed", request)
                raise HTTPException(422) from None
            login_audit("webauthn_registered", who.username, "ok", request)
            return Registered(id=rid)

    @app.post("/api/v1/auth/logout", status_code=204)
    async def logout(
        request: Request, response: Response, _who: Annotated[Principal, Depends(anyone)]
    ) -> None:
        accounts.logout(request.cookies.get(COOKIE, ""))
        response.delete_cookie(COOKIE, secure=True, httponly=True, samesite="strict", path="/")

    @app.get("/api/v1/me", response_model=Me)
    async def me(who: Annotated[Principal, Depends(anyone)]) -> Me:
        return Me(username=who.username, role=who.role)

    @app.get("/api/v1/meters", response_model=MeterList)
    async def meters(who: Annotated[Principal, Depends(anyone)]) -> MeterList:
        return MeterList(meters=[MeterRef(meter_id=m) for m in accounts.meters(who)])

    @app.get("/api/v1/meters/{meter_id}/readings", response_model=Readings)
    async def readings(
        meter_id: str,
        who: Annotated[Principal, Depends(anyone)],
        start: Annotated[int, Query(ge=0)] = 0,
        end: Annotated[int, Query(ge=0)] = 2**40,
    ) -> Readings:
        if not accounts.visible_meter(who, meter_id):
            raise HTTPException(404)  # API-1: another consumer's meter looks like no meter
        rows = store.readings(meter_id, start, end)
        accounts.record_access(who, meter_id, f"readings {start}..{end}", now=int(time.time()))
        return Readings(
            meter_id=meter_id,
            readings=[Reading(interval_start=a, import_wh=b, export_wh=c) for a, b, c in rows],
        )

    owner_or_auditor = Guard(frozenset({"consumer", "auditor"}))

    @app.get("/api/v1/meters/{meter_id}/access", response_model=AccessLog)
    async def access(
        meter_id: str, who: Annotated[Principal, Depends(owner_or_auditor)]
    ) -> AccessLog:
        if not accounts.visible_meter(who, meter_id):
            raise HTTPException(404)
        return AccessLog(
            meter_id=meter_id,
            accesses=[
                Access(at=a, actor=b, role=r, what=w)
                for a, b, r, w in accounts.access_log(meter_id)
            ],
        )

    @app.get("/api/v1/alarms", response_model=AlarmList)
    async def alarms(who: Annotated[Principal, Depends(anyone)]) -> AlarmList:
        scope = accounts.meters(who) if who.role == "consumer" else None
        return AlarmList(alarms=store.alarm_rows(scope))

    # TAMP-2: a tamper alarm stays latched until an authorised role clears it; operators may
    # acknowledge it (it stays latched), engineers and security administrators clear it.
    for action, allowed, from_states, to in (
        ("acknowledge", ACK_ROLES, ("open",), "acknowledged"),
        ("clear", CLEAR_ROLES, ("open", "acknowledged"), "cleared"),
    ):
        app.add_api_route(
            f"/api/v1/alarms/{{alarm_id}}/{action}",
            _alarm_move(store, Guard(allowed), from_states, to),
            methods=["POST"],
            status_code=204,
        )

    @app.get("/api/v1/fleet", response_model=FleetCounts)
    async def fleet(_who: Annotated[Principal, Depends(utility)]) -> FleetCounts:
        return FleetCounts(**store.counts())

    @app.get("/api/v1/meters/{meter_id}/usage", response_model=Usage)
    async def meter_usage(
        meter_id: str,
        request: Request,
        who: Annotated[Principal, Depends(anyone)],
        start: Annotated[int, Query(ge=0, le=2**40)] = 0,
        end: Annotated[int, Query(ge=0, le=2**40)] = 2**40,
        granularity: Granularity = "day",
    ) -> Usage:
        if not accounts.visible_meter(who, meter_id):
            raise HTTPException(404)
        if who.role != "consumer":
            allowed = consents.get(meter_id)[0]
            if finer(granularity, allowed):  # PRIV-1: finer than the consumer agreed to
                denied(request, who, f"{granularity} data of {meter_id}: consent is {allowed}")
                raise HTTPException(403)
            accounts.record_access(
                who, meter_id, f"usage by {granularity} {start}..{end}", now=int(time.time())
            )
        rows = store.readings(meter_id, max(start - 900, 0), end)
        return Usage(meter_id=meter_id, granularity=granularity, buckets=usage(rows, granularity))

    owner = Guard(frozenset({"consumer"}))

    @app.get("/api/v1/meters/{meter_id}/consent", response_model=ConsentView)
    async def get_consent(
        meter_id: str, who: Annotated[Principal, Depends(owner_or_auditor)]
    ) -> ConsentView:
        if not accounts.visible_meter(who, meter_id):
            raise HTTPException(404)
        g, by, at = consents.get(meter_id)
        return ConsentView(meter_id=meter_id, granularity=g, given_by=by, at=at)

    @app.put("/api/v1/meters/{meter_id}/consent", response_model=ConsentView)
    async def put_consent(
        meter_id: str, body: ConsentBody, who: Annotated[Principal, Depends(owner)]
    ) -> ConsentView:
        if not accounts.visible_meter(who, meter_id):
            raise HTTPException(404)
        now = int(time.time())
        consents.set(meter_id, body.granularity, by=who.username, now=now)
        audit(who.username, meter_id, "consent_changed", body.granularity)
        return ConsentView(
            meter_id=meter_id, granularity=body.granularity, given_by=who.username, at=now
        )

    @app.get("/api/v1/fleet/meters", response_model=FleetMeters)
    async def fleet_meters(_who: Annotated[Principal, Depends(utility)]) -> FleetMeters:
        return FleetMeters(meters=store.fleet_status())

    admins = Guard(frozenset({"security_admin"}))
    user_readers = Guard(frozenset({"security_admin", "auditor"}))

    @app.get("/api/v1/users", response_model=UserList)
    async def users(_who: Annotated[Principal, Depends(user_readers)]) -> UserList:
        return UserList(
            users=[
                UserView(id=i, username=n, role=r, disabled=d) for i, n, r, d in accounts.users()
            ]
        )

    @app.post("/api/v1/users", response_model=CreatedUser, status_code=201)
    async def create_user(body: NewUser, who: Annotated[Principal, Depends(admins)]) -> CreatedUser:
        now = int(time.time())
        known = {m for m, _, _ in store.meters()}
        if (body.role != "consumer" and body.meters) or not set(body.meters) <= known:
            raise HTTPException(422)
        try:
            uid, totp = accounts.create_user(
                body.username, body.password, body.role, now=now, meters=tuple(body.meters)
            )
        except InvalidValueError:  # a password that may not be chosen, or a name taken
            raise HTTPException(422) from None
        audit(
            who.username,
            f"user:{body.username}",
            "user_created",
            body.role,
            f"meters {','.join(body.meters)}",
        )
        return CreatedUser(
            id=uid, totp_uri=None if totp is None else totp.provisioning_uri(body.username)
        )

    def _set_disabled(disabled: bool) -> Callable[..., Awaitable[None]]:
        async def change(user_id: int, who: Annotated[Principal, Depends(admins)]) -> None:
            if user_id == who.user_id:
                raise HTTPException(409)  # no locking oneself out
            if user_id not in {i for i, _, _, _ in accounts.users()}:
                raise HTTPException(404)
            accounts.set_disabled(user_id, disabled=disabled)
            audit(
                who.username,
                f"user:{user_id}",
                "user_disabled" if disabled else "user_enabled",
                "done",
                "sessions ended" if disabled else "",
            )

        return change

    for verb, flag in (("disable", True), ("enable", False)):
        app.add_api_route(
            f"/api/v1/users/{{user_id}}/{verb}",
            _set_disabled(flag),
            methods=["POST"],
            status_code=204,
        )

    security_readers = Guard(frozenset({"operator", "engineer", "security_admin", "auditor"}))

    @app.get("/api/v1/security-events", response_model=SecurityEvents)
    async def security_events(
        _who: Annotated[Principal, Depends(security_readers)],
    ) -> SecurityEvents:
        return SecurityEvents(events=store.security_event_rows())

    if provision is not None:
        installers = Guard(frozenset({"engineer", "security_admin"}))

        @app.post("/api/v1/meters", response_model=Provisioned, status_code=201)
        async def provision_meter(
            body: ProvisionRequest, who: Annotated[Principal, Depends(installers)]
        ) -> Provisioned:
            if f"MGD{body.serial}" in {m for m, _, _ in store.meters()}:
                raise HTTPException(409)
            assert provision is not None  # noqa: S101
            mid = provision(body.serial)
            audit(
                who.username,
                mid,
                "meter_provisioned",
                "done",
                "serial registered for enrolment, DLMS keys generated in the key store",
            )
            return Provisioned(meter_id=mid)

    if revoke is not None:
        retire = Guard(frozenset({"engineer", "security_admin"}))
        revoker = Guard(frozenset({"security_admin"}))

        def _retire(meter_id: str, who: Principal, state: str, action: str) -> None:
            if meter_id not in {m for m, _, _ in store.meters()}:
                raise HTTPException(404)
            assert revoke is not None  # noqa: S101
            revoke(meter_id)
            store.set_state(meter_id, state)
            audit(
                who.username,
                meter_id,
                action,
                "done",
                "certificates revoked, CRL re-published, ingest refuses the meter",
            )

        @app.post("/api/v1/meters/{meter_id}/decommission", status_code=204)
        async def decommission(meter_id: str, who: Annotated[Principal, Depends(retire)]) -> None:
            _retire(meter_id, who, "decommissioned", "meter_decommissioned")

        @app.post("/api/v1/meters/{meter_id}/revoke", status_code=204)
        async def revoke_meter(meter_id: str, who: Annotated[Principal, Depends(revoker)]) -> None:
            _retire(meter_id, who, "revoked", "certificate_revoked")

    if billing is not None:
        issuers = Guard(frozenset({"operator", "engineer"}))

        @app.get("/api/v1/meters/{meter_id}/bills", response_model=BillList)
        async def bills(meter_id: str, who: Annotated[Principal, Depends(anyone)]) -> BillList:
            if not accounts.visible_meter(who, meter_id):
                raise HTTPException(404)
            assert billing is not None  # noqa: S101
            return BillList(
                meter_id=meter_id,
                billing_key=billing.verifying_key.to_bytes().hex(),
                bills=billing.bills(meter_id),
            )

        @app.post("/api/v1/meters/{meter_id}/bills", response_model=BillView, status_code=201)
        async def issue_bill(
            meter_id: str, body: BillRequest, who: Annotated[Principal, Depends(issuers)]
        ) -> BillView:
            if not accounts.visible_meter(who, meter_id):
                raise HTTPException(404)
            assert billing is not None  # noqa: S101
            try:
                b = billing.issue(meter_id, body.start, body.end, now=int(time.time()))
            except InvalidValueError:
                raise HTTPException(409) from None
            audit(
                who.username,
                meter_id,
                "bill_issued",
                "signed",
                f"period {body.start}..{body.end} total_e4 {b.document['total_e4']}",
            )
            return b

    if commands is not None:
        commanders = Guard(COMMAND_ROLES)
        command_readers = Guard(COMMAND_ROLES | {"auditor"})

        @app.get("/api/v1/commands", response_model=CommandList)
        async def list_commands(
            _who: Annotated[Principal, Depends(command_readers)],
        ) -> CommandList:
            assert commands is not None  # noqa: S101
            return CommandList(commands=commands.list())

        @app.post("/api/v1/commands", response_model=CommandView, status_code=201)
        async def propose(
            body: CommandRequest, who: Annotated[Principal, Depends(commanders)]
        ) -> CommandView:
            assert commands is not None  # noqa: S101
            try:
                return commands.propose(
                    who, body.meter_id, body.kind, body.value, body.reason, now=int(time.time())
                )
            except InvalidValueError:
                raise HTTPException(422) from None

        def _decide(step: str) -> Callable[..., Awaitable[CommandView]]:
            async def decide(
                command_id: int, who: Annotated[Principal, Depends(commanders)]
            ) -> CommandView:
                assert commands is not None  # noqa: S101
                act = commands.approve if step == "approve" else commands.reject
                try:
                    out = act(who, command_id, now=int(time.time()))
                except AccessDeniedError:  # dual control: already audited by the service
                    raise HTTPException(403) from None
                if out is None:
                    raise HTTPException(404)
                return out

            return decide

        @app.post("/api/v1/meters/{meter_id}/read", response_model=CommandView, status_code=202)
        async def read_now(
            meter_id: str, who: Annotated[Principal, Depends(commanders)]
        ) -> CommandView:
            """On-demand read: a signed GET of the import register; the answer fills ``reading``."""
            assert commands is not None  # noqa: S101
            try:
                return commands.read_now(who, meter_id, now=int(time.time()))
            except InvalidValueError:
                raise HTTPException(404) from None

        for step in ("approve", "reject"):
            app.add_api_route(
                f"/api/v1/commands/{{command_id}}/{step}",
                _decide(step),
                methods=["POST"],
                response_model=CommandView,
            )

    add_pages(app, accounts, store, commands=commands, billing=billing)

    app.state.route_roles = route_table(app)
    return app


PUBLIC_PATHS = frozenset(
    {
        "/api/v1/auth/login",
        # The second-factor steps need step 1's session, which they check themselves.
        "/api/v1/auth/totp",
        "/api/v1/auth/webauthn/options",
        "/api/v1/auth/webauthn",
    }
    | PAGE_PUBLIC
)


def route_table(app: FastAPI) -> dict[str, frozenset[str]]:
    """API-2, default deny: every route's roles, read from its :class:`Guard`.

    Raises:
        ConfigurationError: a route neither depends on a Guard nor is in :data:`PUBLIC_PATHS`.
    """
    route_roles: dict[str, frozenset[str]] = {}
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue  # the static files' mount and nothing else
        roles = PUBLIC if route.path in PUBLIC_PATHS else _roles_of(route)
        if roles is None:
            raise ConfigurationError(f"route {route.path} declares no roles")
        route_roles[route.path] = roles
        # The OpenAPI document names every generic error a route can answer (its tests and
        # clients rely on it): no session, forbidden, not visible, invalid, slowed down.
        for code, text in _ERRORS.items():
            route.responses.setdefault(code, {"model": ErrorBody, "description": text})
    return route_roles
