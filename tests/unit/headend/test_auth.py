"""Passwords (argon2id, common-password refusal) and TOTP with replay protection."""

from __future__ import annotations

import pytest

from meterguard.errors import AuthenticationFailedError, InvalidValueError
from meterguard.headend.services.auth import PasswordHashes, TotpSecret, check_new_password

NOW = 1_800_000_015.0  # 15 s into a TOTP step


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short", "at least 8"),
        ("x" * 257, "at most 256"),
        ("qwertyuiop123", "commonly used"),
        ("Password1234", "too easy"),  # two common words: scored as guessable
        ("aaaaaaaaaaaaaaaa", "too easy"),
        ("alice.smith.alice", "user name"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password: str, why: str) -> None:
    with pytest.raises(InvalidValueError, match=why) as info:
        check_new_password(password, user_inputs=("alice.smith",))
    assert password not in str(info.value)  # never echoed


def test_a_strong_passphrase_is_accepted() -> None:
    check_new_password("mauve tractor sings at dawn, 1987")


def test_argon2id_hash_and_verify() -> None:
    hashes = PasswordHashes(memory_kib=8192, passes=2, lanes=1)  # fast parameters for the test
    stored = hashes.hash("mauve tractor sings at dawn")
    assert stored.startswith("$argon2id$")
    assert stored != hashes.hash("mauve tractor sings at dawn")  # fresh salt each time
    assert hashes.verify(stored, "mauve tractor sings at dawn")
    assert not hashes.verify(stored, "mauve tractor sings at dusk")
    assert not hashes.verify("$argon2id$garbage", "anything")
    assert PasswordHashes().needs_rehash(stored)  # weaker than the production profile
    assert "mauve" not in repr(hashes)


def test_totp_accepts_once_and_refuses_replays() -> None:
    secret = TotpSecret.generate()
    assert secret.secret not in repr(secret)
    code = secret.code(NOW)
    step = secret.verify(code, now=NOW, last_step=None)
    assert step == int(NOW) // 30
    with pytest.raises(AuthenticationFailedError, match="already used"):
        secret.verify(code, now=NOW + 5, last_step=step)  # the same code, still in its window
    nxt = secret.code(NOW + 30)
    assert secret.verify(nxt, now=NOW + 30, last_step=step) == step + 1
    # One step of clock skew either way is tolerated, two are not.
    assert secret.verify(secret.code(NOW - 30), now=NOW, last_step=None) == step - 1
    with pytest.raises(AuthenticationFailedError, match="wrong"):
        secret.verify(secret.code(NOW - 60), now=NOW, last_step=None)
    with pytest.raises(AuthenticationFailedError, match="wrong"):
        secret.verify("000000" if code != "000000" else "111111", now=NOW, last_step=None)
    assert secret.provisioning_uri("op@utility.example").startswith("otpauth://totp/")
