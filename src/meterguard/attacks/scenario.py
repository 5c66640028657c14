"""Attack scenarios as data, and the runner that plays them and looks for the system's records.

A :class:`Scenario` names the threat of the brief it belongs to, the attacker's capability
(said honestly: an outsider, a compromised meter, stolen meter keys, a compromised broker, an
insider with a utility account), the steps, the refusal that must happen, the records the
system must write (:class:`Expect`: an audit entry, a security event, an alarm, a broker log
line), and the requirement ids it proves. A *play* (a function named by the scenario) carries
the attack out against a :class:`~meterguard.attacks.target.Target` and returns an
:class:`Attempt`: whether it was refused, what it saw, what it left behind.

:func:`run` plays scenarios one after another. Before each it takes a mark of the system's
records (:class:`~meterguard.headend.store.evidence.EvidenceReader`, the broker log's size);
afterwards it polls, for at most the scenario's ``within`` seconds, until every expected
record has appeared. A scenario *passed* when the attack was refused **and** the system saw
it; a refusal the system did not record, or a record without a refusal, is *failed*. Where a
refusal rightly leaves no record (a passive capture, a copy of a file, an anonymous request
that must not grow the log), the scenario says why in ``no_record``, and the refusal is the
evidence. It does not decide what an attack does: that is the plays' modules.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meterguard.attacks.target import Target
    from meterguard.headend.store.evidence import EvidenceReader, Record

__all__ = [
    "Attempt",
    "Capability",
    "Expect",
    "Outcome",
    "Profile",
    "Result",
    "Scenario",
    "Threat",
    "run",
]


class Threat(enum.StrEnum):
    """The six threats of the brief."""

    UNAUTHORIZED_ACCESS = "unauthorized access"
    DATA_THEFT = "data theft"
    MITM = "man-in-the-middle"
    DOS = "denial of service"
    MALWARE = "malware injection"
    TAMPERING = "physical tampering"


class Capability(enum.StrEnum):
    """What the attacker holds."""

    OUTSIDER = "outsider"
    COMPROMISED_METER = "compromised meter"
    STOLEN_METER_KEYS = "stolen meter keys"
    COMPROMISED_BROKER = "compromised broker"
    INSIDER = "insider with a utility account"
    CONSUMER = "consumer with an account"
    PHYSICAL = "physical access to a meter"
    FILE_COPY = "a copy of the head-end's files"
    PATH = "a position on the network path"
    OUTAGE = "an outage of the broker (a crash, a restart)"
    DISTRIBUTION = "write access to the firmware distribution server"


class Outcome(enum.StrEnum):
    """How a scenario ended."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Expect:
    """A record the system must write.

    ``kind`` and ``name`` as in :class:`~meterguard.headend.store.evidence.Record`, or a
    broker log line (``kind="broker_log"``, ``name`` a regular expression).

    ``name`` ``"*"`` matches any name of the kind (e.g. a message quarantined for whatever
    reason). ``subject`` is a role of the target (``victim``, ``compromised``, ``neighbour``,
    ``thief``, ``insider``) resolved to its meter or account, or ``""`` for any.
    """

    kind: str
    name: str
    subject: str = ""
    result: str = ""
    """The audit result it must have (``""``: any)."""

    def describe(self) -> str:
        """One line for a report."""
        about = f" about {self.subject}" if self.subject else ""
        res = f" [{self.result}]" if self.result else ""
        return f"{self.kind} {self.name}{about}{res}"


@dataclass(frozen=True, slots=True)
class Profile:
    """How hard the bounded attacks push (``ci``: small and quick; ``full``: the real test)."""

    name: str = "ci"
    flood: int = 1500
    """Messages in a flood."""
    handshakes: int = 150
    """Unauthenticated TLS handshakes in a handshake flood."""
    seconds: float = 8.0
    """Longest flood."""


PROFILES = {
    "ci": Profile(),
    "full": Profile("full", flood=20_000, handshakes=2_000, seconds=30.0),
}


@dataclass
class Attempt:
    """What a play did and saw."""

    refused: bool
    detail: str
    left: str = ""
    """What the attack left changed (``""``: nothing)."""
    figures: dict[str, float] = field(default_factory=dict)
    """Measured numbers (latencies, counts), for the report."""


Play = Callable[["Target", Profile], Attempt]


