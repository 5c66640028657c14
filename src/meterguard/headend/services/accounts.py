"""People and their sessions: users, roles, login steps, scoped access (API-1, API-4…6).

:class:`Accounts` is the service the web API calls; it owns no HTTP and writes no SQL
strings (SQLAlchemy Core over the store's tables):

* users with one role each — ``consumer`` or a utility role (``operator``, ``engineer``,
  ``security_admin``, ``auditor``, ``investigator`` for revenue protection,
  ``privacy_officer`` for data sharing with third parties); utility roles
  must enrol TOTP and pass it at every login (API-5); the TOTP secret is sealed
  (AES-256-GCM, bound to the user id) under the head-end's secrets key;
* login in two steps — password (argon2id, rehashed when the parameters grew), then TOTP
  for utility roles — each step returning a *new* session token (rotation at login,
  API-6); only SHA-256 of a token is stored; idle and absolute timeouts; logout and
  disabling an account delete its sessions;
* second-factor attempts are limited (API-7): a pending session ends after
  ``MFA_SESSION_ATTEMPTS`` wrong codes (log in again), and an account that gets
  ``MFA_ACCOUNT_ATTEMPTS`` wrong codes within ``MFA_WINDOW`` has its second factor locked
  for ``MFA_LOCKOUT`` — even the right code is refused then; both are security events,
  and security administrators see each account's recent failures;
* no name in clear at rest (PRIV-4): an account is found by a keyed hash of its login name
  and its name is sealed under the user's own data key (:class:`~meterguard.crypto.vault.
  NameVault`); what records *who* acted — the audit log, the consumers' access logs,
  consents — names utility staff (accountability) and consumers only as ``consumer:<id>``
  (:attr:`Principal.actor`), so erasing a consumer leaves no name behind in any log;
* scoping: :meth:`Accounts.visible_meter` answers whether a user may see a meter —
  consumers only their own — so that the API answers 404 for anything else (API-1).

Callers pass ``now`` (Unix seconds). Rate limiting happens before :meth:`login` is called.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.vault import NameVault
from meterguard.errors import (
    AuthenticationFailedError,
    ConflictError,
    InvalidValueError,
    NotFoundError,
    RateLimitedError,
    SessionEndedError,
)
from meterguard.headend.services.auth import PasswordHashes, TotpSecret, check_new_password
from meterguard.headend.store.accounts import AccountRepository

__all__ = [
    "ACCOUNT_READERS",
    "ROLES",
    "UTILITY_ROLES",
    "Accounts",
    "Principal",
    "SessionInfo",
    "actor_of",
    "token_digest",
]

UTILITY_ROLES = frozenset(
    {"operator", "engineer", "security_admin", "auditor", "investigator", "privacy_officer"}
)
ROLES = UTILITY_ROLES | {"consumer"}
ACCOUNT_READERS = frozenset({"security_admin", "auditor"})
"""Who sees the accounts and their second-factor failures (security administrators manage)."""
IDLE_TIMEOUT = 15 * 60
ABSOLUTE_TIMEOUT = 8 * 3600
MFA_SESSION_ATTEMPTS = 5
"""Wrong codes after which a half-done login ends (the password must be given again)."""
MFA_ACCOUNT_ATTEMPTS = 10
"""Wrong codes within ``MFA_WINDOW`` after which the account's second factor is locked."""
MFA_WINDOW = 15 * 60
MFA_LOCKOUT = 15 * 60


def actor_of(user_id: int, name: str, role: str) -> str:
    """How records name a person: staff by name, consumers by a pseudonym (PRIV-4)."""
    return name if role in UTILITY_ROLES else f"consumer:{user_id}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, after a complete login."""

    user_id: int
    username: str
    role: str

    @property
    def actor(self) -> str:
        """What the audit log, access logs and consents record for this person."""
        return actor_of(self.user_id, self.username, self.role)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session token (give it to the client once) and what it allows."""

    token: str
    csrf: str
    principal: Principal
    mfa_done: bool

    def __repr__(self) -> str:
        return f"SessionInfo(<token redacted>, {self.principal!r}, mfa_done={self.mfa_done})"


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as security administrators see it (never a hash or a secret)."""

    user_id: int
    username: str
    role: str
    disabled: bool
    mfa_failures: int
    """Wrong second-factor codes in the current window."""
    mfa_last_failure: int | None
    mfa_locked_until: int | None


