"""WebAuthn as the phishing-resistant second factor (API-5), over py_webauthn.

:class:`Passkeys` runs the two ceremonies for a web session:

* **registration** — a fully logged-in user (password + TOTP) adds an authenticator:
  :meth:`Passkeys.registration_options` issues a challenge bound to the session,
  :meth:`Passkeys.register` verifies the attestation (origin, RP id, challenge, user
  presence *and* verification) and stores only the credential id and public key;
* **login** — after the password step, :meth:`Passkeys.authentication_options` lists the
  user's credentials and issues a challenge; :meth:`Passkeys.authenticate` verifies the
  assertion (signature under the stored key, origin, RP id, user verification, a sign
  count that moved forward) and rotates the session to a full one, like TOTP does.

The origin check is what makes it phishing-resistant: an assertion made for another site
does not verify here. Challenges are 32 random bytes, stored with the session's token
hash, single use, valid for :data:`CEREMONY_TTL` seconds. The relying-party id must be a
domain (``localhost`` for the demo; browsers refuse IP addresses). This module does not
speak HTTP; the API passes JSON through.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from meterguard.errors import AuthenticationFailedError
from meterguard.headend.services.accounts import Accounts, SessionInfo, token_digest
from meterguard.headend.store.webauthn import StoredCredential, WebAuthnRepository

__all__ = ["CEREMONY_TTL", "Passkeys"]

CEREMONY_TTL = 120


class Passkeys:
    """WebAuthn registration and login for one relying party."""

    def __init__(
        self, accounts: Accounts, repository: WebAuthnRepository, *, rp_id: str, origins: list[str]
    ) -> None:
        self.accounts = accounts
        self._repo = repository
        self.rp_id = rp_id
        self.origins = origins

    def __repr__(self) -> str:
        return f"Passkeys(rp_id={self.rp_id!r}, origins={self.origins!r})"

    def _issue(self, token: str, purpose: str, now: int) -> bytes:
        challenge = secrets.token_bytes(32)
        self._repo.put_challenge(
            token_digest(token), purpose, challenge, expires_at=now + CEREMONY_TTL, now=now
        )
        return challenge

    def _take(self, token: str, purpose: str, now: int) -> bytes:
        """The session's pending challenge, removed (single use)."""
        row = self._repo.take_challenge(token_digest(token), purpose)
        if row is None or row[1] < now:
            raise AuthenticationFailedError("no WebAuthn ceremony in progress")
        return row[0]

    def _credentials(self, user_id: int) -> list[StoredCredential]:
        return self._repo.credentials(user_id)

    def count(self, user_id: int) -> int:
        """How many authenticators the user has registered."""
        return len(self._credentials(user_id))

    # ------------------------------------------------------------------ registration

    def registration_options(self, info: SessionInfo, *, now: int) -> str:
        """Creation options (JSON) for a fully logged-in session."""
        who = info.principal
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name="meterguard head-end",
            user_id=who.user_id.to_bytes(8, "big"),
            user_name=who.username,
            challenge=self._issue(info.token, "register", now),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=c.credential_id)
                for c in self._credentials(who.user_id)
            ],
        )
        return options_to_json(options)

    def register(
        self, info: SessionInfo, credential: dict[str, Any], label: str, *, now: int
    ) -> int:
        """Verify an attestation and store the credential; its row id.

        Raises:
            AuthenticationFailedError: no ceremony, or the response does not verify.
        """
        challenge = self._take(info.token, "register", now)
        try:
            verified = verify_registration_response(
                credential=json.dumps(credential),
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
                require_user_verification=True,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise AuthenticationFailedError(f"WebAuthn registration refused: {exc}") from None
        return self._repo.add_credential(
            info.principal.user_id,
            verified.credential_id,
            verified.credential_public_key,
            verified.sign_count,
            label,
            now=now,
        )

    # ------------------------------------------------------------------ login

    def authentication_options(self, token: str, *, now: int) -> str:
        """Request options (JSON) for a session that passed the password step.

        Raises:
            AuthenticationFailedError: no such half-done session, or no credential.
        """
        info = self.accounts.session(token, now=now, need_mfa=False)
        creds = self._credentials(info.principal.user_id)
        if not creds:
            raise AuthenticationFailedError("no WebAuthn credential registered")
        options = generate_authentication_options(
            rp_id=self.rp_id,
            challenge=self._issue(token, "login", now),
            allow_credentials=[PublicKeyCredentialDescriptor(id=c.credential_id) for c in creds],
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return options_to_json(options)

    def authenticate(self, token: str, credential: dict[str, Any], *, now: int) -> SessionInfo:
        """Verify an assertion; a rotated, fully logged-in session.

        Raises:
            AuthenticationFailedError: no ceremony, unknown credential, or it does not verify.
        """
        info = self.accounts.session(token, now=now, need_mfa=False)
        challenge = self._take(token, "login", now)
        try:
            raw_id = base64url_to_bytes(str(credential["rawId"]))
        except (KeyError, ValueError, TypeError):
            raise AuthenticationFailedError("malformed WebAuthn assertion") from None
        cred = next(
            (c for c in self._credentials(info.principal.user_id) if c.credential_id == raw_id),
            None,
        )
        if cred is None:
            raise AuthenticationFailedError("unknown WebAuthn credential")
        try:
            verified = verify_authentication_response(
                credential=json.dumps(credential),
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
                credential_public_key=cred.public_key,
                credential_current_sign_count=cred.sign_count,
                require_user_verification=True,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise AuthenticationFailedError(f"WebAuthn assertion refused: {exc}") from None
        self._repo.set_sign_count(cred.id, verified.new_sign_count)
        return self.accounts.finish_second_factor(token, info.principal, now=now)
