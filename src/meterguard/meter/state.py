"""Atomic persistence of a meter's non-volatile state (its "NVM") as one JSON file.

:func:`write_atomic` writes it through :func:`meterguard.files.atomic_file`, so a
crash leaves either the old or the new state, never half of one. The file is created with mode
0600: it holds the meter's own keys, as a real meter's secure element would
(the head-end's key store, with envelope encryption, is a separate component).

This module does not interpret the state; :mod:`meterguard.meter.device` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meterguard.files import atomic_file

__all__ = ["load_state", "write_atomic"]

STATE_FILE = "meter.json"


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically and durably."""
    with atomic_file(path) as f:
        f.write(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())


def load_state(path: Path) -> dict[str, Any] | None:
    """Return the stored state, or None if there is none yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError(f"{path}: not a meter state object")
    return data
