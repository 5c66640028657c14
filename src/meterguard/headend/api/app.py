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
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from meterguard.errors import AuthenticationFailedError, ConfigurationError
from meterguard.headend.ingest.processor import TokenBucket
from meterguard.headend.services.accounts import (
    ROLES,
    UTILITY_ROLES,
    Accounts,
    Principal,
    SessionInfo,
)
from meterguard.headend.store.repository import AlarmView, Store

__all__ = ["COOKIE", "PUBLIC", "Guard", "create_app"]

COOKIE = "__Host-mg-session"
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
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


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


class Me(BaseModel):
    """The caller."""

    username: str
    role: str


class MeterList(BaseModel):
    """Meters the caller may see."""

    meters: list[str]


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


class _Limits:
    """Login rate limits per account and per address, checked before any hash (API-7)."""

    def __init__(self, rate: float = 0.2, burst: float = 5.0) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}

    def allow(self, key: str, now: float) -> float:
        """0 if allowed, else the seconds to wait."""
        b = self._buckets.setdefault(key, TokenBucket(self.rate, self.burst))
        if b.allow(now):
            return 0.0
        return max(1.0, (1 - b.tokens) / self.rate)


class Guard:
    """A dependency admitting only a fully logged-in caller with one of ``roles``.

    The roles live on the dependency itself, so the route table's declared roles are the
    enforced ones (API-2): :func:`create_app` reads them back from each route.
    """

    def __init__(self, roles: frozenset[str]) -> None:
        self.roles = roles

    async def __call__(
        self, request: Request, x_csrf_token: Annotated[str | None, Header()] = None
    ) -> Principal:
        """Check the session, the CSRF token of a state change, and the role; return the caller."""
        accounts: Accounts = request.app.state.accounts
        token = request.cookies.get(COOKIE)
        if not token:
            raise HTTPException(401)
        try:
            info = accounts.session(token, now=int(time.time()))
        except AuthenticationFailedError:
            raise HTTPException(401) from None
        if request.method in _UNSAFE and x_csrf_token != info.csrf:
            raise HTTPException(403)  # API-6: CSRF token missing or wrong
        if info.principal.role not in self.roles:
            raise HTTPException(403)
        return info.principal


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


def create_app(accounts: Accounts, store: Store) -> FastAPI:
    """The API, ready for an ASGI server with TLS."""
    app = FastAPI(title="meterguard head-end", version="1", docs_url=None, redoc_url=None)
    app.state.accounts = accounts
    app.state.limits = _Limits()

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for k, v in HEADERS.items():
            response.headers[k] = v
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        generic = {401: "not logged in", 403: "forbidden", 404: "not found", 429: "slow down"}
        return JSONResponse(
            {"error": generic.get(exc.status_code, "request failed")},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, _e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request"}, status_code=422)

    def audit(action: str, actor: str, result: str, peer: str) -> None:
        """LOG-1: logins and their failures go to the tamper-evident audit log."""
        store.audit.append(
            at=int(time.time()),
            actor=actor[:64],
            target="web",
            action=action,
            result=result,
            detail=f"from {peer}",
        )

    anyone, utility = Guard(ROLES), Guard(UTILITY_ROLES)

    @app.post("/api/v1/auth/login", response_model=LoginResponse)
    async def login(body: LoginRequest, request: Request, response: Response) -> LoginResponse:
        now = time.time()
        peer = _peer(request)
        limits: _Limits = request.app.state.limits
        wait = max(limits.allow(f"user:{body.username}", now), limits.allow(f"addr:{peer}", now))
        if wait:
            audit("login", body.username, "rate_limited", peer)
            raise HTTPException(429, headers={"Retry-After": str(int(wait) + 1)})
        try:
            info = accounts.login(body.username, body.password, now=int(now))
        except AuthenticationFailedError:
            audit("login", body.username, "failed", peer)
            raise HTTPException(401) from None
        audit("login", body.username, "password_ok", peer)
        _set_session(response, info)
        return _login_response(info)

    @app.post("/api/v1/auth/totp", response_model=LoginResponse)
    async def totp(body: TotpRequest, request: Request, response: Response) -> LoginResponse:
        token = request.cookies.get(COOKIE)
        if not token:
            raise HTTPException(401)
        peer = _peer(request)
        try:
            info = accounts.second_factor(token, body.code, now=int(time.time()))
        except AuthenticationFailedError:
            audit("login_totp", "?", "failed", peer)
            raise HTTPException(401) from None
        audit("login_totp", info.principal.username, "ok", peer)
        _set_session(response, info)
        return _login_response(info)

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
        return MeterList(meters=accounts.meters(who))

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

    # API-2, default deny: every route either depends on a Guard or is listed as public.
    public = {"/api/v1/auth/login", "/api/v1/auth/totp"}  # totp needs step 1's session
    route_roles: dict[str, frozenset[str]] = {}
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue  # the OpenAPI document and nothing else
        roles = PUBLIC if route.path in public else _roles_of(route)
        if roles is None:
            raise ConfigurationError(f"route {route.path} declares no roles")
        route_roles[route.path] = roles
    app.state.route_roles = route_roles
    return app
