"""The SQL of WebAuthn: registered credentials and the single-use challenges of ceremonies.

A challenge is bound to the session (by the hash of its token) and a purpose, kept until it
expires, and taken at most once (deleted as it is read). The ceremony's checks — origin, RP
id, user verification, sign count — are :mod:`meterguard.headend.services.webauthn`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select, update

from meterguard.headend.store.models import WebAuthnChallenge, WebAuthnCredential

__all__ = ["StoredCredential", "WebAuthnRepository"]


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A registered authenticator (its public key, never a secret)."""

    id: int
    credential_id: bytes
    public_key: bytes
    sign_count: int


class WebAuthnRepository:
    """Credentials and challenges over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __repr__(self) -> str:
        return "WebAuthnRepository()"

    def put_challenge(
        self, token_hash: bytes, purpose: str, challenge: bytes, *, expires_at: int, now: int
    ) -> None:
        """Replace the session's challenge for ``purpose`` (and drop every expired one)."""
        with self.engine.begin() as c:
            c.execute(
                delete(WebAuthnChallenge).where(
                    (WebAuthnChallenge.token_hash == token_hash)
                    & (WebAuthnChallenge.purpose == purpose)
                    | (WebAuthnChallenge.expires_at < now)
                )
            )
            c.execute(
                insert(WebAuthnChallenge).values(
                    token_hash=token_hash,
                    purpose=purpose,
                    challenge=challenge,
                    expires_at=expires_at,
                )
            )

    def take_challenge(self, token_hash: bytes, purpose: str) -> tuple[bytes, int] | None:
        """(challenge, expires at) of the session's ceremony, removed as it is read."""
        with self.engine.begin() as c:
            row = c.execute(
                delete(WebAuthnChallenge)
                .where(
                    WebAuthnChallenge.token_hash == token_hash,
                    WebAuthnChallenge.purpose == purpose,
                )
                .returning(WebAuthnChallenge.challenge, WebAuthnChallenge.expires_at)
            ).first()
        return None if row is None else (bytes(row[0]), int(row[1]))

    def credentials(self, user_id: int) -> list[StoredCredential]:
        """The user's authenticators."""
        with self.engine.connect() as c:
            rows = c.execute(
                select(
                    WebAuthnCredential.id,
                    WebAuthnCredential.credential_id,
                    WebAuthnCredential.public_key,
                    WebAuthnCredential.sign_count,
                ).where(WebAuthnCredential.user_id == user_id)
            ).all()
        return [StoredCredential(int(a), bytes(b), bytes(p), int(n)) for a, b, p, n in rows]

    def add_credential(
        self,
        user_id: int,
        credential_id: bytes,
        public_key: bytes,
        sign_count: int,
        label: str,
        *,
        now: int,
    ) -> int:
        """Store a verified authenticator; its row id."""
        with self.engine.begin() as c:
            return int(
                c.execute(
                    insert(WebAuthnCredential)
                    .values(
                        user_id=user_id,
                        credential_id=credential_id,
                        public_key=public_key,
                        sign_count=sign_count,
                        label=label,
                        created_at=now,
                    )
                    .returning(WebAuthnCredential.id)
                ).scalar_one()
            )

    def set_sign_count(self, row_id: int, sign_count: int) -> None:
        """The authenticator's new signature counter after an assertion."""
        with self.engine.begin() as c:
            c.execute(
                update(WebAuthnCredential)
                .where(WebAuthnCredential.id == row_id)
                .values(sign_count=sign_count)
            )
