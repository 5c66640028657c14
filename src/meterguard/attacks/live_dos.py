"""Plays of denial of service and physical tampering against a running system.

Every flood is bounded in count (the :class:`~meterguard.attacks.scenario.Profile`) and in
time, and stops by itself. What a flood must not do is delay the others: each play measures,
in the same scenario, how long a tamper alarm of another meter takes from the sensor to the
head-end's database without the attack and during it, and how many readings the rest of the
fleet got stored meanwhile.

The tamper plays ask the running demo to fire a meter's sensor (the demo's control
directory) and the runner looks for the alarm; the bypass play makes a home under-register
(an h1 thief that leaves no tamper evidence) and waits for the theft detector to flag it.
"""

from __future__ import annotations

import re
import secrets
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from meterguard.attacks.probe import connect
from meterguard.attacks.scenario import Attempt, Play, Profile
from meterguard.attacks.target import Target
from meterguard.mqtt.contract import upstream_topic
from meterguard.mqtt.tls import pinned_client_context

__all__ = [
    "alarm_flood",
    "bypass",
    "data_flood",
    "handshake_flood",
    "oversized",
    "reconnect_storm",
    "tamper",
    "tamper_in_power_cut",
]

ALARM_DEADLINE = 30.0
"""Longest wait for an alarm to reach the database."""
SENSORS = ("terminal-cover-open", "main-cover-open", "magnetic-field", "reverse-energy")


def _alarm_latency(t: Target, sensor: str) -> float | None:
    """Fire ``sensor`` on the neighbour; seconds until its alarm is in the database."""
    mark = t.evidence.mark(now=int(time.time()))
    t0 = time.monotonic()
    t.request({"meter": t.role("neighbour"), "tamper": sensor})
    while time.monotonic() - t0 < ALARM_DEADLINE:
        if any(
            r.kind == "alarm" and r.subject == t.role("neighbour") for r in t.evidence.since(mark)
        ):
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def _readings(t: Target) -> int:
    return t.evidence.readings()


def _flood(t: Target, p: Profile, topic: str, size: int) -> tuple[int, float]:
    """Publish up to ``p.flood`` messages of ``size`` bytes as the compromised meter."""
    with t.seized() as identity:
        return _flood_as(t, p, topic, size, identity)


def _flood_as(
    t: Target, p: Profile, topic: str, size: int, identity: tuple[Path, Path]
) -> tuple[int, float]:
    probe = connect(t.device_port, t.root, *identity)
    if not probe.connected:
        raise ConnectionError(f"the flooding meter could not connect: {probe.error}")
    sent, t0 = 0, time.monotonic()
    try:
        full = upstream_topic(t.role("compromised"), topic)
        while sent < p.flood and time.monotonic() - t0 < p.seconds and probe.connected:
            probe.client.publish(full, secrets.token_bytes(size), qos=0)
            sent += 1
            if sent % 200 == 0:
                time.sleep(0.01)  # let paho's thread write: the socket, not a queue, is the flood
    finally:
        probe.close()
    return sent, time.monotonic() - t0


def _under_flood(t: Target, p: Profile, topic: str, size: int) -> Attempt:
    before = _alarm_latency(t, SENSORS[0])
    readings0, w0 = _readings(t), time.monotonic()
    result: dict[str, float | None] = {}

    def during() -> None:
        time.sleep(min(1.0, p.seconds / 4))
        result["latency"] = _alarm_latency(t, SENSORS[1])

    probe = threading.Thread(target=during)
    probe.start()
    sent, took = _flood(t, p, topic, size)
    probe.join(ALARM_DEADLINE + 5)
    readings = _readings(t) - readings0
    rate = readings / max(time.monotonic() - w0, 1e-3)
    lat = result.get("latency")
    ok = before is not None and lat is not None and lat <= max(3 * before, before + 5.0)
    return Attempt(
        ok and readings > 0,
        f"{sent} messages of {size} B in {took:.1f} s on {topic}; another meter's alarm took"
        f" {_s(before)} without the flood and {_s(lat)} during it; the fleet's readings stored"
        f" meanwhile: {readings} ({rate:.0f}/s)",
        left=f"two tamper alarms open on {t.role('neighbour')}",
        figures={
            "sent": sent,
            "alarm_latency_baseline_s": before or -1,
            "alarm_latency_under_attack_s": lat if lat is not None else -1,
            "fleet_readings_per_s": rate,
        },
    )


def _s(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f} s"


def data_flood(t: Target, p: Profile) -> Attempt:
    """A compromised meter floods its data topic with junk."""
    return _under_flood(t, p, "data", 120)


def alarm_flood(t: Target, p: Profile) -> Attempt:
    """A compromised meter floods the alarm topic (the lane that must stay quick)."""
    return _under_flood(t, p, "alarms", 120)


