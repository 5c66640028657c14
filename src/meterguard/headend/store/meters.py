"""The meter registry's SQL: meters, their lifecycle state, and the registry version.

Every change to the registry (a meter added, a state changed) bumps ``registry_version``
in the same transaction, so a running worker in any process learns of a revocation with
one single-row read (PKI-5); the rules about which change is allowed live in
:mod:`meterguard.headend.services.meters`, not here.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError

from meterguard.errors import TransportError
from meterguard.headend.store.models import Meter, RegistryVersion

__all__ = ["MeterRepository"]


class MeterRepository:
    """Meters and their states over one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def __repr__(self) -> str:
        return "MeterRepository()"

    @staticmethod
    def _bump(conn: Connection) -> None:
        conn.execute(
            update(RegistryVersion)
            .where(RegistryVersion.id == 1)
            .values(version=RegistryVersion.version + 1)
        )

    def add_meter(self, meter_id: str, *, serial: str, system_title: bytes, now: int) -> bool:
        """Register a meter (idempotent); True if it was new."""
        stmt = (
            self._insert(Meter)
            .values(
                id=meter_id,
                serial=serial,
                system_title=system_title,
                state="active",
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
        with self.engine.begin() as conn:
            added = conn.execute(stmt).rowcount > 0
            if added:
                self._bump(conn)
        return added

    def meters(self) -> list[tuple[str, bytes, str]]:
        """(id, system title, state) of every meter."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Meter.id, Meter.system_title, Meter.state)).all()
        return [(a, b, c) for a, b, c in rows]

    def state(self, meter_id: str) -> str | None:
        """A meter's state, or None if there is no such meter."""
        with self.engine.connect() as conn:
            return conn.execute(select(Meter.state).where(Meter.id == meter_id)).scalar()

    def set_state(self, meter_id: str, state: str, *, expect: frozenset[str]) -> bool:
        """Move a meter to ``state`` if its state is one of ``expect``; True if it moved.

        The check and the change are one statement, so two concurrent changes cannot both
        pass a check made before either wrote.
        """
        with self.engine.begin() as conn:
            moved = (
                conn.execute(
                    update(Meter)
                    .where(Meter.id == meter_id, Meter.state.in_(sorted(expect)))
                    .values(state=state)
                ).rowcount
                > 0
            )
            if moved:
                self._bump(conn)
        return moved

    def version(self) -> int:
        """The registry's version: it changes whenever a meter is added or changes state.

        Raises:
            TransportError: the database cannot be reached.
        """
        try:
            with self.engine.connect() as conn:
                return int(conn.execute(_VERSION).scalar_one())
        except (OperationalError, InterfaceError) as exc:
            raise TransportError("the database is unreachable") from exc

    def snapshot(self) -> tuple[int, dict[str, str]]:
        """(version, meter id → state), read in one transaction.

        Raises:
            TransportError: the database cannot be reached.
        """
        try:
            with self.engine.begin() as conn:
                version = conn.execute(_VERSION).scalar_one()
                states = {str(m): str(st) for m, st in conn.execute(select(Meter.id, Meter.state))}
        except (OperationalError, InterfaceError) as exc:
            raise TransportError("the database is unreachable") from exc
        return int(version), states


_VERSION = select(RegistryVersion.version).where(RegistryVersion.id == 1)
