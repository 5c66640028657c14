"""Observability of the web API: request ids, a JSON log line per request, /metrics, /healthz.

(No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.)

* Every request gets an id — the client's ``X-Request-ID`` when it is a sane token, else a
  new one — that its response header, its log line and every audit entry written while
  serving it carry (:data:`meterguard.logs.REQUEST_ID`).
* One log line per request (logger ``meterguard.http``): method, route template, status,
  milliseconds, peer; never a query string, a body or a cookie.
* ``GET /metrics`` answers a Prometheus scrape (:class:`~meterguard.headend.metrics.Metrics`)
  to a scraper holding the deployment's bearer token (only its SHA-256 is kept) or to a
  logged-in utility role that watches the system (:data:`MONITOR_ROLES`); nobody else.
* ``GET /healthz`` answers 200 when the database answers, 503 otherwise, and says nothing
  else (no version, no counts): load balancers and supervisors call it without a session.

Requests that match no route are labelled ``unmatched``: a scan of random URLs must not grow the
metrics' label set.
"""

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from meterguard.headend.api.guard import Guard
from meterguard.headend.metrics import CONTENT_TYPE, Metrics
from meterguard.headend.services.accounts import Principal
from meterguard.logs import REQUEST_ID

__all__ = [
    "HEALTH_PATH",
    "MONITOR_ROLES",
    "SCRAPER",
    "MetricsAccess",
    "add_observability",
    "create_metrics_app",
]

log = logging.getLogger("meterguard.http")
HEALTH_PATH = "/healthz"
MONITOR_ROLES = frozenset({"operator", "engineer", "security_admin", "auditor"})
"""Logged-in roles that may read /metrics in a browser (scrapers use the bearer token)."""
SCRAPER = "metrics_scraper"
"""The role a scraper with the bearer token acts as (it may read /metrics, nothing else)."""
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class MetricsAccess(Guard):
    """The bearer token of the deployment's scraper, or a session of :data:`MONITOR_ROLES`."""

    def __init__(self, token_sha256: bytes | None) -> None:
        super().__init__(MONITOR_ROLES | {SCRAPER})
        self._token_sha256 = token_sha256

    def __call__(
        self, request: Request, x_csrf_token: Annotated[str | None, Header()] = None
    ) -> Principal:
        """A scraper with the right token, else a logged-in monitor; 401/403 otherwise."""
        token = _bearer(request.headers.get("authorization", ""), self._token_sha256)
        if token is True:
            return Principal(0, SCRAPER, SCRAPER)
        if token is False:
            raise HTTPException(401)
        who = super().__call__(request, x_csrf_token)
        if who.role == SCRAPER:  # no account has this role; only the token grants it
            raise HTTPException(403)
        return who


def _route_of(request: Request) -> str:
    """The template of the route the request matched (``unmatched`` if none).

    The router records the route it chose in the request's scope; nothing is matched twice.
    """
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def _health(ok: bool) -> JSONResponse:
    """200 "ok" or 503 "unavailable", and nothing else."""
    return JSONResponse({"status": "ok" if ok else "unavailable"}, 200 if ok else 503)


def _bearer(authorization: str, token_sha256: bytes | None) -> bool | None:
    """None: no bearer token presented; else whether it is the scraper's (constant time)."""
    if authorization[:7].lower() != "bearer ":
        return None
    presented = hashlib.sha256(authorization[7:].strip().encode()).digest()
    return token_sha256 is not None and hmac.compare_digest(presented, token_sha256)


def add_observability(
    app: FastAPI,
    metrics: Metrics | None,
    *,
    scrape_token_sha256: bytes | None = None,
    healthy: Callable[[], bool],
) -> None:
    """Add the request-id and logging middleware, ``/metrics`` and ``/healthz`` to ``app``."""

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get("x-request-id", "")
        if not _SANE_ID.match(rid):
            rid = secrets.token_hex(8)
        token = REQUEST_ID.set(rid)
        t0 = time.monotonic()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-ID"] = rid
            return response
        finally:
            took = time.monotonic() - t0
            route = _route_of(request)
            if metrics is not None:
                metrics.api_request(request.method, route, status, took)
            log.info(
                "%s %s %d",
                request.method,
                route,
                status,
                extra={
                    "request_id": rid,
                    "method": request.method,
                    "route": route,
                    "status": status,
                    "ms": round(took * 1000, 2),
                    "peer": request.client.host if request.client else "",
                },
            )
            REQUEST_ID.reset(token)

    router = APIRouter()
    access = MetricsAccess(scrape_token_sha256)

    @router.get("/metrics", include_in_schema=False)
    def scrape(_who: Annotated[Principal, Depends(access)]) -> Response:
        if metrics is None:
            raise HTTPException(404)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @router.get(HEALTH_PATH, include_in_schema=False)
    def health() -> JSONResponse:
        return _health(healthy())

    app.router.routes.extend(router.routes)


def create_metrics_app(
    metrics: Metrics, scrape_token_sha256: bytes, healthy: Callable[[], bool]
) -> FastAPI:
    """A process's own ``/metrics`` (bearer token only) and ``/healthz``.

    For a separate ingest worker, which has no dashboard and no sessions.
    """
    app = FastAPI(title="meterguard metrics", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/metrics")
    def scrape(authorization: Annotated[str, Header()] = "") -> Response:
        if not _bearer(authorization, scrape_token_sha256):
            raise HTTPException(401)
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get(HEALTH_PATH)
    def health() -> JSONResponse:
        return _health(healthy())

    return app