def token_digest(token: str) -> bytes:
    """What is stored of a session token: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


class Accounts:
    """Users, logins and sessions: the rules, over a repository that holds the SQL."""

    def __init__(
        self,
        repository: AccountRepository,
        secrets_key: SecretKey,
        names: NameVault,
        hashes: PasswordHashes | None = None,
    ) -> None:
        self._repo = repository
        self._seal = GcmKey(secrets_key)
        self.names = names
        self.hashes = hashes or PasswordHashes()
        # Verified when the user does not exist, so that the answer takes as long.
        self._dummy = self.hashes.hash(secrets.token_urlsafe(16))

    def __repr__(self) -> str:
        return "Accounts(<secrets key redacted>)"

    # ------------------------------------------------------------------ users

    def create_user(
        self, username: str, password: str, role: str, *, now: int, meters: tuple[str, ...] = ()
    ) -> tuple[int, TotpSecret | None]:
        """Create a user; utility roles get a TOTP secret to enrol (returned once).

        Only consumers have meters (API-1), and only meters that exist.

        Raises:
            InvalidValueError: unknown role, a user name taken, a password that may not
                be chosen, meters for a utility role, or an unknown meter.
        """
        if role not in ROLES:
            raise InvalidValueError(f"unknown role {role!r}")
        if meters and role != "consumer":
            raise InvalidValueError("only consumers have meters")
        if not all(self._repo.meter_exists(m) for m in meters):
            raise InvalidValueError("no such meter")
        check_new_password(password, user_inputs=(username,))
        if not username or len(username) > 64:
            raise InvalidValueError("a user name has 1 to 64 characters")
        row = {
            "login_hash": self.names.lookup(username),
            "role": role,
            "password_hash": self.hashes.hash(password),
            "disabled": False,
            "created_at": now,
        }
        totp = TotpSecret.generate() if role in UTILITY_ROLES else None
        sealed = None if totp is None else (lambda uid: self._wrap(uid, totp))
        # The unique look-up hash decides, also between concurrent creations.
        uid = self._repo.add_user(row, meters, lambda uid: self.names.seal(uid, username), sealed)
        if uid is None:
            raise InvalidValueError("that user name is taken")
        return uid, totp

    def _wrap(self, uid: int, totp: TotpSecret) -> bytes:
        iv = secrets.token_bytes(12)
        return iv + self._seal.seal(iv, totp.secret.encode(), f"totp:{uid}".encode(), 16)

    def _unwrap(self, uid: int, sealed: bytes) -> TotpSecret:
        return TotpSecret(
            self._seal.open(sealed[:12], sealed[12:], f"totp:{uid}".encode(), 16).decode()
        )

    def users(self) -> list[tuple[int, str, str, bool]]:
        """(id, user name, role, disabled) of every account ("(erased)" for erased ones)."""
        return [
            (uid, self.names.open(uid, sealed) or "(erased)", role, disabled)
            for uid, sealed, role, disabled in self._repo.users()
        ]

    def seal_clear_names(self) -> int:
        """Seal the names of accounts from before migration 0018; how many (PRIV-4).

        Consents and access-log entries those consumers recorded under their name are
        rewritten to their pseudonym; the audit log keeps what it recorded (hash-chained).
        """
        rows = self._repo.clear_names()
        sealed = [(uid, self.names.lookup(n), self.names.seal(uid, n)) for uid, n, _ in rows]
        renamed = [(n, actor_of(uid, n, r)) for uid, n, r in rows if r not in UTILITY_ROLES]
        if rows:
            self._repo.seal_names(sealed, renamed)
        return len(rows)

    def actor_for(self, username: str) -> str:
        """How the audit log names a login attempt as ``username`` (PRIV-4).

        Staff by name; a consumer by pseudonym; a name no account has by ``login:`` and a
        keyed hash, so repeated attempts correlate without the typed text being stored.
        """
        lookup = self.names.lookup(username)
        row = self._repo.credentials(lookup)
        if row is None:
            return f"login:{lookup.hex()[:16]}"
        return actor_of(row[0], username[:64], row[1])

    def set_disabled(self, user_id: int, *, disabled: bool, by: Principal | None = None) -> None:
        """Disable (or re-enable) an account; disabling ends all its sessions (API-6).

        Raises:
            NotFoundError: no such account.
            ConflictError: ``by`` is that account (nobody locks themselves out).
        """
        if by is not None and by.user_id == user_id:
            raise ConflictError("an administrator cannot disable or enable their own account")
        if user_id not in {uid for uid, _, _, _ in self._repo.users()}:
            raise NotFoundError(f"no account {user_id}")
        self._repo.set_disabled(user_id, disabled=disabled)

    def unlock_second_factor(self, user_id: int, *, by: Principal | None = None) -> None:
        """Lift a second-factor lock and forget the account's failures (a helpdesk's unlock).

        The lock stops someone guessing codes (API-5); the account's owner, locked out by
        another's guesses, gets in again once a security administrator confirmed who asks.

        Raises:
            NotFoundError: no such account.
            ConflictError: ``by`` is that account (nobody unlocks themselves).
        """
        if by is not None and by.user_id == user_id:
            raise ConflictError("an administrator cannot unlock their own second factor")
        if user_id not in {uid for uid, _, _, _ in self._repo.users()}:
            raise NotFoundError(f"no account {user_id}")
        self._repo.mfa_succeeded(user_id)

    # ------------------------------------------------------------------ login

    def login(self, username: str, password: str, *, now: int) -> SessionInfo:
        """Step 1: the password. Utility roles get a session that still needs TOTP.

        Raises:
            AuthenticationFailedError: unknown user, wrong password or disabled account
                (one message for all three).
        """
        row = self._repo.credentials(self.names.lookup(username))
        if row is None:
            self.hashes.verify(self._dummy, password)  # same time as a real check
            raise AuthenticationFailedError("wrong user name or password")
        uid, role, stored, disabled = row
        if not self.hashes.verify(stored, password) or disabled:
            raise AuthenticationFailedError("wrong user name or password")
        if self.hashes.needs_rehash(stored):
            self._repo.set_password_hash(uid, self.hashes.hash(password))
        return self._new_session(
            Principal(uid, username, role), mfa_done=role not in UTILITY_ROLES, now=now
        )

    def second_factor(self, token: str, code: str, *, now: int) -> SessionInfo:
        """Step 2 for utility roles: a TOTP code, used once; returns a rotated session.

        Raises:
            AuthenticationFailedError: no pending session, wrong or replayed code.
        """
        info = self.session(token, now=now, need_mfa=False)
        who = info.principal
        locked = self._repo.mfa_locked_until(who.user_id)
        if locked is not None and locked > now:  # before the code is looked at: no oracle
            raise RateLimitedError(
                "too many wrong codes for this account", retry_after=locked - now
            )
        sealed, last = self._repo.totp(who.user_id)
        if sealed is None:
            raise AuthenticationFailedError("no second factor enrolled")
        digest = token_digest(token)
        on_session, on_account = self._repo.mfa_attempt(
            who.user_id, digest, now=now, window=MFA_WINDOW
        )
        try:
            if on_session == 0:  # the session ended since it was looked up (concurrently)
                raise SessionEndedError("this login was ended: log in again")
            if on_account > MFA_ACCOUNT_ATTEMPTS or on_session > MFA_SESSION_ATTEMPTS:
                # Past a limit (also a concurrent attempt): refused without looking at the code.
                raise AuthenticationFailedError("too many attempts")
            step = self._unwrap(who.user_id, sealed).verify(code, now=now, last_step=last)
            # Only a later step may be recorded: two concurrent uses of one code cannot both win.
            if not self._repo.advance_totp(who.user_id, step):
                raise AuthenticationFailedError("this one-time code was already used")
        except AuthenticationFailedError:
            self._attempt_failed(digest, who, on_session, on_account, now=now)
            raise
        self._repo.mfa_succeeded(who.user_id)
        return self.finish_second_factor(token, who, now=now)

    def _attempt_failed(
        self, digest: bytes, who: Principal, on_session: int, on_account: int, *, now: int
    ) -> None:
        """A failed attempt: at a limit, lock the account or end the login (one event each).

        Exactly one attempt carries each limit's number, so each limit makes one event.

        Raises:
            RateLimitedError: the account's second factor is (now) locked.
            SessionEndedError: the pending session is (now) ended.
        """
        lockout = RateLimitedError("too many wrong codes for this account", retry_after=MFA_LOCKOUT)
        ended = SessionEndedError("too many wrong codes: log in again")
        if on_account == MFA_ACCOUNT_ATTEMPTS:
            self._repo.lock_mfa(
                who.user_id,
                now + MFA_LOCKOUT,
                now=now,
                event="mfa_locked",
                detail=f"user {who.actor}: {on_account} wrong second-factor codes within"
                f" {MFA_WINDOW // 60} min; locked for {MFA_LOCKOUT // 60} min",
            )
            raise lockout
        if on_session == MFA_SESSION_ATTEMPTS:
            self._repo.end_pending(
                digest,
                now=now,
                event="mfa_session_ended",
                detail=f"user {who.actor}: {on_session} wrong second-factor codes on one"
                " login; the login was ended",
            )
            raise ended
        if on_account > MFA_ACCOUNT_ATTEMPTS:
            raise lockout
        if on_session > MFA_SESSION_ATTEMPTS:
            self._repo.delete_session(digest)
            raise ended

    def accounts(self, *, now: int) -> list[AccountView]:
        """Every account with its second-factor failures in the current window (API-7).

        Failures count while their window (``MFA_WINDOW`` from the first) is open; a lock is
        shown while it runs.
        """
        status = self._repo.mfa_status()
        out = []
        for uid, name, role, disabled in self.users():
            count, start, last, locked = status.get(uid, (0, None, None, None))
            recent = start is not None and start > now - MFA_WINDOW
            running = locked if locked is not None and locked > now else None
            out.append(
                AccountView(
                    uid,
                    name,
                    role,
                    disabled,
                    count if recent else 0,
                    last if recent or running else None,
                    running,
                )
            )
        return out

    def finish_second_factor(self, token: str, who: Principal, *, now: int) -> SessionInfo:
        """After a verified second factor (TOTP or WebAuthn): end the half session, rotate."""
        self._repo.delete_session(token_digest(token))
        return self._new_session(who, mfa_done=True, now=now)

    def _new_session(self, who: Principal, *, mfa_done: bool, now: int) -> SessionInfo:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._repo.add_session(token_digest(token), who.user_id, csrf, mfa_done=mfa_done, now=now)
        return SessionInfo(token, csrf, who, mfa_done)

    def session(self, token: str, *, now: int, need_mfa: bool = True) -> SessionInfo:
        """The session behind ``token``, refreshed; expired ones are deleted.

        Raises:
            AuthenticationFailedError: unknown, expired, or (with ``need_mfa``) half-done.
        """
        digest = token_digest(token)
        row = self._repo.session(digest)
        if row is None:
            raise AuthenticationFailedError("no such session")
        uid, csrf, mfa, created, seen, sealed, role, disabled = row
        if disabled or now - seen > IDLE_TIMEOUT or now - created > ABSOLUTE_TIMEOUT:
            self._repo.delete_session(digest)
            raise AuthenticationFailedError("session expired")
        if need_mfa and not mfa:
            raise AuthenticationFailedError("second factor still needed")
        self._repo.touch_session(digest, now)
        name = self.names.open(uid, sealed) or "(erased)"
        return SessionInfo(token, csrf, Principal(uid, name, role), mfa)

    def logout(self, token: str) -> None:
        """End one session."""
        self._repo.delete_session(token_digest(token))

    # ------------------------------------------------------------------ scoping

    def visible_meter(self, who: Principal, meter_id: str) -> bool:
        """Whether ``who`` may see ``meter_id`` (consumers: only their own, API-1)."""
        if who.role == "consumer":
            return self._repo.consumer_has(who.user_id, meter_id)
        return self._repo.meter_exists(meter_id)

    def meters(self, who: Principal) -> list[str]:
        """The meters ``who`` may see."""
        if who.role == "consumer":
            return self._repo.consumer_meters(who.user_id)
        return self._repo.all_meters()
