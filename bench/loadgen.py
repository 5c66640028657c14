"""Open-loop MQTT/TLS load generator for bench/ingest.py (a process of its own).

Reads a pickled plan from stdin: broker address, the root, one (certificate, key)
per meter, and the messages as precomputed PUBLISH frames with a scheduled send
time each (seconds after the start). It opens one TLS connection per meter
(the meter's own certificate, MQTT v5), says ``R``, reads the start time (a
big-endian double, Unix time) from stdin, waits for it, and writes
each frame when it is due — never earlier; if it falls behind, it sends at once
and the lateness counts as latency in the benchmark, since latency is measured
from the *scheduled* time. It respects the broker's receive maximum (at most
that many unacknowledged publishes per connection) and drains PUBACKs.

Writes a pickled report to stdout: frames sent, seconds it took, how late it
ran (p99), and its own CPU time. Not a product module: a benchmark tool.
"""

from __future__ import annotations

import pickle
import select
import socket
import ssl
import struct
import sys
import time
from typing import Any

import mqtt5


def _tls(root: str, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=root)
    ctx.load_cert_chain(cert, key)
    return ctx


def _read_packets(sock: ssl.SSLSocket, buf: bytearray) -> list[Any]:
    out = []
    while True:
        try:
            data = sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            break
        if not data:
            raise ConnectionError("broker closed a generator connection")
        buf += data
    view = memoryview(buf)
    off = 0
    while off < len(buf):
        try:
            packet, n = mqtt5.read(view[off:])
        except IndexError:
            break
        out.append(packet)
        off += n
    view.release()
    del buf[:off]
    return out


def main() -> None:
    plan = pickle.load(sys.stdin.buffer)  # noqa: S301 - our own parent process wrote it
    host, port, root = plan["host"], plan["port"], plan["root"]
    socks: list[ssl.SSLSocket] = []
    receive_max: list[int] = []
    for cid, (cert, key) in zip(plan["client_ids"], plan["identities"], strict=True):
        raw = socket.create_connection((host, port), timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = _tls(root, cert, key).wrap_socket(raw, server_hostname=host)
        s.sendall(mqtt5.ConnectPacket(cid, clean_start=True, keep_alive=600).write())
        s.settimeout(10)
        buf = bytearray()
        ack = None
        while ack is None:
            buf += s.recv(4096)
            try:
                ack, _ = mqtt5.read(memoryview(buf))
            except IndexError:
                continue
        assert isinstance(ack, mqtt5.ConnAckPacket) and ack.reason_code == 0, ack
        receive_max.append(ack.receive_max)
        s.setblocking(False)
        socks.append(s)
    fd_index = {s.fileno(): i for i, s in enumerate(socks)}
    poller = select.epoll()
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
    bufs = [bytearray() for _ in socks]
    inflight = [0] * len(socks)
    sys.stdout.buffer.write(b"R")  # ready: the parent answers with the start time
    sys.stdout.buffer.flush()
    (start,) = struct.unpack("!d", sys.stdin.buffer.read(8))
    frames: list[tuple[float, int, bytes]] = plan["frames"]
    lateness: list[float] = []
    cpu0 = time.process_time()

    def drain(timeout: float) -> None:
        for fd, _ in poller.poll(timeout):
            i = fd_index[fd]
            for p in _read_packets(socks[i], bufs[i]):
                if isinstance(p, mqtt5.PubAckPacket):
                    inflight[i] -= 1

    while time.time() < start:
        time.sleep(min(0.01, max(0.0, start - time.time())))
    t_begin = time.perf_counter()
    for n, (due, i, frame) in enumerate(frames):
        now = time.time() - start
        if due > now:
            drain(0)
            left = due - (time.time() - start)
            if left > 0.0005:
                time.sleep(left)
        elif n % 32 == 0:
            drain(0)
        while inflight[i] >= receive_max[i]:
            drain(0.05)
        s = socks[i]
        while True:
            try:
                s.send(frame)
                break
            except (ssl.SSLWantWriteError, BlockingIOError):
                select.select([], [s], [], 0.05)
            except ssl.SSLWantReadError:
                drain(0.01)
        inflight[i] += 1
        if n % 16 == 0:
            lateness.append(time.time() - start - due)
    elapsed = time.perf_counter() - t_begin
    deadline = time.monotonic() + 30
    while any(inflight) and time.monotonic() < deadline:
        drain(0.05)
    cpu = time.process_time() - cpu0
    for s in socks:
        try:
            s.setblocking(True)
            s.sendall(mqtt5.DisconnectPacket().write())
        finally:
            s.close()
    lateness.sort()
    report = {
        "sent": len(frames),
        "seconds": elapsed,
        "late_p99": lateness[int(0.99 * (len(lateness) - 1))] if lateness else 0.0,
        "cpu": cpu,
        "unacked": sum(inflight),
    }
    sys.stdout.buffer.write(pickle.dumps(report))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
