"""The SQL of accounts: users, their meters, their TOTP state, and server-side sessions.

Only hashes are stored — of passwords (argon2id), of session tokens (SHA-256) and of login
names (keyed, by the accounts service); names and TOTP secrets are stored sealed by the
accounts service. Which login step is allowed, timeouts,
code reuse and scoping are the rules of :mod:`meterguard.headend.services.accounts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, case, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from meterguard.headend.store.audit import AuditWriter
from meterguard.headend.store.models import (
    Consent,
    DataAccess,
    Meter,
    UseConsent,
    User,
    UserMeter,
    WebSession,
)

__all__ = ["AccountRepository", "SessionRow"]

SessionRow = tuple[int, str, bool, int, int, bytes | None, str, bool]
"""(user id, csrf, mfa done, created at, seen at, sealed name, role, disabled)."""


class AccountRepository:
    """Users and sessions over one engine."""

    def __init__(self, engine: Engine, audit: AuditWriter | None = None) -> None:
        self.engine = engine
        self.audit = audit or AuditWriter(engine)

    def __repr__(self) -> str:
        return "AccountRepository()"

    # ------------------------------------------------------------------ users

    def add_user(
        self,
        row: dict[str, Any],
        meters: Sequence[str],
        sealed_name: Callable[[int], bytes],
        sealed_totp: Callable[[int], bytes] | None,
    ) -> int | None:
        """Insert a user, their meters, sealed name and TOTP secret (sealed with their id).

        Atomic; None if the login name is taken (the unique look-up hash decides).
        """
        with self.engine.begin() as c:
            try:
                uid = int(c.execute(insert(User).values(**row).returning(User.id)).scalar_one())
            except IntegrityError:
                return None
            values = {"name_sealed": sealed_name(uid)}
            if sealed_totp is not None:
                values["totp_secret"] = sealed_totp(uid)
            c.execute(update(User).where(User.id == uid).values(**values))
            for meter in meters:
                c.execute(insert(UserMeter).values(user_id=uid, meter_id=meter))
        return uid

    def users(self) -> list[tuple[int, bytes | None, str, bool]]:
        """(id, sealed name, role, disabled) of every account."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(User.id, User.name_sealed, User.role, User.disabled).order_by(User.id)
            )
            return [
                (int(a), None if b is None else bytes(b), str(r), bool(d)) for a, b, r, d in rows
            ]

    def clear_names(self) -> list[tuple[int, str, str]]:
        """(id, name, role) of the accounts whose name is still in clear (before 0018)."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(User.id, User.username, User.role).where(User.username.is_not(None))
            )
            return [(int(a), str(b), str(r)) for a, b, r in rows]

    def seal_names(
        self, sealed: Sequence[tuple[int, bytes, bytes]], renamed: Sequence[tuple[str, str]]
    ) -> None:
        """Store (id, look-up hash, sealed name) and drop the clear names, in one transaction.

        ``renamed`` (old actor, new actor) rewrites who gave consents and who read data in
        the consumers' access logs (the audit log is append-only and hash-chained: what it
        recorded stays).
        """
        with self.engine.begin() as c:
            for uid, lookup, name in sealed:
                c.execute(
                    update(User)
                    .where(User.id == uid)
                    .values(username=None, login_hash=lookup, name_sealed=name)
                )
            for old, new in renamed:
                c.execute(update(Consent).where(Consent.given_by == old).values(given_by=new))
                c.execute(update(UseConsent).where(UseConsent.given_by == old).values(given_by=new))
                c.execute(update(DataAccess).where(DataAccess.actor == old).values(actor=new))

    def set_disabled(self, user_id: int, *, disabled: bool) -> None:
        """Disable or re-enable; disabling deletes the user's sessions in the same transaction."""
        with self.engine.begin() as c:
            c.execute(update(User).where(User.id == user_id).values(disabled=disabled))
            if disabled:
                c.execute(delete(WebSession).where(WebSession.user_id == user_id))

    def credentials(self, lookup: bytes) -> tuple[int, str, str, bool] | None:
        """(id, role, password hash, disabled) of the account with this look-up hash."""
        with self.engine.connect() as c:
            row = c.execute(
                select(User.id, User.role, User.password_hash, User.disabled).where(
                    User.login_hash == lookup
                )
            ).first()
        return None if row is None else (int(row[0]), row[1], row[2], bool(row[3]))

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """Store a rehashed password."""
        with self.engine.begin() as c:
            c.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))

    def totp(self, user_id: int) -> tuple[bytes | None, int | None]:
        """(sealed secret, last step used)."""
        with self.engine.connect() as c:
            sealed, last = c.execute(
                select(User.totp_secret, User.totp_last_step).where(User.id == user_id)
            ).one()
        return (None if sealed is None else bytes(sealed)), (None if last is None else int(last))

    def advance_totp(self, user_id: int, step: int) -> bool:
        """Record ``step`` as used if it is later than the last; False if it was not.

        One statement: two concurrent uses of one code cannot both win.
        """
        with self.engine.begin() as c:
            moved = c.execute(
                update(User)
                .where(User.id == user_id)
                .where((User.totp_last_step.is_(None)) | (User.totp_last_step < step))
                .values(totp_last_step=step)
            ).rowcount
        return bool(moved)

    # ------------------------------------------------------------------ second-factor attempts

    def mfa_locked_until(self, user_id: int) -> int | None:
        """Until when the account's second factor is locked (None: it is not)."""
        with self.engine.connect() as c:
            until = c.scalar(select(User.mfa_locked_until).where(User.id == user_id))
        return None if until is None else int(until)

    def mfa_attempt(
        self, user_id: int, token_hash: bytes, *, now: int, window: int
    ) -> tuple[int, int]:
        """Number a second-factor attempt: (its number on this session, on the account).

        The account's count restarts when its window (opened by its first attempt) is older
        than ``window``. Atomic increments in one transaction: concurrent attempts each get
        a number of their own, so a limit holds however many arrive at once.
        """
        fresh = User.mfa_window_start.is_(None) | (User.mfa_window_start <= now - window)
        with self.engine.begin() as c:
            on_session = c.execute(
                update(WebSession)
                .where(WebSession.token_hash == token_hash)
                .values(mfa_failures=WebSession.mfa_failures + 1)
                .returning(WebSession.mfa_failures)
            ).scalar()
            on_account = c.execute(
                update(User)
                .where(User.id == user_id)
                .values(
                    mfa_failures=case((fresh, 1), else_=User.mfa_failures + 1),
                    mfa_window_start=case((fresh, now), else_=User.mfa_window_start),
                    mfa_last_failure=now,
                )
                .returning(User.mfa_failures)
            ).scalar_one()
        return int(on_session or 0), int(on_account)

    def end_pending(self, token_hash: bytes, *, now: int, event: str, detail: str) -> None:
        """Delete one half-done session, with a security event (audited) saying why."""
        with self.engine.begin() as c:
            c.execute(delete(WebSession).where(WebSession.token_hash == token_hash))
            self.audit.security_event_in(c, at=now, event=event, detail=detail, target="web")

    def lock_mfa(self, user_id: int, until: int, *, now: int, event: str, detail: str) -> None:
        """Lock the account's second factor until ``until``; end its half-done sessions."""
        with self.engine.begin() as c:
            c.execute(update(User).where(User.id == user_id).values(mfa_locked_until=until))
            c.execute(
                delete(WebSession).where(
                    WebSession.user_id == user_id, WebSession.mfa_done.is_(False)
                )
            )
            self.audit.security_event_in(c, at=now, event=event, detail=detail, target="web")

    def mfa_succeeded(self, user_id: int) -> None:
        """A right code: the account's count starts again."""
        with self.engine.begin() as c:
            c.execute(
                update(User)
                .where(User.id == user_id)
                .values(
                    mfa_failures=0,
                    mfa_window_start=None,
                    mfa_last_failure=None,
                    mfa_locked_until=None,
                )
            )

    def mfa_status(self) -> dict[int, tuple[int, int | None, int | None, int | None]]:
        """Per account with failures: (count, window start, last failure, locked until)."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(
                    User.id,
                    User.mfa_failures,
                    User.mfa_window_start,
                    User.mfa_last_failure,
                    User.mfa_locked_until,
                ).where(User.mfa_last_failure.is_not(None))
            ).all()
        return {int(r[0]): (int(r[1]), r[2], r[3], r[4]) for r in rows}

    # ------------------------------------------------------------------ sessions

    def add_session(
        self, token_hash: bytes, user_id: int, csrf: str, *, mfa_done: bool, now: int
    ) -> None:
        """A new session."""
        with self.engine.begin() as c:
            c.execute(
                insert(WebSession).values(
                    token_hash=token_hash,
                    user_id=user_id,
                    csrf=csrf,
                    mfa_done=mfa_done,
                    created_at=now,
                    seen_at=now,
                )
            )

    def session(self, token_hash: bytes) -> SessionRow | None:
        """The session and its user, or None."""
        with self.engine.connect() as c:
            row = c.execute(
                select(
                    WebSession.user_id,
                    WebSession.csrf,
                    WebSession.mfa_done,
                    WebSession.created_at,
                    WebSession.seen_at,
                    User.name_sealed,
                    User.role,
                    User.disabled,
                )
                .join(User, User.id == WebSession.user_id)
                .where(WebSession.token_hash == token_hash)
            ).first()
        if row is None:
            return None
        uid, csrf, mfa, created, seen, name, role, disabled = row
        sealed = None if name is None else bytes(name)
        return (
            int(uid),
            str(csrf),
            bool(mfa),
            int(created),
            int(seen),
            sealed,
            role,
            bool(disabled),
        )

    def touch_session(self, token_hash: bytes, now: int) -> None:
        """The session was used now."""
        with self.engine.begin() as c:
            c.execute(
                update(WebSession).where(WebSession.token_hash == token_hash).values(seen_at=now)
            )

    def delete_session(self, token_hash: bytes) -> None:
        """End a session."""
        with self.engine.begin() as c:
            c.execute(delete(WebSession).where(WebSession.token_hash == token_hash))

    # ------------------------------------------------------------------ scope

    def consumer_has(self, user_id: int, meter_id: str) -> bool:
        """Is the meter one of this consumer's?"""
        with self.engine.connect() as c:
            q = select(UserMeter.meter_id).where(
                UserMeter.user_id == user_id, UserMeter.meter_id == meter_id
            )
            return c.execute(q).first() is not None

    def meter_exists(self, meter_id: str) -> bool:
        """Is there such a meter?"""
        with self.engine.connect() as c:
            return c.execute(select(Meter.id).where(Meter.id == meter_id)).first() is not None

    def consumer_meters(self, user_id: int) -> list[str]:
        """The consumer's meters."""
        with self.engine.connect() as c:
            q = select(UserMeter.meter_id).where(UserMeter.user_id == user_id)
            return sorted(str(m) for m in c.scalars(q))

    def all_meters(self) -> list[str]:
        """Every meter."""
        with self.engine.connect() as c:
            return sorted(str(m) for m in c.scalars(select(Meter.id)))
