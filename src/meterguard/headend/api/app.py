"""The head-end's web API (FastAPI at the edge): the app factory and its route-role table.

(No ``from __future__ import annotations`` here: FastAPI reads annotations at runtime.)

:func:`create_app` builds the ASGI app over the services (accounts, store, consumption
data, and optionally commands, billing, the meter lifecycle and passkeys) and includes the
routes of :mod:`meterguard.headend.api.routes`, which only parse, authorise and call them:

* **every route declares its roles** by depending on a :class:`Guard` (directly or through
  :func:`~meterguard.headend.api.deps.meter_for`), which enforces them; :func:`route_table`
  reads the roles back into ``app.state.route_roles`` and refuses to build an app with a
  route that has neither a guard nor a place on the short public list (API-2, default deny);
* **sessions** live server-side; the client holds a 256-bit token in the ``__Host-``
  cookie (Secure, HttpOnly, SameSite=Strict, Path=/) — rotated at each login step —
  and sends the session's CSRF token in ``X-CSRF-Token`` on every state change (API-6);
* **scoping**: a meter the caller may not see is a 404, exactly like one that does not
  exist (API-1, BOLA);
* request models forbid unknown fields (API-3); errors have generic bodies; every
  response carries the security headers of API-8 and no server banner.

Handlers that touch the database are plain ``def`` (FastAPI runs them in its thread pool),
so blocking work never runs on the event loop. HTTPS is the server's job
(:mod:`meterguard.system.web`, API-9); this module does not listen.
"""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from meterguard.clock import Clock, SystemClock
from meterguard.errors import ConfigurationError
from meterguard.headend.api.deps import Services
from meterguard.headend.api.guard import COOKIE, Explained, Guard, Limits
from meterguard.headend.api.observe import HEALTH_PATH, add_observability
from meterguard.headend.api.routes import auth
from meterguard.headend.api.routes import commands as command_routes
from meterguard.headend.api.routes import firmware as firmware_routes
from meterguard.headend.api.routes import fleet as fleet_routes
from meterguard.headend.api.routes import meters as meter_routes
from meterguard.headend.api.routes import sharing as sharing_routes
from meterguard.headend.api.routes import theft as theft_routes
from meterguard.headend.api.schemas import ERRORS, ErrorBody
from meterguard.headend.metrics import Metrics
from meterguard.headend.services.accounts import Accounts
from meterguard.headend.services.billing import Billing
from meterguard.headend.services.commands import Commands
from meterguard.headend.services.firmware import FirmwareUpdates
from meterguard.headend.services.fleet import FleetView
from meterguard.headend.services.meters import Meters
from meterguard.headend.services.redteam import AttackReports
from meterguard.headend.services.retention import Retention
from meterguard.headend.services.sharing import DataSharing
from meterguard.headend.services.theft import RevenueProtection
from meterguard.headend.services.usage import consumption_data
from meterguard.headend.services.webauthn import Passkeys
from meterguard.headend.store.repository import Store
from meterguard.headend.web.pages import PAGE_PUBLIC, add_pages

__all__ = ["COOKIE", "HEADERS", "PUBLIC", "PUBLIC_PATHS", "Guard", "create_app", "route_table"]

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
MAX_BODY = 64 * 1024
"""Largest request body (bytes): the largest legitimate one, a WebAuthn attestation, is a few
KiB; a bigger one is refused before it is read (a 64 MiB login body was read in full)."""
_GENERIC = {
    303: "see other",
    401: "not logged in",
    403: "forbidden",
    404: "not found",
    409: "conflict",
    429: "slow down",
}


