"""Authentication primitives for people: passwords and TOTP (API-4, API-5; ASVS 5.0 V6).

* **Passwords** are hashed with argon2id (``argon2-cffi``, RFC 9106's second
  recommended profile: 64 MiB, 3 passes) and checked in constant time by the library;
  :func:`check_new_password` refuses short, over-long and guessable ones — a password
  that is (up to case and l33t) one of the well-known leaked passwords, contains the
  user's own name or e-mail, or that zxcvbn scores below 3 — and says why without
  echoing it.
* **TOTP** (RFC 6238, 30-second steps, 6 digits, SHA-1 as authenticator apps expect) with
  a one-step tolerance for clock skew and **replay protection**: a code is accepted only
  for a time step later than the last one accepted for that user (the caller persists it),
  so an observed code cannot be used twice, even within its window.

No IO and no clock: callers pass ``now`` and persist what is returned. Rate limiting
before the hash (API-7), sessions and WebAuthn live in the API layer.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

from meterguard.errors import AuthenticationFailedError, InvalidValueError

__all__ = [
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "PasswordHashes",
    "TotpSecret",
    "check_new_password",
]

MIN_PASSWORD = 8
MAX_PASSWORD = 256
_STEP = 30


def check_new_password(password: str, *, user_inputs: tuple[str, ...] = ()) -> None:
    """Refuse a password a user may not choose (API-4: 8 to 256 characters, no composition rules).

    ``user_inputs`` (user name, e-mail, name) count as guessable.

    Raises:
        InvalidValueError: too short, too long, or guessable; the message says which.
    """
    if len(password) < MIN_PASSWORD:
        raise InvalidValueError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidValueError(f"a password may have at most {MAX_PASSWORD} characters")
    result = zxcvbn(password[:100], user_inputs=list(user_inputs))
    common = [
        m
        for m in result["sequence"]
        if m.get("dictionary_name") == "passwords" and len(m["token"]) >= len(password) - 2
    ]
    if common:
        raise InvalidValueError("this password is one of the commonly used ones")
    if any(m.get("dictionary_name") == "user_inputs" for m in result["sequence"]):
        raise InvalidValueError("this password contains your user name or e-mail")
    if result["score"] < 3:
        raise InvalidValueError("this password is too easy to guess")


class PasswordHashes:
    """argon2id hashing and verification."""

    def __init__(self, *, memory_kib: int = 65_536, passes: int = 3, lanes: int = 4) -> None:
        self._hasher = PasswordHasher(
            time_cost=passes, memory_cost=memory_kib, parallelism=lanes, type=Type.ID
        )

    def __repr__(self) -> str:
        p = self._hasher
        return f"PasswordHashes(argon2id m={p.memory_cost} t={p.time_cost} p={p.parallelism})"

    def hash(self, password: str) -> str:
        """A PHC-format argon2id hash with a fresh salt."""
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        """True if ``password`` matches ``stored``; False for a mismatch or a damaged hash."""
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True if ``stored`` was made with weaker parameters than ours."""
        return self._hasher.check_needs_rehash(stored)


@dataclass(frozen=True, slots=True)
class TotpSecret:
    """A user's TOTP secret (base32); its repr never shows it."""

    secret: str

    @classmethod
    def generate(cls) -> TotpSecret:
        """A new 160-bit secret from the operating system's CSPRNG."""
        return cls(pyotp.random_base32(32))

    def __repr__(self) -> str:
        return "TotpSecret(<redacted>)"

    def provisioning_uri(self, account: str, issuer: str = "meterguard") -> str:
        """The ``otpauth://`` URI an authenticator app enrols from (show once, as a QR code)."""
        return pyotp.TOTP(self.secret).provisioning_uri(name=account, issuer_name=issuer)

    def code(self, now: float) -> str:
        """The code for ``now`` (tests and enrolment checks)."""
        return pyotp.TOTP(self.secret).at(int(now))

    def verify(self, code: str, *, now: float, last_step: int | None) -> int:
        """Accept ``code`` once; return the time step it belongs to (persist it as ``last_step``).

        Codes of the current step and one step either side are accepted (clock skew), but
        only for a step after ``last_step`` (API-5: a TOTP code is single-use).

        Raises:
            AuthenticationFailedError: wrong code, or a step already used (replay).
        """
        totp = pyotp.TOTP(self.secret)
        current = int(now) // _STEP
        digits = code.strip()
        for step in (current - 1, current, current + 1):
            if hmac.compare_digest(totp.at(step * _STEP), digits):
                if last_step is not None and step <= last_step:
                    raise AuthenticationFailedError("this one-time code was already used")
                return step
        raise AuthenticationFailedError("wrong one-time code")
