"""Plays of unauthorized access against a running system: the broker and the web API.

Each function is a scenario's play (see :mod:`meterguard.attacks.scenario`): it acts as the
named attacker against the live listeners on loopback and reports whether it was refused.
What the system recorded is checked by the runner, not here. The outsider connects from
``127.0.0.2`` (another client than the tools of the same run, so the per-address login limit
it trips is its own).
"""

from __future__ import annotations

import datetime as dt
import secrets
import tempfile
import time
from pathlib import Path

import httpx
import pyotp
from cryptography.hazmat.primitives.asymmetric import ec

from meterguard.attacks.probe import connect
from meterguard.attacks.scenario import Attempt, Profile
from meterguard.attacks.target import Target
from meterguard.crypto.pki.authority import Authority, build_csr
from meterguard.crypto.pki.store import pem, write_key
from meterguard.mqtt.contract import command_topic, upstream_topic

COOKIE = "__Host-mg-session"
"""The session cookie's name (the API's guard: an attacker reads it off any response)."""

__all__ = [
    "api_forged_session",
    "api_without_session",
    "broker_foreign_ca",
    "broker_no_certificate",
    "broker_other_topic",
    "broker_subscribe_all",
    "cloned_identity",
    "consumer_bola",
    "csrf_missing",
    "password_guessing",
    "role_escalation",
    "session_fixation",
    "totp_brute_force",
    "totp_replay",
]

OUTSIDER = "127.0.0.2"
GUESSER = "127.0.0.3"
"""The password guesser's own address (the per-address login limit it trips is its own)."""
PROTECTED = (
    "/api/v1/me",
    "/api/v1/fleet",
    "/api/v1/fleet/meters",
    "/api/v1/alarms",
    "/api/v1/security-events",
    "/api/v1/users",
    "/api/v1/commands",
    "/api/v1/meters",
)


def broker_no_certificate(t: Target, _p: Profile) -> Attempt:
    """TLS to the device listener without a client certificate."""
    probe = connect(t.device_port, t.root, client_id="attacker-no-cert")
    try:
        return Attempt(
            not probe.connected, f"connected={probe.connected} rc={probe.connect_rc} {probe.error}"
        )
    finally:
        probe.close()


def broker_foreign_ca(t: Target, _p: Profile) -> Attempt:
    """A meter certificate from a rogue CA that copies every name of ours."""
    now = dt.datetime.now(dt.UTC)
    rogue = Authority.create_root("meterguard root CA", now=now).create_intermediate(
        "meterguard device CA", now=now
    )
    key = ec.generate_private_key(ec.SECP256R1())
    serial = t.role("compromised")[3:]
    cert = rogue.issue_meter(build_csr(key, serial), now=now, validity=dt.timedelta(days=1))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "cert.pem").write_bytes(pem(cert) + pem(rogue.certificate))
        write_key(d / "key.pem", key)
        probe = connect(t.device_port, t.root, d / "cert.pem", d / "key.pem")
        try:
            return Attempt(
                not probe.connected,
                f"connected={probe.connected} rc={probe.connect_rc} {probe.error}",
            )
        finally:
            probe.close()


def broker_other_topic(t: Target, _p: Profile) -> Attempt:
    """A compromised meter publishes a reading on the victim's topic, and a command on its own."""
    with t.seized() as identity:
        probe = connect(t.device_port, t.root, *identity)
        if not probe.connected:
            return Attempt(False, f"the compromised meter could not connect: {probe.error}")
        try:
            victim = probe.publish(upstream_topic(t.role("victim"), "data"), b"forged reading")
            command = probe.publish(command_topic(t.role("victim")), b"forged command")
        finally:
            probe.close()
    ok = all(rc is not None and rc.is_failure for rc in (victim, command))
    return Attempt(ok, f"victim's data topic: PUBACK {victim}; victim's command topic: {command}")


def broker_subscribe_all(t: Target, _p: Profile) -> Attempt:
    """A compromised meter subscribes to everything and to the victim's commands for 3 s."""
    with t.seized() as identity:
        probe = connect(t.device_port, t.root, *identity)
        if not probe.connected:
            return Attempt(False, f"the compromised meter could not connect: {probe.error}")
        try:
            granted = [str(g) for g in probe.subscribe("#")]
            granted += [str(g) for g in probe.subscribe(command_topic(t.role("victim")))]
            got = probe.wait_messages(1, timeout=3.0)
            others = [topic for topic, _ in got if t.role("compromised") not in topic]
        finally:
            probe.close()
    return Attempt(not others, f"SUBACK {granted}; others' messages received: {len(others)}")


