"""Run Mosquitto as a child process with the generated configuration (`meterguard broker run`).

:class:`ManagedBroker` prepares the broker directory from a PKI (server
certificate for the broker, trust files, the CRL), writes the configuration,
starts ``mosquitto -c``, waits until both TLS listeners accept connections,
reloads it with SIGHUP when the CRL changes, and stops it. A missing
``mosquitto`` binary is a clear :class:`~meterguard.errors.ConfigurationError`,
and a broker that does not come up within the timeout is a
:class:`~meterguard.errors.TransportError` carrying its log — never a hang.

Only processes started here are ever signalled, by their own PID.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from meterguard.broker.config import BrokerLayout, BrokerLimits, render
from meterguard.broker.monitor import LogMonitor
from meterguard.crypto.pki.store import Pki, pem
from meterguard.errors import ConfigurationError, TransportError

log = logging.getLogger(__name__)

__all__ = ["ManagedBroker", "free_port", "stop_process"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL after ``timeout`` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise ConfigurationError("mosquitto is not installed (Debian: apt-get install mosquitto)")


class ManagedBroker:
    """A Mosquitto process configured for meterguard."""

    def __init__(
        self,
        layout: BrokerLayout,
        limits: BrokerLimits | None = None,
        service_users: list[str] | None = None,
    ) -> None:
        self.layout = layout
        self.limits = limits
        self.service_users = list(service_users or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = layout.log
        self._out = layout.directory / "mosquitto.out"

    @classmethod
    def prepare(
        cls,
        directory: Path,
        pki: Pki,
        *,
        host: str = "127.0.0.1",
        device_port: int | None = None,
        service_port: int | None = None,
        now: dt.datetime,
        limits: BrokerLimits | None = None,
    ) -> ManagedBroker:
        """Create the broker directory from ``pki`` (server certificate, trust files, CRL)."""
        directory.mkdir(parents=True, exist_ok=True)
        if not pki.roots_separated:
            log.warning(
                "the PKI in %s has one root for meters and services: meter certificates chain "
                "on the service listener too (MQ-4); a new PKI separates them",
                pki.directory,
            )
        if not pki.service_crl_path.exists():  # a PKI created before the service CRL existed
            pki.publish_service_crl(now=now)
        cert, key = pki.issue_server("broker", hosts=[host, "localhost"], now=now, out=directory)
        (directory / "device-trust.pem").write_bytes(
            pem(pki.device_root) + pem(pki.device.certificate)
        )
        (directory / "service-trust.pem").write_bytes(pem(pki.root) + pem(pki.service.certificate))
        layout = BrokerLayout(
            directory=directory,
            host=host,
            device_port=device_port or free_port(host),
            service_port=service_port or free_port(host),
            server_cert=cert,
            server_key=key,
            device_trust=directory / "device-trust.pem",
            service_trust=directory / "service-trust.pem",
            crl=pki.crl_path,
            run_as=getpass.getuser(),
            service_crl=pki.service_crl_path,
        )
        broker = cls(layout, limits, sorted(pki.registry.services))
        broker.write_config()
        return broker

    def write_config(self) -> None:
        """(Re)write configuration and ACL files."""
        for path, text in render(self.layout, self.limits, self.service_users).items():
            path.write_text(text, encoding="utf-8")

    def sync(self, pki: Pki) -> None:
        """Pick up new service users and the current CRL: rewrite the ACLs and reload if running."""
        self.service_users = sorted(pki.registry.services)
        self.write_config()
        if self.proc is not None and self.proc.poll() is None:
            self.reload()

    def start(self, timeout: float = 15.0) -> None:
        """Start Mosquitto and wait until both listeners accept TCP connections."""
        binary = _mosquitto()
        self.layout.persistence.mkdir(mode=0o700, exist_ok=True)
        log = self._out.open("ab")  # start-up errors before the log file is open
        self.proc = subprocess.Popen(  # noqa: S603 - fixed binary and our own config
            [binary, "-c", str(self.layout.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        for port in (self.layout.device_port, self.layout.service_port):
            while True:
                if self.proc.poll() is not None:
                    raise TransportError(
                        f"mosquitto exited with {self.proc.returncode}: {self.log_tail()}"
                    )
                try:
                    with socket.create_connection((self.layout.host, port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise TransportError(
                            f"mosquitto did not listen on {port}: {self.log_tail()}"
                        ) from None
                    time.sleep(0.05)

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its configuration, ACLs and the CRL."""
        if self.proc is None or self.proc.poll() is not None:
            raise TransportError("the broker is not running")
        os.kill(self.proc.pid, signal.SIGHUP)

    def stop(self) -> None:
        """Stop the broker we started (by its PID) and wait for it."""
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def monitor(self) -> LogMonitor:
        """A security-event monitor over this broker's log (client-id takeover, MQ-4)."""
        return LogMonitor(self._log)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the broker's output and log."""
        text = []
        for path in (self._out, self._log):
            try:
                text += path.read_text(errors="replace").splitlines()[-lines:]
            except FileNotFoundError:
                continue
        return "\n".join(text) or "(no log)"

    def __enter__(self) -> ManagedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
