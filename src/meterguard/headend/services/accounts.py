"""People and their sessions: users, roles, login steps, scoped access (API-1, API-4…6).

:class:`Accounts` is the service the web API calls; it owns no HTTP and writes no SQL
strings (SQLAlchemy Core over the store's tables):

* users with one role each — ``consumer`` or a utility role (``operator``, ``engineer``,
  ``security_admin``, ``auditor``); utility roles must enrol TOTP and pass it at every
  login (API-5); the TOTP secret is sealed (AES-256-GCM, bound to the user id) under the
  head-end's secrets key;
* login in two steps — password (argon2id, rehashed when the parameters grew), then TOTP
  for utility roles — each step returning a *new* session token (rotation at login,
  API-6); only SHA-256 of a token is stored; idle and absolute timeouts; logout and
  disabling an account delete its sessions;
* scoping: :meth:`Accounts.visible_meter` answers whether a user may see a meter —
  consumers only their own — so that the API answers 404 for anything else (API-1).

Callers pass ``now`` (Unix seconds). Rate limiting happens before :meth:`login` is called.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import AuthenticationFailedError, InvalidValueError
from meterguard.headend.services.auth import PasswordHashes, TotpSecret, check_new_password
from meterguard.headend.store.models import Meter, User, UserMeter, WebSession

__all__ = ["ROLES", "UTILITY_ROLES", "Accounts", "Principal", "SessionInfo", "token_digest"]

UTILITY_ROLES = frozenset({"operator", "engineer", "security_admin", "auditor"})
ROLES = UTILITY_ROLES | {"consumer"}
IDLE_TIMEOUT = 15 * 60
ABSOLUTE_TIMEOUT = 8 * 3600


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, after a complete login."""

    user_id: int
    username: str
    role: str


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session token (give it to the client once) and what it allows."""

    token: str
    csrf: str
    principal: Principal
    mfa_done: bool

    def __repr__(self) -> str:
        return f"SessionInfo(<token redacted>, {self.principal!r}, mfa_done={self.mfa_done})"


def token_digest(token: str) -> bytes:
    """What is stored of a session token: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


