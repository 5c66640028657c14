"""The attack runner's verdicts over a real store: a refusal needs its record, a record its refusal.

A play here stands in for an attack (it writes the record a real system would, or not); the
records are read back from a real SQLite database through the same EvidenceReader the command
uses. The scorecard's HTML is checked for escaping and for being self-contained.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import pytest

from meterguard.attacks.catalog import SCENARIOS, select
from meterguard.attacks.scenario import (
    Attempt,
    Capability,
    Expect,
    Outcome,
    Profile,
    Scenario,
    Threat,
    run,
)
from meterguard.attacks.scorecard import html, report
from meterguard.attacks.target import Relay, Secrets, Target, loopback, search
from meterguard.errors import ConfigurationError
from meterguard.headend.store.db import open_database
from meterguard.headend.store.evidence import EvidenceReader, dump_tables
from meterguard.headend.store.repository import Store


@pytest.fixture
def world(tmp_path: Path) -> tuple[Target, Store]:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    engine = open_database(url)
    store = Store(engine)
    requests: list[dict[str, Any]] = []
    target = Target(
        host="127.0.0.1", device_port=1, service_port=2, web_port=3, firmware_port=4,
        root=tmp_path / "root.pem", db_file=tmp_path / "h.db", keystore=tmp_path / "k.db",
        kek=tmp_path / "kek", broker_log=tmp_path / "mosquitto.log",
        accounts_file=tmp_path / "accounts.txt", firmware_dir=tmp_path / "fw",
        meter_dir=lambda m: tmp_path / m, service_identity=(tmp_path / "s.pem", tmp_path / "s.key"),
        roles={"compromised": "MGD0000000002"}, secrets=Secrets(), request=requests.append,
        evidence=EvidenceReader(engine), db_url=url, workdir=tmp_path,
    )  # fmt: skip
    return target, store


def _scenario(play: Any, *evidence: Expect, no_record: str = "") -> Scenario:
    return Scenario(
        "s", Threat.MITM, Capability.COMPROMISED_BROKER, "t", ("a",), "refused", ("SEC-2",),
        play, evidence, no_record=no_record, within=0.5,
    )  # fmt: skip


def _event(store: Store, meter: str) -> None:
    store.security_event(at=1, event="authentication_failed", detail="tag", meter_id=meter)


def test_a_refusal_with_its_record_passes(world: tuple[Target, Store]) -> None:
    target, store = world

    def play(_t: Target, _p: Profile) -> Attempt:
        _event(store, "MGD0000000002")
        return Attempt(True, "refused")

    s = _scenario(play, Expect("security_event", "authentication_failed", "compromised"))
    [r] = run([s], target, target.evidence, Profile())
    assert r.outcome is Outcome.PASSED and r.detection is not None and r.found


def test_a_record_before_the_attack_or_of_another_meter_is_not_evidence(
    world: tuple[Target, Store],
) -> None:
    target, store = world
    _event(store, "MGD0000000002")  # before the mark

    def play(_t: Target, _p: Profile) -> Attempt:
        _event(store, "MGD0000000009")  # someone else's
        return Attempt(True, "refused")

    s = _scenario(play, Expect("security_event", "authentication_failed", "compromised"))
    [r] = run([s], target, target.evidence, Profile())
    assert r.outcome is Outcome.FAILED and r.missing and r.detection is None


def test_a_summary_counted_in_the_marks_own_second_counts_only_if_counted_again(
    world: tuple[Target, Store],
) -> None:
    _, store = world
    reader = EvidenceReader(store.engine)
    m = "MGD0000000002"
    store.security_event(at=500, event="replay", detail="x", meter_id=m, summarise=True)
    store.security_event(at=5_000, event="replay", detail="x", meter_id=m, summarise=True)
    mark = reader.mark(now=5_000)  # the same second as the last count: not the attack's
    assert [r.name for r in reader.since(mark)] == []
    store.security_event(at=5_000, event="replay", detail="x", meter_id=m, summarise=True)
    assert [(r.name, r.result) for r in reader.since(mark)] == [("replay", "x2")]


def test_no_refusal_fails_even_with_a_record(world: tuple[Target, Store]) -> None:
    target, store = world

    def play(_t: Target, _p: Profile) -> Attempt:
        _event(store, "MGD0000000002")
        return Attempt(False, "the forged reading was stored")

    s = _scenario(play, Expect("security_event", "authentication_failed", "compromised"))
    assert run([s], target, target.evidence, Profile())[0].outcome is Outcome.FAILED


def test_a_play_that_breaks_is_an_error_and_the_run_goes_on(world: tuple[Target, Store]) -> None:
    target, _ = world

    def broken(_t: Target, _p: Profile) -> Attempt:
        raise ConnectionError("no broker")

    def fine(_t: Target, _p: Profile) -> Attempt:
        return Attempt(True, "ok")

    a = _scenario(broken, no_record="x")
    b = _scenario(fine, no_record="a copy is invisible")
    ra, rb = run([a, b], target, target.evidence, Profile())
    assert ra.outcome is Outcome.ERROR and "ConnectionError: no broker" in ra.attempt.detail
    assert rb.outcome is Outcome.PASSED


def test_a_scenario_must_name_its_record_or_say_why_none() -> None:
    with pytest.raises(ValueError, match="no expected record"):
        _scenario(lambda _t, _p: Attempt(True, ""))


def test_the_catalog_covers_every_threat_and_selects_by_name() -> None:
    assert {s.threat for s in SCENARIOS} == set(Threat)
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS)
    assert all(s.requirements for s in SCENARIOS)
    assert {s.id for s in select(["denial-of-service"])} >= {"data-flood", "handshake-flood"}
    assert [s.id for s in select(["dlms-replayed"])] == ["dlms-replayed"]
    with pytest.raises(ConfigurationError, match="no scenario"):
        select(["nothing-like-this"])


def test_html_is_escaped_and_self_contained(world: tuple[Target, Store]) -> None:
    target, _ = world

    def play(_t: Target, _p: Profile) -> Attempt:
        return Attempt(True, "<script>alert(1)</script>", left="<b>x</b>")

    [r] = run([_scenario(play, no_record="<img src=x>")], target, target.evidence, Profile())
    page = html(report([r], target="t", profile="ci", took=1.0))
    assert "<script>" not in page and "&lt;script&gt;" in page and "<img" not in page
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)


def test_targets_are_loopback_only() -> None:
    assert loopback("127.0.0.1") == "127.0.0.1"
    for host in ("10.0.0.1", "8.8.8.8", "example.org"):
        with pytest.raises(ConfigurationError, match="loopback only"):
            loopback(host)


def test_search_finds_secrets_in_raw_hex_and_base64_and_never_shows_them() -> None:
    s = Secrets()
    key = bytes(range(16))
    s.add("a key", key)
    s.add("too short", b"abc")
    assert search(b"xx" + key + b"yy", s) == ["a key"]
    assert search(key.hex().encode(), s) == ["a key"]
    assert search(b"AAECAwQFBgcICQoLDA0ODw", s) == ["a key"]
    assert search(b"abc", s) == []
    assert key.hex() not in repr(s)


def test_a_series_of_reading_values_is_found_when_readable_not_by_one_chance_match() -> None:
    values = [1_500_000 + 173 * i for i in range(200)]
    s = Secrets()
    s.add_series("the readings", values)
    pages = bytes(4096) * 64
    # One value by chance in database pages (3 significant bytes): not a readable copy.
    once = pages + values[7].to_bytes(8, "little") + pages
    assert search(once, s) == []
    # A copy that holds them: as text (JSON, CSV) or as 8-byte integers, in clear or in hex.
    as_text = b",".join(str(v).encode() for v in values[:40])
    as_ints = b"".join(v.to_bytes(8, "big") for v in values[:40])
    for copy in (as_text, as_ints, as_ints.hex().encode()):
        found = search(pages + copy, s)
        assert found == ["the readings (40 of 200; decoys 0)"], found
    assert "1500000" not in repr(s) and "1500000" not in str(search(as_text, s))


def test_the_relay_records_both_directions(tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    relay = Relay("127.0.0.1", server.getsockname()[1])
    with socket.create_connection(("127.0.0.1", relay.port)) as c:
        conn, _ = server.accept()
        c.sendall(b"ping-from-client")
        assert conn.recv(100) == b"ping-from-client"
        conn.sendall(b"pong-from-server")
        assert c.recv(100) == b"pong-from-server"
        conn.close()
    relay.close()
    server.close()
    assert b"ping-from-client" in relay.bytes() and b"pong-from-server" in relay.bytes()


def test_a_database_dump_reads_every_table(world: tuple[Target, Store]) -> None:
    target, store = world
    _event(store, "MGD0000000002")
    engine = target.evidence.engine
    assert b"authentication_failed" in b"\n".join(dump_tables(engine))
