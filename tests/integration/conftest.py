"""Integration fixtures: a real PKI and a real Mosquitto (started per test module on free ports)."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from meterguard.broker.process import ManagedBroker
from meterguard.crypto.pki.store import Pki
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import Store

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class World:
    pki: Pki
    broker: ManagedBroker
    base: Path
    services: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.pki.directory / "root" / "root.pem"

    def meter(self, serial: str, *, now: dt.datetime | None = None) -> tuple[Path, Path]:
        """Register and enrol a meter; return its certificate chain and key files."""
        return self.pki.enrol_meter(serial, self.base / serial, now=now or dt.datetime.now(dt.UTC))

    def service_client(self, name: str) -> tuple[Path, Path]:
        """Issue a service identity once per broker. Every issue reloads the broker, and a reload
        while a worker's persistent session is offline is what makes Mosquitto 2.0.11 expire the
        next client to connect a second later (ADR 11): tests that share a broker reuse theirs."""
        if name in self.services:
            return self.services[name]
        files = self.pki.issue_service_client(
            name, now=dt.datetime.now(dt.UTC), out=self.base / "svc"
        )
        self.broker.sync(self.pki)
        time.sleep(0.3)  # SIGHUP is asynchronous
        self.services[name] = files
        return files


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("world")
    now = dt.datetime.now(dt.UTC)
    pki = Pki.init(base / "pki", now=now)
    broker = ManagedBroker.prepare(base / "broker", pki, now=now)
    broker.start()
    yield World(pki, broker, base)
    broker.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    if request.param == "sqlite":
        yield Store(open_database(f"sqlite:///{tmp_path_factory.mktemp('db') / 'headend.db'}"))
        return
    name = f"mg_test_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    engine = open_database(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        yield Store(engine)
    finally:
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