def api_without_session(t: Target, _p: Profile) -> Attempt:
    """Every protected route without a session cookie."""
    with t.web(source=OUTSIDER) as c:
        codes = {path: c.get(path).status_code for path in PROTECTED}
    ok = all(code == 401 for code in codes.values())
    return Attempt(ok, ", ".join(f"{p} {s}" for p, s in codes.items()))


def api_forged_session(t: Target, _p: Profile) -> Attempt:
    """Guessed session cookies (random tokens of the right length)."""
    codes = []
    with t.web(source=OUTSIDER) as c:
        for _ in range(20):
            c.cookies.set(COOKIE, secrets.token_urlsafe(32))
            codes.append(c.get("/api/v1/fleet").status_code)
    return Attempt(all(s == 401 for s in codes), f"20 guessed sessions: {sorted(set(codes))}")


def consumer_bola(t: Target, _p: Profile) -> Attempt:
    """A logged-in consumer asks for another consumer's meter by id (and a 30-digit one)."""
    other = t.role("neighbour")
    with t.web() as c:
        r = t.login(c, t.role("consumer"))
        if r.status_code != 200:
            return Attempt(False, f"the consumer could not log in: {r.status_code}")
        own = c.get(f"/api/v1/meters/{t.role('victim')}/readings").status_code
        paths = [
            f"/api/v1/meters/{other}/readings",
            f"/api/v1/meters/{other}/usage",
            f"/api/v1/meters/{other}/access",
            f"/api/v1/meters/{other}/consent",
            "/api/v1/meters/" + "9" * 30 + "/readings",
        ]
        codes = {p: c.get(p).status_code for p in paths}
    ok = own == 200 and all(s == 404 for s in codes.values())
    return Attempt(
        ok, f"own meter {own}; " + ", ".join(f"{p.split('/')[-1]} {s}" for p, s in codes.items())
    )


def role_escalation(t: Target, _p: Profile) -> Attempt:
    """A consumer calls utility routes; an operator creates an administrator account."""
    with t.web() as c:
        if t.login(c, t.role("consumer")).status_code != 200:
            return Attempt(False, "the consumer could not log in")
        consumer = {
            "GET fleet": c.get("/api/v1/fleet").status_code,
            "GET security-events": c.get("/api/v1/security-events").status_code,
            "POST commands": c.post(
                "/api/v1/commands",
                json={"meter_id": t.role("neighbour"), "kind": "disconnect", "reason": "escalate"},
            ).status_code,
        }
    with t.web() as c:
        if t.login(c, t.role("insider")).status_code != 200:
            return Attempt(False, "the insider could not log in")
        insider = c.post(
            "/api/v1/users",
            json={"username": "backdoor", "password": "x" * 20, "role": "security_admin"},
        ).status_code
    codes = [*consumer.values(), insider]
    detail = ", ".join(f"consumer {k} {v}" for k, v in consumer.items())
    return Attempt(
        all(s == 403 for s in codes), f"{detail}; operator POST users (security_admin) {insider}"
    )


def csrf_missing(t: Target, _p: Profile) -> Attempt:
    """A state change in a logged-in operator's session without the CSRF token (a forged page)."""
    with t.web() as c:
        r = t.login(c, t.role("insider"))
        if r.status_code != 200:
            return Attempt(False, f"the insider could not log in: {r.status_code}")
        token = c.headers.pop("X-CSRF-Token")
        r = c.post("/api/v1/meters/" + t.role("neighbour") + "/read")
        c.headers["X-CSRF-Token"] = "0" * len(token)
        wrong = c.post("/api/v1/meters/" + t.role("neighbour") + "/read")
    return Attempt(
        r.status_code == 403 and wrong.status_code == 403,
        f"no token {r.status_code}, wrong token {wrong.status_code}",
    )


def session_fixation(t: Target, _p: Profile) -> Attempt:
    """The attacker plants a session cookie before the victim logs in, then tries to use it."""
    planted = secrets.token_urlsafe(32)
    with t.web() as c:
        c.cookies.set(COOKIE, planted)
        r = t.login(c, t.role("consumer"))
        issued = next((k.value for k in c.cookies.jar if k.value != planted), None)
    with t.web(source=OUTSIDER) as attacker:
        attacker.cookies.set(COOKIE, planted)
        fixed = attacker.get("/api/v1/me").status_code
    ok = r.status_code == 200 and issued is not None and issued != planted and fixed == 401
    return Attempt(
        ok,
        f"login {r.status_code}; new session issued={issued is not None and issued != planted};"
        f" planted cookie answers {fixed}",
    )


