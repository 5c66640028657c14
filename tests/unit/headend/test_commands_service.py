"""The dual-control rule of API-10, tested in memory: the command service over a fake repository.

No database: the repository protocol is implemented by a dict, so these tests show the rule
itself — another person approves, the proposer cannot (audited), approval signs with the
next counter, a proposal expires after its window, an offline meter makes it undelivered.
The same service over the real database is tested in tests/integration/test_commands.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from meterguard.cosem.command import open_command
from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import AccessDeniedError, InvalidValueError
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.commands import APPROVAL_WINDOW, Commands, DualControlError
from meterguard.headend.store.audit import Fields
from meterguard.headend.store.commands import CommandView

METER = "MGD0000000001"
TITLE = b"MGD\x00\x00\x00\x00\x01"
HEADEND = b"MGH\x00\x00\x00\x00\x01"
EK, AK = SecretKey.generate(16), SecretKey.generate(16)
OLGA = Principal(1, "olga", "operator")
ERIK = Principal(2, "erik", "engineer")
ALICE = Principal(3, "alice", "consumer")


class Memory:
    """The command repository as a dict; a step's changes apply only if it completes."""

    def __init__(self) -> None:
        self.rows: dict[int, CommandView] = {}
        self.meters = {METER: "active", "MGD0000000002": "decommissioned"}
        self.trail: list[Fields] = []

    @contextmanager
    def transaction(self) -> Iterator[Memory.Unit]:
        unit = Memory.Unit(self)
        yield unit
        self.rows, self.trail = unit.rows, [*self.trail, *unit.trail]

    class Unit:
        def __init__(self, repo: Memory) -> None:
            self.repo, self.rows = repo, dict(repo.rows)
            self.trail: list[Fields] = []

        def meter_state(self, meter_id: str) -> str | None:
            return self.repo.meters.get(meter_id)

        def add(self, **values: Any) -> int:
            cid = len(self.rows) + 1
            fields: dict[str, Any] = dict.fromkeys(CommandView.__dataclass_fields__)
            fields |= values | {"id": cid}
            self.rows[cid] = CommandView(**fields)
            return cid

        def locked(self, command_id: int) -> CommandView | None:
            return self.rows.get(command_id)

        def set(self, command_id: int, **values: Any) -> None:
            self.rows[command_id] = replace(self.rows[command_id], **values)

        def next_counter(self, meter_id: str) -> int:
            used = [r.counter or 0 for r in self.rows.values() if r.meter_id == meter_id]
            return 1 + max(used, default=0)

        def audit(self, entries: Sequence[Fields]) -> None:
            self.trail.extend(entries)

    def get(self, command_id: int) -> CommandView | None:
        return self.rows.get(command_id)

    def list(self, *, meter_id: str | None = None, limit: int = 100) -> list[CommandView]:
        rows = [r for r in self.rows.values() if meter_id in (None, r.meter_id)]
        return sorted(rows, key=lambda r: -r.id)[:limit]

    def mark_undelivered(self, command_id: int) -> None:
        if self.rows[command_id].state == "sent":
            self.rows[command_id] = replace(self.rows[command_id], state="undelivered")


class Reads:
    def on_demand_read(self, who: Principal, meter_id: str, *, now: int) -> None:
        pass


def service(repo: Memory, sent: list[tuple[str, bytes]], *, online: bool = True) -> Commands:
    key = SigningKey.generate()

    def publish(meter_id: str, envelope: bytes) -> bool:
        sent.append((meter_id, envelope))
        return online

    svc = Commands(repo, lambda _m: (TITLE, EK, AK), key, HEADEND, publish, reads=Reads())
    svc.verifying_key = key.verifying_key()  # type: ignore[attr-defined]
    return svc


def test_another_person_approves_and_the_envelope_is_signed_with_the_next_counter() -> None:
    repo, sent = Memory(), []  # type: Memory, list[tuple[str, bytes]]
    svc = service(repo, sent)
    cmd = svc.propose(OLGA, METER, "disconnect", None, "unpaid", now=100)
    assert cmd.state == "proposed" and sent == []
    done = svc.approve(ERIK, cmd.id, now=200)
    assert done is not None and done.state == "sent" and done.counter == 1
    assert (done.proposed_by, done.approved_by) == ("olga", "erik")
    assert len(sent) == 1 and sent[0][0] == METER
    opened = open_command(
        sent[0][1],
        command_key=svc.verifying_key,  # type: ignore[attr-defined]
        headend_title=HEADEND,
        meter_title=TITLE,
        unicast_key=EK,
        authentication_key=AK,
        last_counter=0,
    )
    assert opened.counter == 1
    second = svc.propose(ERIK, METER, "reconnect", None, "paid", now=300)
    assert svc.approve(OLGA, second.id, now=301).counter == 2  # type: ignore[union-attr]
    actions = [(e["actor"], e["action"], e["result"]) for e in repo.trail]
    assert ("erik", "command_approved:disconnect", "signed_and_sent") in actions


def test_the_proposer_cannot_approve_and_the_attempt_is_audited() -> None:
    repo, sent = Memory(), []  # type: Memory, list[tuple[str, bytes]]
    svc = service(repo, sent)
    cmd = svc.propose(OLGA, METER, "load_limit", 5000, "peak", now=100)
    with pytest.raises(DualControlError):
        svc.approve(OLGA, cmd.id, now=101)
    assert repo.rows[cmd.id].state == "proposed" and sent == []
    assert ("olga", "denied_same_person") in [(e["actor"], e["result"]) for e in repo.trail]


def test_proposals_expire_and_roles_and_values_are_checked() -> None:
    repo, sent = Memory(), []  # type: Memory, list[tuple[str, bytes]]
    svc = service(repo, sent)
    cmd = svc.propose(OLGA, METER, "tariff_change", 2, "winter", now=100)
    assert svc.approve(ERIK, cmd.id, now=100 + APPROVAL_WINDOW + 1) is None
    assert repo.rows[cmd.id].state == "expired" and sent == []
    with pytest.raises(AccessDeniedError):
        svc.propose(ALICE, METER, "disconnect", None, "x", now=1)
    for kind, value in (("load_limit", 10), ("tariff_change", 9), ("disconnect", 1)):
        with pytest.raises(InvalidValueError):
            svc.propose(OLGA, METER, kind, value, "x", now=1)
    with pytest.raises(InvalidValueError):  # a retired meter takes no commands
        svc.propose(OLGA, "MGD0000000002", "reconnect", None, "x", now=1)


def test_a_command_no_meter_took_is_undelivered() -> None:
    repo, sent = Memory(), []  # type: Memory, list[tuple[str, bytes]]
    svc = service(repo, sent, online=False)
    cmd = svc.propose(OLGA, METER, "disconnect", None, "unpaid", now=100)
    out = svc.approve(ERIK, cmd.id, now=101)
    assert out is not None and out.state == "undelivered" and len(sent) == 1
