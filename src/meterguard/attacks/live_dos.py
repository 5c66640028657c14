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
