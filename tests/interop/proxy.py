"""A loopback TCP man-in-the-middle for negative interop tests: forwards, and may tamper.

``tamper(direction, frame_index, frame) -> bytes`` sees each wrapper frame and
returns what to forward. Bounded: it serves connections until closed by the test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from meterguard.cosem.wrapper import WrapperDecoder

Tamper = Callable[[str, int, bytes], bytes]


class Proxy:
    def __init__(self, target_port: int, tamper: Tamper) -> None:
        self.target_port = target_port
        self.tamper = tamper
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frames = {"C->S": 0, "S->C": 0}
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            for src, dst, direction in ((client, server, "C->S"), (server, client, "S->C")):
                threading.Thread(target=self._pipe, args=(src, dst, direction), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        decoder = WrapperDecoder()
        with contextlib.suppress(OSError):
            while chunk := src.recv(65536):
                for frame in decoder.feed(chunk):
                    raw = frame.to_bytes()
                    index = self.frames[direction]
                    self.frames[direction] += 1
                    dst.sendall(self.tamper(direction, index, raw))
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop = True
        self.listener.close()
