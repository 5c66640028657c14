"""The last ``meterguard attack`` run, for the security administrators' dashboard page and API.

:class:`AttackReports` reads the report the attack command leaves in the data directory
(``attacks/last-run.json``). It only reads: the report is written by whoever ran the
attacks, holds no secret (the plays never put one in a result), and is shown to security
administrators and auditors only. A missing report is ``None``; an oversized or unreadable
one is an :class:`~meterguard.errors.InvalidValueError`, never a crash of the page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meterguard.errors import InvalidValueError

__all__ = ["REPORT_READERS", "AttackReports"]

REPORT_READERS = frozenset({"security_admin", "auditor"})
"""Who sees the red-team scorecard."""
MAX_REPORT = 4 << 20


class AttackReports:
    """The last attack run's report."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def last(self) -> dict[str, Any] | None:
        """The report, or None if no attack has run.

        Raises:
            InvalidValueError: the file is too large or not a report.
        """
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        if size > MAX_REPORT:
            raise InvalidValueError(f"the attack report is larger than {MAX_REPORT} bytes")
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidValueError(f"the attack report is unreadable: {exc}") from None
        if not isinstance(doc, dict) or doc.get("meterguard_attack_report") != 1:
            raise InvalidValueError("the file is not a meterguard attack report")
        return doc
