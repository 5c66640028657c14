"""Login (password, then TOTP or WebAuthn for utility roles), logout, WebAuthn registration.

(No ``from __future__ import annotations``: FastAPI reads these annotations at runtime.)

Login is rate-limited per account and per client address *before* the password hash is
computed, answering 429 with ``Retry-After`` (API-7); wrong second-factor codes end the
pending login or lock the account's second factor (the accounts service's rule, 401 or 429);
every step rotates the session cookie (API-6) and is audited with the client's address (LOG-1).
"""

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from meterguard.errors import AuthenticationFailedError, RateLimitedError, SessionEndedError
from meterguard.headend.api.deps import Services, Svc, audit, peer
from meterguard.headend.api.guard import COOKIE, Explained, Guard, Limits
from meterguard.headend.api.schemas import (
    LoginRequest,
    LoginResponse,
    Me,
    Registered,
    TotpRequest,
    WebAuthnLogin,
    WebAuthnRegistration,
)
from meterguard.headend.services.accounts import ROLES, Principal, SessionInfo

__all__ = ["router", "webauthn_router"]

router = APIRouter()
webauthn_router = APIRouter()
anyone = Guard(ROLES)


def _set_session(response: Response, info: SessionInfo) -> None:
    response.set_cookie(COOKIE, info.token, secure=True, httponly=True, samesite="strict", path="/")


def _login_response(info: SessionInfo) -> LoginResponse:
    p = info.principal
    return LoginResponse(
        username=p.username, role=p.role, mfa_required=not info.mfa_done, csrf_token=info.csrf
    )


def _login_audit(svc: Services, action: str, actor: str, result: str, request: Request) -> None:
    audit(svc, actor, "web", action, result, f"from {peer(request)}")


def _second_step(
    svc: Services,
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
        info = verify(token, svc.now())
    except RateLimitedError as exc:  # the account's second factor is locked (API-7)
        _login_audit(svc, action, "?", "rate_limited", request)
        minutes = (exc.retry_after + 59) // 60
        raise Explained(
            429,
            detail=f"too many wrong codes for this account: try again in {minutes} min",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    except SessionEndedError:
        _login_audit(svc, action, "?", "session_ended", request)
        raise Explained(401, detail="too many wrong codes: log in again") from None
    except AuthenticationFailedError:
        _login_audit(svc, action, "?", "failed", request)
        raise HTTPException(401) from None
    _login_audit(svc, action, info.principal.actor, "ok", request)
    _set_session(response, info)
    return _login_response(info)


@router.post("/api/v1/auth/login", response_model=LoginResponse)
def login(body: LoginRequest, request: Request, response: Response, svc: Svc) -> LoginResponse:
    """Step 1: user name and password."""
    now = svc.clock.now().timestamp()
    limits: Limits = request.app.state.limits
    wait = max(
        limits.allow(f"user:{body.username}", now), limits.allow(f"addr:{peer(request)}", now)
    )
    if wait:
        _login_audit(svc, "login", svc.accounts.actor_for(body.username), "rate_limited", request)
        raise HTTPException(429, headers={"Retry-After": str(int(wait) + 1)})
    try:
        info = svc.accounts.login(body.username, body.password, now=int(now))
    except AuthenticationFailedError:
        _login_audit(svc, "login", svc.accounts.actor_for(body.username), "failed", request)
        raise HTTPException(401) from None
    _login_audit(svc, "login", info.principal.actor, "password_ok", request)
    _set_session(response, info)
    out = _login_response(info)
    if svc.passkeys is not None and not info.mfa_done:
        out.webauthn = svc.passkeys.count(info.principal.user_id) > 0
    return out


@router.post("/api/v1/auth/totp", response_model=LoginResponse)
def totp(body: TotpRequest, request: Request, response: Response, svc: Svc) -> LoginResponse:
    """Step 2 for utility roles: a TOTP code, each usable once (API-5)."""
    return _second_step(
        svc,
        request,
        response,
        "login_totp",
        lambda token, now: svc.accounts.second_factor(token, body.code, now=now),
    )


@router.post("/api/v1/auth/logout", status_code=204)
def logout(
    request: Request, response: Response, svc: Svc, _who: Annotated[Principal, Depends(anyone)]
) -> None:
    """End the session."""
    svc.accounts.logout(request.cookies.get(COOKIE, ""))
    response.delete_cookie(COOKIE, secure=True, httponly=True, samesite="strict", path="/")


@router.get("/api/v1/me", response_model=Me)
def me(who: Annotated[Principal, Depends(anyone)]) -> Me:
    """The caller."""
    return Me(username=who.username, role=who.role)


@webauthn_router.post("/api/v1/auth/webauthn/options")
def webauthn_options(request: Request, svc: Svc) -> Response:
    """WebAuthn assertion options for step 1's session."""
    token = request.cookies.get(COOKIE)
    if not token or svc.passkeys is None:
        raise HTTPException(401)
    try:
        options = svc.passkeys.authentication_options(token, now=svc.now())
    except AuthenticationFailedError:
        raise HTTPException(401) from None
    return Response(options, media_type="application/json")


@webauthn_router.post("/api/v1/auth/webauthn", response_model=LoginResponse)
def webauthn_login(
    body: WebAuthnLogin, request: Request, response: Response, svc: Svc
) -> LoginResponse:
    """Step 2 with a security key or passkey instead of TOTP."""
    keys = svc.passkeys
    if keys is None:
        raise HTTPException(404)
    return _second_step(
        svc,
        request,
        response,
        "login_webauthn",
        lambda token, now: keys.authenticate(token, body.credential, now=now),
    )


@webauthn_router.post("/api/v1/webauthn/register/options")
def register_options(
    request: Request, svc: Svc, _who: Annotated[Principal, Depends(anyone)]
) -> Response:
    """Registration options for a new authenticator (needs a full login)."""
    if svc.passkeys is None:
        raise HTTPException(404)
    options = svc.passkeys.registration_options(request.state.session, now=svc.now())
    return Response(options, media_type="application/json")


@webauthn_router.post("/api/v1/webauthn/register", response_model=Registered, status_code=201)
def register(
    body: WebAuthnRegistration,
    request: Request,
    svc: Svc,
    who: Annotated[Principal, Depends(anyone)],
) -> Registered:
    """Store a new authenticator (audited)."""
    if svc.passkeys is None:
        raise HTTPException(404)
    info, now = request.state.session, svc.now()
    try:
        rid = svc.passkeys.register(info, body.credential, body.label, now=now)
    except AuthenticationFailedError:
        _login_audit(svc, "webauthn_registered", who.actor, "failed", request)
        raise HTTPException(422) from None
    _login_audit(svc, "webauthn_registered", who.actor, "ok", request)
    return Registered(id=rid)
