"""The broker log monitor: client-id takeovers are seen, head-end workers' own ids are not."""

from __future__ import annotations

from pathlib import Path

from meterguard.broker.monitor import ClientIdMismatch, LogMonitor, SessionTakeover, parse_line


def connected(port: int, client_id: str, user: str) -> str:
    """A Mosquitto 2.0 connection log line."""
    return (
        f"1796166443: New client connected from 127.0.0.1:{port} as {client_id}"
        f" (p5, c1, k60, u'{user}')."
    )


OK = connected(40112, "MGD0000000004", "MGD0000000004")
IMPOSTOR = connected(40113, "MGD0000000004", "MGD0000000002")
TAKEN = "1796166444: Client MGD0000000004 already connected, closing old connection."
WORKER = connected(40114, "headend-alarms-1", "headend-ingest-1")
SERVICE_AS_METER = connected(40115, "MGD0000000004", "headend-ingest-1")


def test_lines() -> None:
    assert parse_line(OK) is None
    assert parse_line(IMPOSTOR) == ClientIdMismatch(
        "MGD0000000004", "MGD0000000002", "127.0.0.1:40113"
    )
    assert parse_line(TAKEN) == SessionTakeover("MGD0000000004")
    assert parse_line(WORKER) is None  # a worker's client id is its own business
    assert isinstance(parse_line(SERVICE_AS_METER), ClientIdMismatch)


def test_monitor_follows_the_log_and_can_skip_history(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text(IMPOSTOR + "\n" + TAKEN + "\n")
    old = LogMonitor(log)
    assert len(old.poll()) == 2
    fresh = LogMonitor(log)
    fresh.skip_existing()
    assert fresh.poll() == []
    with log.open("a") as f:
        f.write(TAKEN + "\n" + IMPOSTOR[:30])  # a line still being written is not read yet
    assert fresh.poll() == [SessionTakeover("MGD0000000004")]


def test_the_monitor_follows_who_is_connected(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"

    def connect(n: int, cid: str, user: str) -> str:
        return f"{n}: New client connected from 127.0.0.1:500{n} as {cid} (p5, c1, k60, u'{user}')."

    lines = [
        connect(1, "MGD0000000001", "MGD0000000001"),
        connect(2, "MGD0000000002", "MGD0000000002"),
        connect(3, "headend-ingest-1", "headend-ingest"),
        "4: Client MGD0000000002 disconnected.",
        "5: Client <unknown> disconnected: Protocol error.",
        "6: Client MGD0000000001 has exceeded timeout, disconnecting.",
    ]
    log.write_text("\n".join(lines) + "\n")
    monitor = LogMonitor(log)
    monitor.poll()
    assert monitor.connected == {"headend-ingest-1"}
    with log.open("a") as f:
        f.write("7: mosquitto version 2.0.11 starting\n")
        f.write(lines[0][3:] + "\n")
    monitor.poll()
    assert monitor.connected == {"MGD0000000001"}  # a restart dropped everyone before it
