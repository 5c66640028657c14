"""A meter on a fixed clock with a management client joined in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meterguard.clock import FixedClock
from meterguard.cosem.connection import (
    ClientConnection,
    ClientSettings,
    Event,
    SecurityMaterial,
    ServerConnection,
)
from meterguard.cosem.counters import SendCounter
from meterguard.crypto.keys import SecretKey
from meterguard.meter.device import Meter, MeterIdentity
from tests.conftest import AK_HEX, EK_HEX

KEK = SecretKey(bytes(range(32, 48)))
START = dt.datetime(2026, 11, 25, 10, 7, tzinfo=dt.UTC)


@dataclass
class Bench:
    meter: Meter
    clock: FixedClock
    state: Path
    pushes: list[bytes] = field(default_factory=list)

    def client(
        self, *, sap: int = 1, ek: SecretKey | None = None, ic: int | None = None
    ) -> Session:
        srv = self.meter.connection()
        if sap == 16:
            cli = ClientConnection(ClientSettings.public())
        else:
            start = (self.meter.material.peer_counter.last or 0) + 1 if ic is None else ic
            material = SecurityMaterial(
                system_title=b"HED\x00\x00\x00\x00\x01",
                unicast_key=ek or SecretKey.from_hex(EK_HEX),
                authentication_key=SecretKey.from_hex(AK_HEX),
                send_counter=SendCounter(start),
            )
            cli = ClientConnection(ClientSettings(), material)
        return Session(cli, srv, sap)

    def restart(self) -> Meter:
        self.meter = make_meter(self.state, self.clock, self.pushes.append)
        return self.meter


@dataclass
class Session:
    client: ClientConnection
    server: ServerConnection
    sap: int
    errors: list[Exception] = field(default_factory=list)

    def pump(self) -> list[Event]:
        events: list[Event] = []
        while out := self.client.outgoing():
            for apdu in out:
                try:
                    self.server.receive(apdu, client_sap=self.sap)
                except Exception as exc:  # noqa: BLE001 - recorded for the test to inspect
                    self.errors.append(exc)
                for reply in self.server.outgoing():
                    try:
                        events += self.client.receive(reply)
                    except Exception as exc:  # noqa: BLE001 - recorded for the test to inspect
                        self.errors.append(exc)
        return events

    def open(self) -> Session:
        self.client.associate()
        self.pump()
        return self

    def call(self, fn: Callable[..., int], *args: object) -> Event:
        fn(*args)
        [ev] = self.pump()
        return ev


def make_meter(state: Path, clock: FixedClock, on_push: Callable[[bytes], None]) -> Meter:
    return Meter(
        MeterIdentity.from_serial(4242),
        clock=clock,
        unicast_key=SecretKey.from_hex(EK_HEX),
        authentication_key=SecretKey.from_hex(AK_HEX),
        master_key=KEK,
        state_dir=state,
        on_push=on_push,
    )


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    clock = FixedClock(START)
    pushes: list[bytes] = []
    meter = make_meter(tmp_path / "state", clock, pushes.append)
    return Bench(meter, clock, tmp_path / "state", pushes)