class Accounts:
    """Users, logins and sessions over one database."""

    def __init__(
        self, engine: Engine, secrets_key: SecretKey, hashes: PasswordHashes | None = None
    ) -> None:
        self.engine = engine
        self._seal = GcmKey(secrets_key)
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

        Raises:
            InvalidValueError: unknown role, a user name taken, or a password that may not
                be chosen.
        """
        if role not in ROLES:
            raise InvalidValueError(f"unknown role {role!r}")
        check_new_password(password, user_inputs=(username,))
        row = {
            "username": username,
            "role": role,
            "password_hash": self.hashes.hash(password),
            "disabled": False,
            "created_at": now,
        }
        with self.engine.begin() as c:
            try:  # the unique user name decides, also between concurrent creations
                uid = int(c.execute(insert(User).values(**row).returning(User.id)).scalar_one())
            except IntegrityError:
                raise InvalidValueError("that user name is taken") from None
            totp = None
            if role in UTILITY_ROLES:
                totp = TotpSecret.generate()
                c.execute(
                    update(User).where(User.id == uid).values(totp_secret=self._wrap(uid, totp))
                )
            for meter in meters:
                c.execute(insert(UserMeter).values(user_id=uid, meter_id=meter))
        return uid, totp

    def _wrap(self, uid: int, totp: TotpSecret) -> bytes:
        iv = secrets.token_bytes(12)
        return iv + self._seal.seal(iv, totp.secret.encode(), f"totp:{uid}".encode(), 16)

    def _unwrap(self, uid: int, sealed: bytes) -> TotpSecret:
        return TotpSecret(
            self._seal.open(sealed[:12], sealed[12:], f"totp:{uid}".encode(), 16).decode()
        )

    def users(self) -> list[tuple[int, str, str, bool]]:
        """(id, user name, role, disabled) of every account."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(User.id, User.username, User.role, User.disabled).order_by(User.id)
            )
            return [(int(a), str(b), str(r), bool(d)) for a, b, r, d in rows]

    def set_disabled(self, user_id: int, *, disabled: bool) -> None:
        """Disable (or re-enable) an account; disabling ends all its sessions (API-6)."""
        with self.engine.begin() as c:
            c.execute(update(User).where(User.id == user_id).values(disabled=disabled))
            if disabled:
                c.execute(delete(WebSession).where(WebSession.user_id == user_id))

    # ------------------------------------------------------------------ login

    def login(self, username: str, password: str, *, now: int) -> SessionInfo:
        """Step 1: the password. Utility roles get a session that still needs TOTP.

        Raises:
            AuthenticationFailedError: unknown user, wrong password or disabled account
                (one message for all three).
        """
        with self.engine.connect() as c:
            row = c.execute(
                select(User.id, User.username, User.role, User.password_hash, User.disabled).where(
                    User.username == username
                )
            ).first()
        if row is None:
            self.hashes.verify(self._dummy, password)  # same time as a real check
            raise AuthenticationFailedError("wrong user name or password")
        uid, name, role, stored, disabled = row
        if not self.hashes.verify(stored, password) or disabled:
            raise AuthenticationFailedError("wrong user name or password")
        if self.hashes.needs_rehash(stored):
            with self.engine.begin() as c:
                c.execute(
                    update(User)
                    .where(User.id == uid)
                    .values(password_hash=self.hashes.hash(password))
                )
        return self._new_session(
            Principal(uid, name, role), mfa_done=role not in UTILITY_ROLES, now=now
        )

    def second_factor(self, token: str, code: str, *, now: int) -> SessionInfo:
        """Step 2 for utility roles: a TOTP code, used once; returns a rotated session.

        Raises:
            AuthenticationFailedError: no pending session, wrong or replayed code.
        """
        info = self.session(token, now=now, need_mfa=False)
        with self.engine.connect() as c:
            sealed, last = c.execute(
                select(User.totp_secret, User.totp_last_step).where(
                    User.id == info.principal.user_id
                )
            ).one()
        if sealed is None:
            raise AuthenticationFailedError("no second factor enrolled")
        step = self._unwrap(info.principal.user_id, bytes(sealed)).verify(
            code, now=now, last_step=None if last is None else int(last)
        )
        with self.engine.begin() as c:
            # Only a later step may be recorded: two concurrent uses of one code cannot both win.
            moved = c.execute(
                update(User)
                .where(User.id == info.principal.user_id)
                .where((User.totp_last_step.is_(None)) | (User.totp_last_step < step))
                .values(totp_last_step=step)
            ).rowcount
        if not moved:
            raise AuthenticationFailedError("this one-time code was already used")
        return self.finish_second_factor(token, info.principal, now=now)

    def finish_second_factor(self, token: str, who: Principal, *, now: int) -> SessionInfo:
        """After a verified second factor (TOTP or WebAuthn): end the half session, rotate."""
        with self.engine.begin() as c:
            c.execute(delete(WebSession).where(WebSession.token_hash == token_digest(token)))
        return self._new_session(who, mfa_done=True, now=now)

    def _new_session(self, who: Principal, *, mfa_done: bool, now: int) -> SessionInfo:
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.engine.begin() as c:
            c.execute(
                insert(WebSession).values(
                    token_hash=token_digest(token),
                    user_id=who.user_id,
                    csrf=csrf,
                    mfa_done=mfa_done,
                    created_at=now,
                    seen_at=now,
                )
            )
        return SessionInfo(token, csrf, who, mfa_done)

    def session(self, token: str, *, now: int, need_mfa: bool = True) -> SessionInfo:
        """The session behind ``token``, refreshed; expired ones are deleted.

        Raises:
            AuthenticationFailedError: unknown, expired, or (with ``need_mfa``) half-done.
        """
        with self.engine.begin() as c:
            row = c.execute(
                select(
                    WebSession.user_id,
                    WebSession.csrf,
                    WebSession.mfa_done,
                    WebSession.created_at,
                    WebSession.seen_at,
                    User.username,
                    User.role,
                    User.disabled,
                )
                .join(User, User.id == WebSession.user_id)
                .where(WebSession.token_hash == token_digest(token))
            ).first()
            if row is None:
                raise AuthenticationFailedError("no such session")
            uid, csrf, mfa, created, seen, name, role, disabled = row
            if disabled or now - int(seen) > IDLE_TIMEOUT or now - int(created) > ABSOLUTE_TIMEOUT:
                c.execute(delete(WebSession).where(WebSession.token_hash == token_digest(token)))
                raise AuthenticationFailedError("session expired")
            if need_mfa and not mfa:
                raise AuthenticationFailedError("second factor still needed")
            c.execute(
                update(WebSession)
                .where(WebSession.token_hash == token_digest(token))
                .values(seen_at=now)
            )
        return SessionInfo(token, str(csrf), Principal(int(uid), str(name), str(role)), bool(mfa))

    def logout(self, token: str) -> None:
        """End one session."""
        with self.engine.begin() as c:
            c.execute(delete(WebSession).where(WebSession.token_hash == token_digest(token)))

    # ------------------------------------------------------------------ scoping

    def visible_meter(self, who: Principal, meter_id: str) -> bool:
        """Whether ``who`` may see ``meter_id`` (consumers: only their own, API-1)."""
        with self.engine.connect() as c:
            if who.role == "consumer":
                q = select(UserMeter.meter_id).where(
                    UserMeter.user_id == who.user_id, UserMeter.meter_id == meter_id
                )
            else:
                q = select(Meter.id).where(Meter.id == meter_id)
            return c.execute(q).first() is not None

    def meters(self, who: Principal) -> list[str]:
        """The meters ``who`` may see."""
        with self.engine.connect() as c:
            if who.role == "consumer":
                q = select(UserMeter.meter_id).where(UserMeter.user_id == who.user_id)
            else:
                q = select(Meter.id)
            return sorted(str(m) for m in c.scalars(q))