def create_app(
    accounts: Accounts,
    store: Store,
    *,
    commands: Commands | None = None,
    billing: Billing | None = None,
    meters: Meters | None = None,
    passkeys: Passkeys | None = None,
    firmware: FirmwareUpdates | None = None,
    theft: RevenueProtection | None = None,
    sharing: DataSharing | None = None,
    retention: Retention | None = None,
    attacks: AttackReports | None = None,
    metrics: Metrics | None = None,
    scrape_token_sha256: bytes | None = None,
    fleet: FleetView | None = None,
    clock: Clock | None = None,
    api_rate: float = 20.0,
    api_burst: float = 200.0,
) -> FastAPI:
    """The API (and the dashboard on it), ready for an ASGI server with TLS.

    ``commands``, ``billing``, ``meters`` (the lifecycle: provision, disable, enable,
    decommission, revoke) and ``passkeys`` add their routes; ``clock`` is the head-end's
    (the wall clock by default) for every timestamp the API writes or checks. ``metrics``
    answers ``/metrics`` (to a scraper holding the token whose SHA-256 is
    ``scrape_token_sha256``, or a logged-in monitor); every request gets an id and a log line.
    """
    app = FastAPI(title="meterguard head-end", version="1", docs_url=None, redoc_url=None)
    svc = Services(
        accounts,
        store,
        consumption_data(store, accounts),
        commands=commands,
        billing=billing,
        meters=meters,
        passkeys=passkeys,
        firmware=firmware,
        theft=theft,
        sharing=sharing,
        retention=retention,
        attacks=attacks,
        fleet_view=fleet,
        metrics=metrics,
        clock=clock or SystemClock(),
    )
    app.state.services = svc
    app.state.accounts = accounts  # the Guard's
    app.state.store = store  # the Guard's (audited denials)
    app.state.limits = Limits()
    app.state.api_limits = Limits(rate=api_rate, burst=api_burst)

    add_security_headers(app)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first route's
            methods = {
                m
                for r in app.routes
                if isinstance(r, APIRoute) and r.path_regex.match(request.url.path)
                for m in r.methods or ()
            }
            headers["Allow"] = ", ".join(sorted(methods))
        body = {"error": _GENERIC.get(exc.status_code, "request failed")}
        if isinstance(exc, Explained):
            body["detail"] = str(exc.detail)
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, _e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(_r: Request, _e: Exception) -> JSONResponse:
        # Sent by the outermost middleware, past the one that adds headers: add them here.
        return JSONResponse({"error": "request failed"}, status_code=500, headers=HEADERS)

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY)
    add_observability(app, metrics, scrape_token_sha256=scrape_token_sha256, healthy=store.healthy)

    routers = [auth.router, meter_routes.router, fleet_routes.router]
    routers += [auth.webauthn_router] if passkeys is not None else []
    routers += [meter_routes.lifecycle_router] if meters is not None else []
    routers += [meter_routes.billing_router] if billing is not None else []
    routers += [command_routes.router] if commands is not None else []
    routers += [firmware_routes.router] if firmware is not None else []
    routers += [theft_routes.router] if theft is not None else []
    routers += [sharing_routes.consent_router]
    routers += [sharing_routes.router] if sharing is not None else []
    routers += [sharing_routes.erasure_router] if retention is not None else []
    for router in routers:
        # The routes themselves, not an included router: the route-role table below must see
        # every route (an included router hides its routes from ``app.routes``).
        app.router.routes.extend(router.routes)
    add_pages(app, svc)
    app.state.route_roles = route_table(app)
    return app


PUBLIC_PATHS = frozenset(
    {
        "/api/v1/auth/login",
        # The second-factor steps need step 1's session, which they check themselves.
        "/api/v1/auth/totp",
        "/api/v1/auth/webauthn/options",
        "/api/v1/auth/webauthn",
        HEALTH_PATH,  # says only "ok" or "unavailable"
    }
    | PAGE_PUBLIC
)


def add_security_headers(app: FastAPI) -> None:
    """Every response of ``app`` carries :data:`HEADERS` (API-8)."""

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for k, v in HEADERS.items():
            response.headers[k] = v
        return response


class BodyLimit:
    """ASGI middleware: a request body must declare its length, at most ``max_bytes`` (API-7).

    A larger ``Content-Length`` answers 413, a body without one (chunked) 411, before any of
    it is read; the answer carries the security headers like every other (API-8).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then let the request through."""
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or ())
            length = headers.get(b"content-length")
            status = 0
            if length is None:
                status = 411 if b"transfer-encoding" in headers else 0
            elif not length.isdigit() or int(length) > self.max_bytes:
                status = 413
            if status:
                body = {411: "length required", 413: "request too large"}[status]
                response = JSONResponse({"error": body}, status_code=status, headers=HEADERS)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _guard_of(dependant: Dependant) -> Guard | None:
    """The :class:`Guard` a route depends on, directly or through another dependency."""
    for dep in dependant.dependencies:
        if isinstance(dep.call, Guard):
            return dep.call
        inner = _guard_of(dep)
        if inner is not None:
            return inner
    return None


def route_table(app: FastAPI) -> dict[str, frozenset[str]]:
    """API-2, default deny: every route's roles, read from its :class:`Guard`.

    Raises:
        ConfigurationError: a route neither depends on a Guard nor is in :data:`PUBLIC_PATHS`.
    """
    route_roles: dict[str, frozenset[str]] = {}
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue  # the static files' mount and nothing else
        guard = _guard_of(route.dependant)
        roles = PUBLIC if route.path in PUBLIC_PATHS else (guard.roles if guard else None)
        if roles is None:
            raise ConfigurationError(f"route {route.path} declares no roles")
        route_roles[route.path] = roles
        # The OpenAPI document names every generic error a route can answer (its tests and
        # clients rely on it): no session, forbidden, not visible, invalid, slowed down.
        for code, text in ERRORS.items():
            route.responses.setdefault(code, {"model": ErrorBody, "description": text})
    return route_roles
