"""Who may call a route: the :class:`Guard` dependency, rate limits, audited denials.

(No ``from __future__ import annotations``: FastAPI reads the annotations at runtime.)

A route declares its roles by depending on a ``Guard(roles)``; the guard checks the
session cookie (server-side session, API-6), the per-user API rate limit (API-7), the
CSRF header on state changes, and the role, and writes every denial to the audit log
(LOG-1). It reads the services from ``request.app.state`` (``accounts``, ``store``,
``api_limits``). It does not parse bodies or decide object-level scoping: routes do.
"""

from typing import Annotated

from fastapi import Header, HTTPException, Request

from meterguard.errors import AuthenticationFailedError
from meterguard.headend.ingest.processor import TokenBucket
from meterguard.headend.services.accounts import Accounts, Principal
from meterguard.headend.store.repository import Store

__all__ = ["COOKIE", "Guard", "Limits", "denied"]

COOKIE = "__Host-mg-session"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class Limits:
    """Token buckets by key: logins (per account, per address) and API calls (per user)."""

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

    A plain ``def``: FastAPI runs it in its thread pool, so the session lookup (a database
    read) never blocks the event loop.

    The roles live on the dependency itself, so the route table's declared roles are the
    enforced ones (API-2): :func:`create_app` reads them back from each route.
    """

    def __init__(self, roles: frozenset[str]) -> None:
        self.roles = roles

    def __call__(
        self, request: Request, x_csrf_token: Annotated[str | None, Header()] = None
    ) -> Principal:
        """Check the session, the CSRF token of a state change, and the role; return the caller."""
        accounts: Accounts = request.app.state.accounts
        token = request.cookies.get(COOKIE)
        if not token:
            raise HTTPException(401)
        try:
            info = accounts.session(token, now=request.app.state.services.now())
        except AuthenticationFailedError:
            raise HTTPException(401) from None
        who = info.principal
        now = request.app.state.services.clock.now().timestamp()
        wait = request.app.state.api_limits.allow(f"user:{who.user_id}", now)
        if wait:  # API-7: per user, after authentication
            raise HTTPException(429, headers={"Retry-After": str(int(wait) + 1)})
        if request.method in _UNSAFE and x_csrf_token != info.csrf:
            denied(request, who, "csrf token missing or wrong")
            raise HTTPException(403)  # API-6
        if who.role not in self.roles:
            denied(request, who, f"role {who.role} not in {sorted(self.roles)}")
            raise HTTPException(403)
        request.state.session = info  # for routes that need more than the principal
        return who


class Explained(HTTPException):
    """An HTTP error whose ``detail`` is sent to the user (others send a generic phrase).

    The detail must name no internal state, only what the user should do.
    """


def denied(request: Request, who: Principal, why: str) -> None:
    """LOG-1: authorisation denials go to the audit log."""
    store: Store = request.app.state.store
    store.audit.append(
        at=request.app.state.services.now(),
        actor=who.actor,
        target=f"{request.method} {request.url.path}"[:128],
        action="access_denied",
        result="denied",
        detail=why,
    )