def totp_replay(t: Target, _p: Profile) -> Attempt:
    """An insider's TOTP code, observed once (over a shoulder), used again at once."""
    user = t.role("insider")
    _, secret = t.credentials(user)
    if secret is None:
        return Attempt(False, f"{user} has no TOTP")
    code = t.fresh_code(user, secret)
    with t.web() as c:
        first = t.login(c, user, code=code).status_code
    with t.web(source=OUTSIDER) as c:
        again = t.login(c, user, code=code).status_code
    return Attempt(first == 200 and again == 401, f"first use {first}; replayed code {again}")


def totp_brute_force(t: Target, _p: Profile) -> Attempt:
    """Wrong TOTP codes after the insider's password: the session ends, then the factor locks."""
    user = t.role("insider")
    _, secret = t.credentials(user)
    if secret is None:
        return Attempt(False, f"{user} has no TOTP")
    right = pyotp.TOTP(secret).now()
    password, _s = t.credentials(user)
    answers: list[int] = []
    with t.web(source=OUTSIDER) as c:
        for _ in range(3):  # three logins of at most five guesses each
            r = _password_step(c, user, password)
            if r.status_code != 200:
                answers.append(r.status_code)
                break
            for _g in range(5):
                guess = f"{secrets.randbelow(10**6):06d}"
                if guess == right:
                    continue
                code = c.post("/api/v1/auth/totp", json={"code": guess}).status_code
                answers.append(code)
                if code != 401:
                    break
            if 429 in answers:
                break
        _password_step(c, user, password)
        locked = c.post("/api/v1/auth/totp", json={"code": t.fresh_code(user, secret)})
    ok = 429 in answers and locked.status_code == 429
    return Attempt(
        ok,
        f"{len(answers)} wrong codes answered {sorted(set(answers))}; the right code then"
        f" {locked.status_code}",
        left=_unlock(t, user),
    )


def _unlock(t: Target, user: str) -> str:
    """The security administrator lifts ``user``'s second-factor lock (audited).

    As a helpdesk would once the owner is confirmed: a later run finds the account as before.
    """
    admin = t.role("admin")
    if not admin:
        return f"{user}'s second factor is locked for 15 min (it unlocks by itself)"
    with t.web() as c:
        r = t.login(c, admin)
        if r.status_code == 401:  # a code an earlier run used in this window: the next one
            r = t.login(c, admin)
        if r.status_code != 200:
            return f"{user}'s second factor stays locked for 15 min: {admin} could not log in"
        ids = [u["id"] for u in c.get("/api/v1/users").json()["users"] if u["username"] == user]
        done = [c.post(f"/api/v1/users/{uid}/unlock").status_code for uid in ids]
    if done != [204]:
        return f"{user}'s second factor stays locked for 15 min (unlock answered {done})"
    return f"{user}'s second factor locked, then unlocked by {admin} (audited: user_mfa_unlocked)"


def _password_step(c: httpx.Client, user: str, password: str) -> httpx.Response:
    """Step 1 of a login, waiting out the login limit (at most 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        r = c.post("/api/v1/auth/login", json={"username": user, "password": password})
        if r.status_code != 429 or time.monotonic() > deadline:
            return r
        time.sleep(min(float(r.headers.get("Retry-After", "5")), 10.0))


def cloned_identity(t: Target, _p: Profile) -> Attempt:
    """A meter's certificate and key, copied into a second device that runs beside it."""
    mid = t.role("cloned")
    d = t.meter_dir(mid)
    sessions = tries = 0
    mark = t.evidence.mark(now=int(time.time()))

    def quarantined() -> bool:
        return any(r.name == "identity_quarantined" and r.subject == mid
                   for r in t.evidence.since(mark))  # fmt: skip

    while tries < 8 and not quarantined():  # until the head-end sees the clone, at most 8
        tries += 1
        probe = connect(t.device_port, t.root, d / "tls.pem", d / "tls.key")
        sessions += probe.connected
        time.sleep(2.5)  # the real meter reconnects, and takes its identity back
        probe.close()
    restored = t.release(mid) if t.release is not None else "not released (no lifecycle service)"
    return Attempt(
        sessions > 0,
        f"the clone held {sessions} of {tries} sessions (each a takeover of the real meter's)",
        left=f"{mid} was quarantined; {restored}",
    )


def password_guessing(t: Target, _p: Profile) -> Attempt:
    """An outsider guesses an operator's password ten times in a row."""
    answers = []
    with t.web(source=GUESSER) as c:
        for _ in range(10):
            body = {"username": "olga", "password": secrets.token_urlsafe(12)}
            answers.append(c.post("/api/v1/auth/login", json=body).status_code)
    ok = set(answers) <= {401, 429} and 429 in answers
    return Attempt(
        ok,
        f"answers {answers}",
        left=f"the login limit of olga and of {GUESSER} refills within a minute",
    )