@dataclass(frozen=True)
class Scenario:
    """One attack, its capability, and what must happen."""

    id: str
    threat: Threat
    capability: Capability
    title: str
    steps: tuple[str, ...]
    expected: str
    """The refusal, in words."""
    requirements: tuple[str, ...]
    play: Play
    evidence: tuple[Expect, ...] = ()
    no_record: str = ""
    """Why this refusal rightly leaves no record (required when ``evidence`` is empty)."""
    within: float = 20.0
    """Seconds to wait for the records after the play."""
    slow: bool = False
    """Needs the theft detector's history (a demo started with ``--history-days``)."""

    def __post_init__(self) -> None:
        if not self.evidence and not self.no_record:
            raise ValueError(f"scenario {self.id}: no expected record and no reason why")

    def describe(self) -> dict[str, object]:
        """The scenario as data (JSON-able): what ``attack list --json`` prints."""
        return {
            "id": self.id,
            "threat": self.threat.value,
            "capability": self.capability.value,
            "title": self.title,
            "steps": list(self.steps),
            "expected": self.expected,
            "requirements": list(self.requirements),
            "evidence_expected": [e.describe() for e in self.evidence],
            "no_record": self.no_record,
        }


@dataclass
class Result:
    """A played scenario."""

    scenario: Scenario
    outcome: Outcome
    attempt: Attempt
    found: list[str]
    missing: list[str]
    detection: float | None
    """Seconds from the attack's start until every expected record was there."""
    duration: float

    def to_json(self) -> dict[str, object]:
        """The JSON form (for CI and the dashboard)."""
        return {
            **self.scenario.describe(),
            "outcome": self.outcome.value,
            "refused": self.attempt.refused,
            "detail": self.attempt.detail,
            "left": self.attempt.left,
            "figures": self.attempt.figures,
            "evidence_found": self.found,
            "evidence_missing": self.missing,
            "time_to_detection_s": None if self.detection is None else round(self.detection, 2),
            "duration_s": round(self.duration, 2),
        }


def _matches(e: Expect, subject: str, r: Record) -> bool:
    return (
        r.kind == e.kind
        and e.name in (r.name, "*")
        and (not subject or subject in r.subject or subject in r.detail)
        and (not e.result or r.result == e.result)
    )


def _look(s: Scenario, target: Target, records: Sequence[Record], log: str) -> list[str | None]:
    """For each expected record, the first one that matches it (None: not yet)."""
    out: list[str | None] = []
    for e in s.evidence:
        subject = target.role(e.subject)
        if e.kind == "broker_log":
            m = re.search(e.name, log)
            out.append(f"broker log: {m.group(0)[:160]}" if m else None)
            continue
        hit = next((r for r in records if _matches(e, subject, r)), None)
        out.append(hit.describe() if hit else None)
    return out


def run(
    scenarios: Sequence[Scenario],
    target: Target,
    reader: EvidenceReader,
    profile: Profile,
    *,
    progress: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Play each scenario and look for its records; one failing never stops the others."""
    results = []
    for s in scenarios:
        mark = reader.mark(now=int(time.time()))
        log_at = target.broker_log_size()
        t0 = time.monotonic()
        try:
            attempt = s.play(target, profile)
            outcome = Outcome.PASSED
        except Exception as exc:  # noqa: BLE001 - reported as this scenario's error, then on
            attempt = Attempt(
                False, f"the attack could not be carried out: {type(exc).__name__}: {exc}"
            )
            outcome = Outcome.ERROR
        found: list[str | None] = [None] * len(s.evidence)
        detection: float | None = time.monotonic() - t0 if not s.evidence else None
        deadline = time.monotonic() + s.within
        while s.evidence and outcome is not Outcome.ERROR:
            found = _look(s, target, reader.since(mark), target.broker_log_since(log_at))
            if all(f is not None for f in found):
                detection = time.monotonic() - t0
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        missing = [e.describe() for e, f in zip(s.evidence, found, strict=True) if f is None]
        if outcome is Outcome.PASSED and (not attempt.refused or missing):
            outcome = Outcome.FAILED
        result = Result(
            s,
            outcome,
            attempt,
            [f for f in found if f is not None],
            missing,
            detection if outcome is Outcome.PASSED else None,
            time.monotonic() - t0,
        )
        results.append(result)
        if progress is not None:
            progress(result)
    return results
