"""The store of a running (or stopped) system as its head-end opens it: readings sealed at rest.

Tests that read a demo's readings open the store with the key store's vault, exactly as every
head-end process does (PRIV-4); a store without it refuses sealed readings.
"""

from __future__ import annotations

import time
from pathlib import Path

from meterguard.crypto.vault import ReadingVault
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store
from meterguard.system.config import RunInfo
from meterguard.system.keys import SharedKeyStore
from meterguard.system.layout import DataLayout


def system_store(data: Path) -> Store:
    """The system's database with its readings' vault."""
    layout = DataLayout(data)
    keys = SharedKeyStore.open(layout.keystore, layout.kek)
    vault = ReadingVault(keys.data_key, keys.data_key_version, clock=time.monotonic)
    return Store(open_database(RunInfo.read(data).db), vault=vault)