def oversized(t: Target, _p: Profile) -> Attempt:
    """A compromised meter sends one 1 MiB message and one of 64 KiB."""
    with t.seized() as identity:
        return _oversized_as(t, identity)


def _oversized_as(t: Target, identity: tuple[Path, Path]) -> Attempt:
    probe = connect(t.device_port, t.root, *identity)
    if not probe.connected:
        return Attempt(False, f"the meter could not connect: {probe.error}")
    try:
        medium = probe.publish(upstream_topic(t.role("compromised"), "data"), bytes(64 << 10))
        probe.client.publish(upstream_topic(t.role("compromised"), "data"), bytes(1 << 20), qos=1)
        deadline = time.monotonic() + 5
        while probe.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        dropped = not probe.connected
    finally:
        probe.close()
    return Attempt(dropped, f"64 KiB PUBACK {medium}; 1 MiB: disconnected={dropped}")


def _handshake(t: Target, ctx: ssl.SSLContext) -> str:
    try:
        with (
            socket.create_connection((t.host, t.device_port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=t.host) as tls,
        ):
            tls.sendall(b"\x10\x00")
            tls.settimeout(2)
            return "open" if tls.recv(1) else "closed"
    except (ssl.SSLError, OSError) as exc:
        return type(exc).__name__


def handshake_flood(t: Target, p: Profile) -> Attempt:
    """Many unauthenticated clients open TLS handshakes at once, for at most ``p.seconds``."""
    ctx = pinned_client_context(t.root)
    before = _alarm_latency(t, SENSORS[2])
    stop = time.monotonic() + p.seconds
    outcomes: dict[str, int] = {}
    result: dict[str, float | None] = {}

    def during() -> None:
        time.sleep(1.0)
        result["latency"] = _alarm_latency(t, SENSORS[3])

    probe = threading.Thread(target=during)
    probe.start()
    with ThreadPoolExecutor(32) as pool:
        futures = [
            pool.submit(lambda: _handshake(t, ctx) if time.monotonic() < stop else "skipped")
            for _ in range(p.handshakes)
        ]
        for f in futures:
            o = f.result()
            outcomes[o] = outcomes.get(o, 0) + 1
    probe.join(ALARM_DEADLINE + 5)
    lat = result.get("latency")
    admitted = outcomes.get("open", 0)
    ok = (
        admitted == 0
        and before is not None
        and lat is not None
        and lat <= max(3 * before, before + 5.0)
    )
    return Attempt(
        ok,
        f"{p.handshakes} handshakes without a certificate: {outcomes}; another meter's alarm"
        f" took {_s(before)} before and {_s(lat)} during the flood",
        left=f"two tamper alarms open on {t.role('neighbour')}",
        figures={
            "handshakes": p.handshakes,
            "alarm_latency_baseline_s": before or -1,
            "alarm_latency_under_attack_s": lat if lat is not None else -1,
        },
    )


STORM_DEADLINE = 90.0
"""Longest wait for every meter to be back, and for what they queued meanwhile to be stored."""
INTERVAL = 900


def reconnect_storm(t: Target, _p: Profile) -> Attempt:
    """The broker goes down and comes back: every meter and worker reconnects at once.

    Measures, in the same scenario: another meter's alarm latency before and during the storm
    (its sensor fires while the broker is down: the alarm waits in its outbox), how long until
    every meter of the fleet is connected again, and how long until every interval the meters
    queued meanwhile is stored (each meter holds every interval after the last one stored
    before the restart). Passes when every meter is back, the alarm arrived, nothing queued
    was lost, and the storm raised no security event or refusal (an outage is not an attack).
    """
    before = _alarm_latency(t, SENSORS[0])
    newest0 = t.evidence.newest_intervals()
    mark = t.evidence.mark(now=int(time.time()))
    offset = t.broker_log_size()
    t0 = time.monotonic()
    t.request({"broker": "restart"})
    started = re.compile(r"mosquitto version \S+ starting")
    while not started.search(t.broker_log_since(offset)):
        if time.monotonic() - t0 > 30:
            return Attempt(False, "the running system did not restart its broker within 30 s")
        time.sleep(0.05)
    result: dict[str, float | None] = {}
    probe = threading.Thread(target=lambda: result.update(latency=_alarm_latency(t, SENSORS[1])))
    probe.start()
    back, back_s = _reconnected(t, offset, t0)
    probe.join(ALARM_DEADLINE + 5)
    lost, backlog_s, stored = _backlog(t, newest0, time.monotonic() - t0, t0)
    others = [
        r.describe() for r in t.evidence.since(mark) if r.kind in ("security_event", "quarantine")
    ]
    lat = result.get("latency")
    missing = sorted(set(t.fleet) - back)
    ok = not missing and lat is not None and not lost and not others and backlog_s is not None
    return Attempt(
        ok,
        f"{len(back)} of {len(t.fleet)} meters back after {_s(back_s)}"
        f"{'; not back: ' + ', '.join(missing[:5]) if missing else ''}; another meter's alarm"
        f" took {_s(before)} without the storm and {_s(lat)} when fired during it; the"
        f" {stored} intervals queued during the outage stored after {_s(backlog_s)}"
        f"{'; intervals missing: ' + ', '.join(lost[:5]) if lost else ''}; security events or"
        f" refusals raised by the storm: {others[:3] or 'none'}",
        left=f"a tamper alarm open on {t.role('neighbour')}, one more after the storm",
        figures={
            "meters": len(t.fleet),
            "reconnected_all_s": back_s if back_s is not None else -1,
            "backlog_stored_s": backlog_s if backlog_s is not None else -1,
            "intervals_queued": stored,
            "alarm_latency_baseline_s": before or -1,
            "alarm_latency_under_attack_s": lat if lat is not None else -1,
        },
    )


def _reconnected(t: Target, offset: int, t0: float) -> tuple[set[str], float | None]:
    """The fleet's meters seen connecting after ``offset`` in the broker's log, and when."""
    connected = re.compile(r"New client connected from \S+ as (\S+) ")
    fleet, back = set(t.fleet), set[str]()
    while time.monotonic() - t0 < STORM_DEADLINE:
        back = fleet & set(connected.findall(t.broker_log_since(offset)))
        if back == fleet:
            return back, time.monotonic() - t0
        time.sleep(0.1)
    return back, None


def _backlog(
    t: Target, newest0: dict[str, int], outage_s: float, t0: float
) -> tuple[list[str], float | None, int]:
    """Wait until the intervals queued during the outage are stored; which meters miss some.

    The meters' clocks run ``t.speed`` times the wall clock: the outage (until every meter was
    back) spans that many intervals of meter time, which every meter must hold afterwards.
    """
    lo = max(newest0.values(), default=0)
    want = lo + int(outage_s * t.speed) // INTERVAL * INTERVAL
    newest: dict[str, int] = {}
    while time.monotonic() - t0 < STORM_DEADLINE:
        newest = t.evidence.newest_intervals()
        if newest0.keys() <= newest.keys() and min(newest[m] for m in newest0) >= want:
            break
        time.sleep(0.2)
    else:
        late = [m for m in newest0 if newest.get(m, 0) < want]
        return late, None, 0
    took = time.monotonic() - t0
    hi = min(newest[m] for m in newest0)
    expected = (hi - lo) // INTERVAL
    counts = t.evidence.interval_counts(lo + 1, hi)
    lost = [
        f"{m} ({counts.get(m, 0)} of {expected})" for m in newest0 if counts.get(m, 0) != expected
    ]
    return lost, took, expected * len(newest0)


def tamper(sensor: str) -> Play:
    """The play that fires ``sensor`` on the neighbour's meter."""

    def play(t: Target, _p: Profile) -> Attempt:
        t.request({"meter": t.role("neighbour"), "tamper": sensor})
        return Attempt(
            True,
            f"{sensor} on {t.role('neighbour')}",
            left=f"a {sensor} alarm open on {t.role('neighbour')} (an operator clears it)",
        )

    play.__doc__ = f"Someone at the meter: {sensor}."
    return play


def tamper_in_power_cut(t: Target, _p: Profile) -> Attempt:
    """A cover opened while the meter's communication is down (a power cut of its module).

    The meter's sensor and log are battery-backed: the alarm is latched and kept in the
    meter's outbox; the head-end must not see it before the link is back, and must get it
    after.
    """
    mid = t.role("powercut")
    mark = t.evidence.mark(now=int(time.time()))
    with t.seized("powercut"):
        t.request({"meter": mid, "tamper": "main-cover-open"})
        time.sleep(3.0)
        early = any(r.kind == "alarm" and r.subject == mid for r in t.evidence.since(mark))
    return Attempt(
        not early,
        f"cover opened on {mid} during a 3 s cut; alarm stored during the cut: {early}",
        left=f"a main-cover-open alarm open on {mid} (an operator clears it)",
    )


def bypass(t: Target, _p: Profile) -> Attempt:
    """A home is bypassed (about half its draw unregistered, no tamper evidence left)."""
    thief = t.role("thief")
    t.request({"meter": thief, "steal": "h1", "evidence": 0.0, "seed": 7})
    deadline = time.monotonic() + 240
    try:
        with t.web() as c:
            r = t.login(c, t.role("investigator"))
            if r.status_code != 200:
                return Attempt(False, f"the investigator could not log in: {r.status_code}")
            while time.monotonic() < deadline:
                rows = c.get("/api/v1/revenue-protection/suspects").json()["suspects"]
                if rows and rows[0]["meter_id"] == thief:
                    return Attempt(True, f"{thief} is the first suspect: {rows[0]['score']:.2f}")
                time.sleep(2.0)
    finally:
        t.request({"meter": thief, "honest": True})
    return Attempt(False, f"{thief} was not the first suspect within 240 s")
