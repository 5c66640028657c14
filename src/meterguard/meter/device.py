"""One simulated smart meter: identity, keys, counters, metrology, objects, tamper, persistence.

:class:`Meter` wires the COSEM object model (:mod:`.objects`, :mod:`.model`)
to the household model (:mod:`meterguard.analytics.household`), the log books (:mod:`.logbook`)
and the security state, and hands out sans-IO
:class:`~meterguard.cosem.connection.ServerConnection` objects for transports to drive.

What it guarantees:

* **Counters (DM-6)**: its own invocation counter is reserved in blocks and
  persisted *before* use, so a restarted meter never reuses one; the last
  client counter accepted is persisted the same way (write-ahead mark), so a
  replay after a restart is refused too. Object 0.0.43.1.0.255 publishes it
  for counter bootstrap (DH-1).
* **Keys (DM-12)**: key_transfer unwraps every key under the master key first
  and applies them only after the ACTION response is protected and queued, all
  or nothing; a wrong KEK changes nothing and answers an action error.
* **Tamper (TAMP-1…3)**: every sensor event is written to the hash-chained
  fraud log, latched in the alarm register until an authorised role clears
  it, and pushed as a protected DataNotification; pushes stay pending, and
  persisted, until the head-end acknowledges them.
* **Persistence**: everything above survives restarts; the state file is
  written atomically.

Time comes from an injected :class:`~meterguard.clock.Clock` plus the meter's
own clock offset (set through the Clock object); the meter never reads the
system clock itself.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meterguard.analytics.household import MINUTES_PER_DAY, DaySeries, HouseholdModel
from meterguard.clock import Clock
from meterguard.cosem.acse import ApplicationContext, Mechanism
from meterguard.cosem.axdr import (
    Data,
    DoubleLongUnsigned,
    LongUnsigned,
    OctetString,
    Unsigned,
)
from meterguard.cosem.connection import (
    AssociationPolicy,
    RequestContext,
    SecurityMaterial,
    ServerConnection,
    ServerSettings,
)
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.counters import MAX_COUNTER, ReceiveCounter, SendCounter
from meterguard.cosem.security import ApduProtector, CipheringKind, SecurityControl
from meterguard.cosem.xdlms import (
    ActionResult,
    ActionReturn,
    DataAccessResult,
    DataNotification,
    MethodDescriptor,
)
from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keywrap import unwrap_key
from meterguard.errors import ConfigurationError, KeyUnwrapError, ReplayError, SecurityError
from meterguard.meter.device_model import build_model
from meterguard.meter.logbook import EventCode, LogBook
from meterguard.meter.objects import (
    SecuritySetup,
)
from meterguard.meter.rules import (
    ALARM_AUTHENTICATION_FAILURE,
    ALARM_DECRYPTION_FAILURE,
    ALARM_REPLAY,
    DAILY_PROFILE_DAYS,
    LOAD_PROFILE_DAYS,
    LOAD_PROFILE_PERIOD,
    LOG_BOOKS,
    MANAGEMENT,
    OBIS,
    PUBLIC,
    MeterIdentity,
    TamperKind,
    alarm_notification,
    seed_reading,
)
from meterguard.meter.state import STATE_FILE, load_state, write_atomic

__all__ = ["OBIS", "Meter", "MeterIdentity", "TamperKind"]  # the rules' names, re-exported

log = logging.getLogger(__name__)

COUNTER_BLOCK = 64


def _unix(t: dt.datetime) -> int:
    return int(t.timestamp())


class Meter:
    """A complete simulated meter; one instance per device."""

    def __init__(
        self,
        identity: MeterIdentity,
        *,
        clock: Clock,
        unicast_key: SecretKey,
        authentication_key: SecretKey,
        master_key: SecretKey,
        state_dir: Path | None = None,
        on_push: Callable[[bytes], None] | None = None,
        household: HouseholdModel | None = None,
        counters: tuple[int, int] | None = None,
        position: tuple[dt.date, float, float] | None = None,
    ) -> None:
        """Build the meter (its state from ``state_dir`` if there is one).

        ``counters`` (first, end) bounds this meter's own invocation counters when another
        form of the same meter (the fleet) lends it that range under the same key (DM-6);
        ``position`` (day, import Wh, export Wh at its start) sets the registers of a new
        state from that other form, so both show the same consumption.
        """
        if len(identity.system_title) != 8:
            raise ConfigurationError("system title must be 8 bytes")
        self.identity = identity
        self.clock = clock
        self.state_dir = state_dir
        self.on_push = on_push
        self.household = household or HouseholdModel.for_meter(identity.seed)
        self.master_key = master_key
        self.clock_offset = 0.0
        self.connected = True
        self.limit_w = 0
        self.active_tariff = 1
        self.supply_on = True
        self.policy = 0x6C  # authenticated + encrypted requests and responses (security setup v1)
        self.alarm_register = 0
        self.pending_alarms: list[dict[str, Any]] = []
        self.push_sequence = 0
        self.logbooks = {name: LogBook(name) for name in LOG_BOOKS}
        self._pending_keys: dict[int, SecretKey] | None = None
        self._day_cache: dict[dt.date, DaySeries] = {}
        self._send_ceiling = 1
        self._counter_end = MAX_COUNTER + 1
        self._client_mark = 0
        now = self.clock.now()
        self.install_day = now.date() - dt.timedelta(days=40)
        self.position_day = self.install_day
        self.position_import_wh = float(seed_reading(identity.seed))  # Wh already on the register
        self.position_export_wh = 0.0
        if position is not None:
            self.position_day, self.position_import_wh, self.position_export_wh = position
        self.material = SecurityMaterial(
            system_title=identity.system_title,
            unicast_key=unicast_key,
            authentication_key=authentication_key,
        )
        self._load()
        if counters is not None:
            # Never below the lent range, never past it: the rest is the other form's.
            self._send_ceiling = max(self._send_ceiling, counters[0])
            self._counter_end = counters[1]
        self.material.send_counter = SendCounter(
            self._send_ceiling,
            reserve=self._reserve_send,
            block=COUNTER_BLOCK,
            end=self._counter_end,
        )
        self.material.peer_counter = ReceiveCounter(
            self._client_mark or None, on_commit=self._client_committed
        )
        self.model = build_model(self)
        self._save()

    # ------------------------------------------------------------------ persistence

    @property
    def _state_path(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / STATE_FILE

    def _load(self) -> None:
        path = self._state_path
        state = None if path is None else load_state(path)
        if state is None:
            return
        if state.get("serial") != self.identity.serial:
            raise ConfigurationError("state directory belongs to another meter")
        keys = state["keys"]
        self.material.unicast_key = SecretKey.from_hex(keys["ek"])
        self.material.authentication_key = SecretKey.from_hex(keys["ak"])
        self.master_key = SecretKey.from_hex(keys["kek"])
        if keys.get("bk"):
            self.material.broadcast_key = SecretKey.from_hex(keys["bk"])
        self._send_ceiling = int(state["send_ceiling"])
        self._client_mark = int(state["client_mark"])
        self.clock_offset = float(state["clock_offset"])
        self.connected = bool(state["connected"])
        self.limit_w = int(state.get("limit_w", 0))  # states written before the limiter: none
        self.active_tariff = int(state.get("tariff", 1))
        self.policy = int(state["policy"])
        self.alarm_register = int(state["alarm_register"])
        self.pending_alarms = list(state["pending_alarms"])
        self.push_sequence = int(state["push_sequence"])
        self.install_day = dt.date.fromisoformat(state["install_day"])
        self.position_day = dt.date.fromisoformat(state["position"]["day"])
        self.position_import_wh = float(state["position"]["import_wh"])
        self.position_export_wh = float(state["position"]["export_wh"])
        for name, book in state["logbooks"].items():
            restored = LogBook.from_state(name, book)
            if not restored.verify():
                raise ConfigurationError(f"log book {name} fails its hash chain: state was altered")
            self.logbooks[name] = restored

    def state(self) -> dict[str, Any]:
        """The persistent state as a JSON-ready dict (includes keys: device NVM only)."""
        m = self.material
        assert m.unicast_key is not None and m.authentication_key is not None  # noqa: S101
        return {
            "version": 1,
            "serial": self.identity.serial,
            "system_title": self.identity.system_title.hex(),
            "seed": self.identity.seed,
            "keys": {
                "ek": m.unicast_key.expose_secret().hex(),
                "ak": m.authentication_key.expose_secret().hex(),
                "kek": self.master_key.expose_secret().hex(),
                "bk": None if m.broadcast_key is None else m.broadcast_key.expose_secret().hex(),
            },
            "send_ceiling": self._send_ceiling,
            "client_mark": self._client_mark,
            "clock_offset": self.clock_offset,
            "connected": self.connected,
            "limit_w": self.limit_w,
            "tariff": self.active_tariff,
            "policy": self.policy,
            "alarm_register": self.alarm_register,
            "pending_alarms": self.pending_alarms,
            "push_sequence": self.push_sequence,
            "install_day": self.install_day.isoformat(),
            "position": {
                "day": self.position_day.isoformat(),
                "import_wh": self.position_import_wh,
                "export_wh": self.position_export_wh,
            },
            "logbooks": {name: book.to_state() for name, book in self.logbooks.items()},
        }

    def _save(self) -> None:
        path = self._state_path
        if path is not None:
            write_atomic(path, self.state())

    def _reserve_send(self, ceiling: int) -> None:
        # DM-6: persisted before any counter below it is used.
        self._send_ceiling = ceiling
        self._save()

    def _client_committed(self, value: int) -> None:
        if value >= self._client_mark:
            self._client_mark = value + COUNTER_BLOCK
            self._save()

    def __repr__(self) -> str:
        return f"Meter({self.identity.serial}, st={self.identity.system_title.hex()})"

    # ------------------------------------------------------------------ time and metrology

    def now(self) -> dt.datetime:
        """The meter's own clock: the injected clock plus its offset."""
        return self.clock.now() + dt.timedelta(seconds=self.clock_offset)

    def _series(self, day: dt.date) -> DaySeries:
        cached = self._day_cache.get(day)
        if cached is None:
            cached = self.household.day(day)
            if len(self._day_cache) > LOAD_PROFILE_DAYS + 2:
                self._day_cache.clear()
            self._day_cache[day] = cached
        return cached

    def _cumulative_at_day_start(self, day: dt.date) -> tuple[float, float]:
        imp, exp, d = self.position_import_wh, self.position_export_wh, self.position_day
        while d < day:
            s = self._series(d)
            imp, exp, d = imp + s.import_total_wh, exp + s.export_total_wh, d + dt.timedelta(days=1)
        while d > day:
            d -= dt.timedelta(days=1)
            s = self._series(d)
            imp, exp = imp - s.import_total_wh, exp - s.export_total_wh
        return imp, exp

    def registers_at(self, t: dt.datetime) -> tuple[float, float]:
        """Cumulative active import and export energy (Wh) at ``t``."""
        day = t.date()
        imp, exp = self._cumulative_at_day_start(day)
        minute = min(MINUTES_PER_DAY, t.hour * 60 + t.minute)
        s = self._series(day)
        return imp + float(s.import_wh[:minute].sum()), exp + float(s.export_wh[:minute].sum())

    def advance(self) -> None:
        """Roll the persisted metrology position forward to today (registers never go back)."""
        today = self.now().date()
        if today > self.position_day:
            self.position_import_wh, self.position_export_wh = self._cumulative_at_day_start(today)
            self.position_day = today
            self._save()

    def _power_w(self) -> float:
        t = self.now()
        return (
            float(self._series(t.date()).import_wh[t.hour * 60 + t.minute] * 60.0)
            if self.connected
            else 0.0
        )

    # ------------------------------------------------------------------ profiles

    def _load_profile_rows(self) -> list[tuple[Data, ...]]:
        now = self.now()
        end = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        start = max(
            end - dt.timedelta(days=LOAD_PROFILE_DAYS) + dt.timedelta(seconds=LOAD_PROFILE_PERIOD),
            dt.datetime.combine(self.install_day, dt.time(), tzinfo=end.tzinfo),
        )
        rows: list[tuple[Data, ...]] = []
        t = start
        day = None
        imp = exp = 0.0
        series = None
        while t <= end:
            if t.date() != day:
                day = t.date()
                imp, exp = self._cumulative_at_day_start(day)
                series = self._series(day)
                cum_i = series.import_wh.cumsum()
                cum_e = series.export_wh.cumsum()
            minute = t.hour * 60 + t.minute
            i = imp + (float(cum_i[minute - 1]) if minute else 0.0)
            e = exp + (float(cum_e[minute - 1]) if minute else 0.0)
            rows.append(
                (
                    OctetString(CosemDateTime.from_datetime(t).to_bytes()),
                    Unsigned(0),
                    DoubleLongUnsigned(int(i) & 0xFFFFFFFF),
                    DoubleLongUnsigned(int(e) & 0xFFFFFFFF),
                )
            )
            t += dt.timedelta(seconds=LOAD_PROFILE_PERIOD)
        del series
        return rows

    def _daily_rows(self) -> list[tuple[Data, ...]]:
        today = self.now().date()
        first = max(self.install_day, today - dt.timedelta(days=DAILY_PROFILE_DAYS - 1))
        rows: list[tuple[Data, ...]] = []
        d = first
        while d <= today:
            imp, exp = self._cumulative_at_day_start(d)
            stamp = dt.datetime.combine(d, dt.time(), tzinfo=dt.UTC)
            rows.append(
                (
                    OctetString(CosemDateTime.from_datetime(stamp).to_bytes()),
                    DoubleLongUnsigned(int(imp) & 0xFFFFFFFF),
                    DoubleLongUnsigned(int(exp) & 0xFFFFFFFF),
                )
            )
            d += dt.timedelta(days=1)
        return rows

    def _log_rows(self, name: str) -> Callable[[], list[tuple[Data, ...]]]:
        def rows() -> list[tuple[Data, ...]]:
            return [
                (
                    OctetString(
                        CosemDateTime.from_datetime(
                            dt.datetime.fromtimestamp(e.time, dt.UTC)
                        ).to_bytes()
                    ),
                    LongUnsigned(e.code),
                    OctetString(e.chain_hash),
                )
                for e in self.logbooks[name].entries
            ]

        return rows

    # ------------------------------------------------------------------ events and tamper

    def log_event(self, book: str, code: EventCode) -> None:
        """Append to a log book and persist."""
        self.logbooks[book].append(_unix(self.now()), code)
        self._save()

    def tamper(self, kind: TamperKind) -> dict[str, Any]:
        """A sensor fired: fraud log, latched alarm, protected push (TAMP-1…3).

        Works with the supply off too (battery-backed sensors): the event is logged
        and the push stays pending until the supply and the link are back.
        """
        self.logbooks["fraud"].append(_unix(self.now()), kind.code)
        self.alarm_register |= 1 << kind.bit
        self.push_sequence += 1
        alarm = {
            "sequence": self.push_sequence,
            "kind": kind.label,
            "code": int(kind.code),
            "time": _unix(self.now()),
        }
        self.pending_alarms.append(alarm)
        self._save()
        if self.supply_on:
            self._push_alarm(alarm)
        return alarm

    def alarm_notification(self, alarm: dict[str, Any]) -> DataNotification:
        """The DataNotification for one alarm: serial, sequence, event code, time."""
        at = dt.datetime.fromtimestamp(alarm["time"], dt.UTC)
        return alarm_notification(self.identity.serial, alarm["sequence"], alarm["code"], at)

    def protect_push(self, notification: DataNotification) -> bytes:
        """Protect a push with the meter's keys and a fresh counter (general-glo)."""
        m = self.material
        protector = ApduProtector(
            key=m.unicast_gcm(),
            authentication_key=m.authentication_key,
            system_title=m.system_title,
            security=SecurityControl(),
        )
        return protector.protect(
            notification.to_bytes(), m.send_counter.issue(), CipheringKind.GENERAL_GLO
        )

    def _push_alarm(self, alarm: dict[str, Any]) -> None:
        if self.on_push is not None:
            self.on_push(self.protect_push(self.alarm_notification(alarm)))

    def resend_pending(self) -> int:
        """Push every unacknowledged alarm again (TAMP-3); returns how many."""
        if not self.supply_on:
            return 0
        for alarm in self.pending_alarms:
            self._push_alarm(alarm)
        return len(self.pending_alarms)

    def acknowledge(self, sequence: int) -> bool:
        """The head-end confirmed an alarm push."""
        before = len(self.pending_alarms)
        self.pending_alarms = [a for a in self.pending_alarms if a["sequence"] != sequence]
        if len(self.pending_alarms) != before:
            self._save()
            return True
        return False

    def power(self, *, on: bool) -> None:
        """Supply lost or restored: power-failure log; pending alarms re-sent on return."""
        if on == self.supply_on:
            return
        self.supply_on = on
        self.log_event("power-failure", EventCode.POWER_UP if on else EventCode.POWER_DOWN)
        if on:
            self.resend_pending()

    def record_security_event(self, error: SecurityError) -> None:
        """A DLMS security check failed on a connection: log and raise an alarm bit."""
        if isinstance(error, ReplayError):
            code, bit = EventCode.REPLAY_ATTACK, ALARM_REPLAY
        elif error.event in ("hls_authentication_failed", "insufficient_protection"):
            code, bit = EventCode.AUTHENTICATION_FAILURE, ALARM_AUTHENTICATION_FAILURE
        else:
            code, bit = EventCode.DECRYPTION_OR_AUTHENTICATION_FAILURE, ALARM_DECRYPTION_FAILURE
        self.alarm_register |= 1 << bit
        self.log_event("fraud", code)

    def _clear_alarms(self, value: Data) -> DataAccessResult:
        if not isinstance(value, DoubleLongUnsigned):
            return DataAccessResult.TYPE_UNMATCHED
        cleared = self.alarm_register & value.value
        if cleared:
            self.alarm_register &= ~value.value
            self.logbooks["fraud"].append(_unix(self.now()), EventCode.TAMPER_CLEARED)
            self._save()
        return DataAccessResult.SUCCESS

    # ------------------------------------------------------------------ commands

    def _adjust_clock(self, stamp: CosemDateTime) -> DataAccessResult:
        try:
            target = stamp.to_datetime()
        except ValueError:
            return DataAccessResult.TYPE_UNMATCHED
        self.clock_offset = (target - self.clock.now()).total_seconds()
        self.log_event("standard", EventCode.CLOCK_ADJUSTED)
        return DataAccessResult.SUCCESS

    def _switch(self, connect: bool) -> None:
        self.connected = connect
        self.log_event(
            "disconnector",
            EventCode.REMOTE_RECONNECTION if connect else EventCode.REMOTE_DISCONNECTION,
        )

    def _activate_policy(self, policy: int) -> ActionResult:
        # Green Book security_activate: the policy may only be strengthened.
        if policy & self.policy != self.policy:
            return ActionResult.READ_WRITE_DENIED
        self.policy = policy
        self._save()
        return ActionResult.SUCCESS

    def _key_transfer(self, items: list[tuple[int, bytes]]) -> ActionResult:
        # DM-12: unwrap everything under the current master key first: all or nothing.
        new: dict[int, SecretKey] = {}
        for key_id, wrapped in items:
            if key_id not in KeyId._value2member_map_:
                return ActionResult.OTHER_REASON
            try:
                new[key_id] = unwrap_key(self.master_key, wrapped)
            except KeyUnwrapError:
                self.log_event("fraud", EventCode.DECRYPTION_OR_AUTHENTICATION_FAILURE)
                return ActionResult.OTHER_REASON
            if len(new[key_id]) != 16:
                return ActionResult.OTHER_REASON
        self._pending_keys = new
        return ActionResult.SUCCESS

    def _after_action(
        self, ctx: RequestContext, method: MethodDescriptor, ret: ActionReturn
    ) -> None:
        if (
            method.class_id == SecuritySetup.CLASS_ID
            and method.method == 2
            and ret.result is ActionResult.SUCCESS
            and self._pending_keys is not None
        ):
            # Gurux's pattern: the new keys apply right after the ACTION response is sent.
            ctx.after_response(self._apply_pending_keys)

    def _apply_pending_keys(self) -> None:
        keys, self._pending_keys = self._pending_keys or {}, None
        m = self.material
        for key_id, key in keys.items():
            if key_id == KeyId.GLOBAL_UNICAST:
                m.unicast_key = key
                # A new key starts a new counter context for the client (DM-6 is per key).
                self._client_mark = 0
                m.peer_counter = ReceiveCounter(None, on_commit=self._client_committed)
            elif key_id == KeyId.GLOBAL_BROADCAST:
                m.broadcast_key = key
            elif key_id == KeyId.AUTHENTICATION:
                m.authentication_key = key
            elif key_id == KeyId.MASTER:
                self.master_key = key
        self.log_event("standard", EventCode.KEY_CHANGED)

    def _image_verified(self, identifier: bytes, digest: bytes) -> None:
        del identifier, digest
        self.log_event("firmware", EventCode.FIRMWARE_READY_FOR_ACTIVATION)

    # ------------------------------------------------------------------ object model

    # ------------------------------------------------------------------ connections

    def settings(self, *, max_receive_pdu_size: int = 1024) -> ServerSettings:
        """The logical device's associations: public (16) and management (1, HLS-GMAC)."""
        return ServerSettings(
            system_title=self.identity.system_title,
            associations={
                PUBLIC: AssociationPolicy(),
                MANAGEMENT: AssociationPolicy(
                    application_context=ApplicationContext.LN_CIPHERED,
                    mechanism=Mechanism.HLS_GMAC,
                    security=self.material,
                ),
            },
            max_receive_pdu_size=max_receive_pdu_size,
        )

    def connection(self, *, max_receive_pdu_size: int = 1024) -> ServerConnection:
        """A new server connection for one transport connection."""
        self.advance()
        return ServerConnection(
            self.settings(max_receive_pdu_size=max_receive_pdu_size), self.model
        )
