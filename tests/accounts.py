"""Accounts as the head-end builds them, for tests: names sealed under a real key store.

The key store (and its KEK) live in the test's own temporary directory: test keys never
leave ``tests/`` and its temporary directories.
"""

from __future__ import annotations

import time
from pathlib import Path

from meterguard.crypto.keys import SecretKey
from meterguard.crypto.vault import NameVault
from meterguard.headend.services.accounts import Accounts
from meterguard.headend.store.repository import Store
from meterguard.system.keys import SharedKeyStore


def name_vault(directory: Path) -> NameVault:
    """A name vault over a key store in ``directory`` (created if none)."""
    keys = SharedKeyStore.open(directory / "names.keys", directory / "names.kek", create=True)
    return NameVault(keys.data_key, keys.data_key_version, keys.login_hash, clock=time.monotonic)


def test_accounts(store: Store, directory: Path) -> Accounts:
    """The accounts service over ``store``, its names sealed in ``directory``'s key store."""
    return Accounts(store.accounts, SecretKey.generate(32), name_vault(directory))


test_accounts.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test
