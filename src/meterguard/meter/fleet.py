"""Many meters in one process, compact at rest, on accelerated time (`meterguard fleet run`).

A :class:`Fleet` keeps every meter as one row of a few numpy arrays — serial,
keys, invocation counter and its persisted ceiling, metrology position,
alarm register and the fraud log's chain head — about 170 bytes a meter, so a
hundred thousand meters fit in one process. Each meter has its own keys
(CSPRNG), system title (``MGD`` + serial) and household seed.

:meth:`Fleet.step` moves every meter to a new simulated time and emits, for
each 15-minute boundary crossed, a load-profile entry as a DataNotification
protected with *that meter's* keys and a fresh counter (general-glo), exactly
what the meter would push. Counters are reserved in blocks and the fleet state
is saved (atomically) before any counter of a new block is used, so a
restarted fleet never reuses one (DM-6). :meth:`Fleet.tamper` logs, latches
and pushes an alarm the same way, and keeps it **pending** (TAMP-3) until the head-end
acknowledges it with a signed command (a write of the alarm's sequence to the
acknowledgement object, 0-0:96.50.0.255); :meth:`Fleet.resend_pending` pushes every pending
alarm again under a fresh counter, so an alarm lost on the way — throttled behind the meter's
own flood, or sent while the head-end was down — arrives in the end. Each meter holds at
most :data:`PENDING_SLOTS` pending alarms; a newer one takes the oldest's slot (the alarm
register keeps every bit latched regardless).

:meth:`Fleet.command` takes a signed command from the head-end
(:mod:`meterguard.cosem.command`): it verifies the command key's signature,
the recipient, a counter above the last one executed (persisted before acting)
and the GCM tag with the meter's keys; then it acts — the disconnect control's
relay (a disconnected meter records no consumption), the limiter's threshold,
the active tariff, a new unicast key (key_transfer, unwrapped under the meter's
master key and used from the push after the result) — and pushes the result.
A command that does not verify is refused, nothing changes, and the meter
pushes an alarm.

The fleet does no IO besides its state file; the CLI and transports decide
where pushes go.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from meterguard.analytics.household import EPOCH, HouseholdModel
from meterguard.analytics.theft.attacks import EVASIVE, MODELS, apply, draw
from meterguard.analytics.theft.attacks import model as model_of
from meterguard.clock import Clock
from meterguard.cosem.axdr import (
    Array,
    Data,
    DoubleLongUnsigned,
    OctetString,
    Structure,
)
from meterguard.cosem.command import (
    ALARM_ACK,
    IMPORT_REGISTER,
    SECURITY_SETUP,
    CommandResult,
    ControlState,
    open_command,
    result_body,
)
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.security import ApduProtector, CipheringKind, SecurityControl
from meterguard.cosem.xdlms import (
    ActionResult,
    DataAccessResult,
    DataNotification,
    decode_xdlms,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import VerifyingKey
from meterguard.crypto.keys import KeyId, SecretKey
from meterguard.crypto.keywrap import unwrap_key
from meterguard.errors import (
    ConfigurationError,
    CounterExhaustedError,
    DecodeError,
    KeyUnwrapError,
    ReplayError,
    SecurityError,
    SignatureInvalidError,
    UnexpectedSystemTitleError,
)
from meterguard.files import atomic_file
from meterguard.identity import system_title
from meterguard.meter.controls import command_model, execute
from meterguard.meter.device import Meter
from meterguard.meter.firmware import CommandedFirmware, FirmwareAgent
from meterguard.meter.logbook import EventCode, link
from meterguard.meter.objects import DataObject, Register, SecuritySetup
from meterguard.meter.rules import (
    ALARM_AUTHENTICATION_FAILURE,
    ALARM_DECRYPTION_FAILURE,
    ALARM_REPLAY,
    MeterIdentity,
    TamperKind,
    alarm_notification,
    seed_reading,
)

__all__ = ["Fleet", "FleetStats", "Push"]

PERIOD = dt.timedelta(minutes=15)
PENDING_SLOTS = 8
"""Unacknowledged alarms a meter keeps for re-sending (sequence, code, time each)."""
COUNTER_BLOCK = 4096
MINUTES = 1440
THEFT_MODELS = tuple(m for m in MODELS if m != "substitute")
"""Theft models a fleet meter can run (substitution needs another home's data)."""
FEEDER_NO_LOAD_W = 150.0
"""A distribution transformer's no-load loss."""
FEEDER_LOAD_LOSS = 3e-6
"""Load losses per Wh² in a quarter-hour (about 3% at 10 kWh a quarter-hour)."""
FLEET_FILE = "fleet.npz"

Push = Callable[[int, bytes], None]
"""Receives (meter index, protected APDU)."""


@dataclass
class FleetStats:
    """What one :meth:`Fleet.step` did."""

    meters: int = 0
    readings: int = 0
    alarms: int = 0


class Fleet:
    """N meters as compact records."""

    def __init__(
        self, arrays: dict[str, npt.NDArray[np.generic]], *, now: dt.datetime, path: Path | None
    ) -> None:
        self.a = arrays
        self.now = now
        self.path = path
        self.command_key: VerifyingKey | None = None
        self.headend_title = b""
        self._new_keys: dict[int, SecretKey] = {}
        """A key_transfer's unicast key, applied after the result is pushed under the old one."""
        self._agent_of: Callable[[int], FirmwareAgent] | None = None
        self._agents: dict[int, FirmwareAgent] = {}
        self._flows: dict[int, dict[int, float]] = {}
        """Feeder row -> slot end -> net Wh its homes drew (filled by homes, read by feeders)."""

    def trust_commands(self, command_key: VerifyingKey, headend_title: bytes) -> None:
        """Install the head-end's command key and system title (at manufacture, in every meter)."""
        self.command_key, self.headend_title = command_key, headend_title

    def use_firmware(self, agent_of: Callable[[int], FirmwareAgent]) -> None:
        """Give the meters their firmware agents, so commands reach image transfer (FW-14).

        An agent (a meter's flash, its update channel, its attestation key) is built on first use.
        """
        self._agent_of = agent_of

    def log_firmware(self, i: int, code: EventCode) -> None:
        """A firmware event of meter ``i`` (the compact record chains it into the fraud log)."""
        self._log_fraud(i, int(code))

    def firmware_alarm(self, i: int, bit: int, push: Push | None) -> None:
        """Meter ``i``'s update channel is stale: latch ``bit`` and push the alarm (FW-5)."""
        self._alarm(i, EventCode.FIRMWARE_CHANNEL_STALE, bit, push)

    def agent(self, i: int) -> FirmwareAgent | None:
        """Meter ``i``'s firmware agent, if the fleet has firmware."""
        if self._agent_of is None:
            return None
        got = self._agents.get(i)
        if got is None:
            got = self._agents[i] = self._agent_of(i)
            self.a["creep_w"][i] = int(got.running().manifest.settings["creep_threshold_w"])
        return got

    # ------------------------------------------------------------------ construction and state

    @classmethod
    def create(
        cls, meters: int, *, now: dt.datetime, path: Path | None = None, first_serial: int = 1
    ) -> Fleet:
        """A new fleet; keys come from the operating system's CSPRNG."""
        if meters < 1:
            raise ConfigurationError("a fleet needs at least one meter")
        serial = np.arange(first_serial, first_serial + meters, dtype=np.int64)
        keys = (
            np.frombuffer(secrets.token_bytes(48 * meters), dtype=np.uint8)
            .reshape(meters, 48)
            .copy()
        )
        start = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        arrays: dict[str, npt.NDArray[np.generic]] = {
            "serial": serial,
            "keys": keys,  # EK | AK | KEK per meter
            "next_ic": np.ones(meters, dtype=np.uint32),
            "ceiling": np.zeros(meters, dtype=np.uint32),
            "import_wh": np.array([seed_reading(int(x)) for x in serial], dtype=np.float64),
            "export_wh": np.zeros(meters, dtype=np.float64),
            "last_period": np.full(meters, int(start.timestamp()), dtype=np.int64),
            "alarm": np.zeros(meters, dtype=np.uint32),
            "push_seq": np.zeros(meters, dtype=np.uint32),
            "fraud_seq": np.zeros(meters, dtype=np.uint32),
            "fraud_head": np.zeros((meters, 32), dtype=np.uint8),
        }
        _add_command_state(arrays, meters)
        _add_alarm_state(arrays, meters)
        _add_grid_state(arrays, meters)
        fleet = cls(arrays, now=start, path=path)
        fleet._reserve(np.arange(meters))
        return fleet

    @classmethod
    def load(cls, path: Path) -> Fleet:
        """Restore a fleet saved by :meth:`save`."""
        with np.load(path) as data:
            arrays = {k: data[k].copy() for k in data.files if k != "now"}
            now = dt.datetime.fromtimestamp(int(data["now"]), dt.UTC)
        _add_command_state(arrays, int(arrays["serial"].shape[0]))  # fleets saved before commands
        _add_alarm_state(arrays, int(arrays["serial"].shape[0]))
        _add_grid_state(arrays, int(arrays["serial"].shape[0]))
        # DM-6: resume every meter at its persisted ceiling; values reserved but unused are skipped.
        arrays["next_ic"] = arrays["ceiling"].copy()
        fleet = cls(arrays, now=now, path=path)
        fleet._reserve(np.arange(len(fleet)))
        return fleet

    @classmethod
    def open(cls, state_dir: Path, meters: int, *, now: dt.datetime) -> Fleet:
        """Load the fleet in ``state_dir`` or create one of ``meters`` meters there."""
        path = state_dir / FLEET_FILE
        if path.exists():
            fleet = cls.load(path)
            if len(fleet) != meters:
                raise ConfigurationError(f"{path} holds {len(fleet)} meters, not {meters}")
            return fleet
        state_dir.mkdir(parents=True, exist_ok=True)
        return cls.create(meters, now=now, path=path)

    def save(self) -> None:
        """Write the fleet state atomically (mode 0600: it holds the meters' keys)."""
        if self.path is None:
            return
        with atomic_file(self.path) as f:  # DM-6: the directory is fsynced too
            np.savez(f, now=np.int64(int(self.now.timestamp())), **self.a)  # type: ignore[arg-type]

    def _reserve(self, idx: npt.NDArray[np.int64], needed: npt.NDArray[np.int64] | int = 0) -> None:
        """Raise ceilings to cover ``needed`` more counters plus a block, and persist (DM-6).

        One save covers all meters in ``idx``; it happens before any new counter is used.
        """
        start = self.a["next_ic"][idx].astype(np.uint64) + np.asarray(needed, dtype=np.uint64)
        self.a["ceiling"][idx] = np.minimum(start + COUNTER_BLOCK, 0xFFFFFFFF)
        self.save()

    def __len__(self) -> int:
        return int(self.a["serial"].shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes the fleet's records occupy."""
        return sum(int(v.nbytes) for v in self.a.values())

    # ------------------------------------------------------------------ one meter's view

    def system_title(self, i: int) -> bytes:
        """``MGD`` + 5-byte serial (:func:`meterguard.identity.system_title`)."""
        return system_title(int(self.a["serial"][i]))

    def keys(self, i: int) -> tuple[SecretKey, SecretKey, SecretKey]:
        """(EK, AK, KEK) of meter ``i`` (for its head-end registration; never logged)."""
        raw = self.a["keys"][i].tobytes()
        return SecretKey(raw[:16]), SecretKey(raw[16:32]), SecretKey(raw[32:])

    def _issue(self, i: int) -> int:
        ic = int(self.a["next_ic"][i])
        if ic >= int(self.a["ceiling"][i]):
            self._reserve(np.array([i]))
        self.a["next_ic"][i] = ic + 1
        return ic

    def _protector(self, i: int) -> ApduProtector:
        ek, ak, _ = self.keys(i)
        return ApduProtector(
            key=GcmKey(ek),
            authentication_key=ak,
            system_title=self.system_title(i),
            security=SecurityControl(),
        )

    def _protect(
        self, i: int, notification: DataNotification, protector: ApduProtector | None = None
    ) -> bytes:
        protector = protector or self._protector(i)
        return protector.protect(notification.to_bytes(), self._issue(i), CipheringKind.GENERAL_GLO)

    def lend_counters(self, i: int, count: int) -> tuple[int, int]:
        """Set aside ``count`` invocation counters of meter ``i`` for another form of it.

        Returns the range ``(first, end)``; the fleet's own counters continue past ``end``,
        and the fleet state recording that is saved before this returns, so no counter is
        ever used by both (DM-6: an (ST, IC) pair is never reused under one key).

        Raises:
            CounterExhaustedError: not that many counters left under the meter's key.
        """
        first = max(int(self.a["next_ic"][i]), int(self.a["ceiling"][i]))
        end = first + count
        if end > 0xFFFFFFFF:
            raise CounterExhaustedError("not enough invocation counters left: renew the key")
        self.a["next_ic"][i] = end
        self._reserve(np.array([i]))
        return first, end

    def device(self, i: int, *, clock: Clock, state_dir: Path, counters: int = 1 << 20) -> Meter:
        """Meter ``i`` as the full DLMS/TCP device: the same identity, keys and consumption.

        The device gets a range of the meter's invocation counters of its own
        (:meth:`lend_counters`), its registers from the fleet's record (the same household
        model continues from them), and keeps its log books and the last client counter it
        accepted in ``state_dir`` across sessions. Serve it while the fleet itself is not
        running on the same state: what the device changes (its log books, its relay) stays
        in the device's state.
        """
        serial = int(self.a["serial"][i])
        ek, ak, kek = self.keys(i)
        last = dt.datetime.fromtimestamp(int(self.a["last_period"][i]), dt.UTC)
        day = HouseholdModel.for_meter(serial).day(last.date())
        minute = last.hour * 60 + last.minute  # the registers stand at the start of `last`
        position = (
            last.date(),
            float(self.a["import_wh"][i]) - float(day.import_wh[:minute].sum()),
            float(self.a["export_wh"][i]) - float(day.export_wh[:minute].sum()),
        )
        meter = Meter(
            MeterIdentity.from_serial(serial),
            clock=clock,
            unicast_key=ek,
            authentication_key=ak,
            master_key=kek,
            state_dir=state_dir,
            counters=self.lend_counters(i, counters),
            position=position,
        )
        # The fleet's record is the meter's truth: its relay, limiter and tariff as they stand.
        controls = _RowControls(self, i)
        meter.connected = controls.connected()
        meter.limit_w, meter.active_tariff = controls.limit_w(), controls.tariff()
        return meter

    # ------------------------------------------------------------------ simulation

    def step(
        self, until: dt.datetime, push: Push | None = None, *, per_push: int = 1
    ) -> FleetStats:
        """Advance every meter to ``until``, pushing its 15-minute load-profile entries.

        With ``per_push`` 1 each entry is one DataNotification (a structure); above 1, up
        to ``per_push`` consecutive entries travel as one array (a load-profile block), the
        last block of the step possibly shorter, so no entry is ever held back.
        """
        if not 1 <= per_push <= 96:
            raise ConfigurationError("a push carries 1 to 96 load-profile entries")
        stats = FleetStats(meters=len(self))
        # Reserve every counter this step will use in one save, instead of one whole-fleet
        # save per meter that crosses its ceiling while stepping.
        period = int(PERIOD.total_seconds())
        needed = -(
            -(np.maximum(int(until.timestamp()) - self.a["last_period"], 0) // period) // per_push
        )
        short = np.nonzero(
            self.a["next_ic"].astype(np.int64) + needed > self.a["ceiling"].astype(np.int64)
        )[0]
        if short.size:
            self._reserve(short, needed[short])
        homes_first = np.argsort(self.a["is_feeder"], kind="stable")  # feeders measure the homes
        for i in homes_first.tolist():
            stats.readings += self._step_meter(i, until, push, per_push)
        self.now = max(self.now, until)
        self.save()
        return stats

    def _day_slots(
        self, i: int, household: HouseholdModel, day: dt.date
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(drawn, registered, exported) Wh in each of the day's 96 quarter-hours for home ``i``.

        Drawn is what flowed (the limiter's cap applied; a vacation at base load); registered
        is what the meter counts: the drawn energy above the firmware's no-load threshold, or,
        for a meter made a thief, what its theft model reports (ground truth stays in drawn).
        """
        start = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
        away = int(self.a["away_until"][i])
        d = household.day(day)
        minutes = d.import_wh
        if away > start:  # a vacation: nobody home (fridge, standby, frost protection)
            vacant = household.day(day, away=True).import_wh
            cut = min(MINUTES, int((away - start) // 60))
            minutes = np.concatenate([vacant[:cut], minutes[cut:]])
        cap = int(self.a["limit_w"][i]) / 4
        drawn = minutes.reshape(96, 15).sum(axis=1)
        if cap:
            drawn = np.minimum(drawn, cap)
        creep = int(self.a["creep_w"][i])
        counted = np.where(minutes * 60.0 >= creep, minutes, 0.0) if creep else minutes
        registered = counted.reshape(96, 15).sum(axis=1)
        if cap:
            registered = np.minimum(registered, cap)
        theft = int(self.a["theft"][i])
        if theft and start + 86400 > int(self.a["theft_since"][i]):
            registered = self._stolen(i, household, day, drawn, registered)
        return drawn, registered, d.export_wh.reshape(96, 15).sum(axis=1)

    def _stolen(
        self,
        i: int,
        household: HouseholdModel,
        day: dt.date,
        drawn: npt.NDArray[np.float64],
        honest: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """What a thief's meter registers for ``day``: its model applied to what was drawn."""
        name = THEFT_MODELS[int(self.a["theft"][i]) - 1]
        seed = int(self.a["theft_seed"][i])
        since = int(self.a["theft_since"][i])
        params = draw(name, np.random.default_rng([seed, 0]), 96)
        rng = np.random.default_rng([seed, (day - EPOCH).days & 0xFFFFFFFF])
        history = None
        if name in EVASIVE:  # the attacker knows the meter's own recent days
            history = np.array(
                [
                    household.day(day - dt.timedelta(days=k)).import_wh.reshape(96, 15).sum(axis=1)
                    for k in range(7, 0, -1)
                ]
            )
        offset = max(0, (day - dt.datetime.fromtimestamp(since, dt.UTC).date()).days)
        stolen = apply(
            name, drawn[None, :], rng, params, history=history,
            offset=np.array([offset]), duration=60,
        )[0]  # fmt: skip
        # The theft begins at its moment: slots before it register honestly.
        start = dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()
        before = (start + np.arange(96) * 900 + 900) <= since
        return np.where(before, honest, stolen)

    def _step_meter(self, i: int, until: dt.datetime, push: Push | None, per_push: int) -> int:
        last = int(self.a["last_period"][i])
        end = int(until.timestamp())
        step = int(PERIOD.total_seconds())
        if end - last < step:
            return 0
        feeder_row = bool(self.a["is_feeder"][i])
        household = HouseholdModel.for_meter(int(self.a["serial"][i]))
        connected = int(self.a["relay"][i]) == ControlState.CONNECTED
        protector = self._protector(i) if push is not None else None
        count = 0
        imp, exp = float(self.a["import_wh"][i]), float(self.a["export_wh"][i])
        true_wh = float(self.a["true_wh"][i])
        feeder = int(self.a["feeder"][i])
        flows = self._flows.setdefault(feeder, {}) if feeder >= 0 else None
        day_cache: dict[dt.date, tuple[npt.NDArray[np.float64], ...]] = {}
        t = last
        block: list[Structure] = []
        while t + step <= end:
            start = dt.datetime.fromtimestamp(t, dt.UTC)
            slot = (start.hour * 60 + start.minute) // 15
            if feeder_row:  # the feeder meter: what its homes drew, plus the losses
                net = self._feeder_energy(i, t + step)
                imp += max(net, 0.0)
                exp += max(-net, 0.0)
                true_wh += max(net, 0.0)
            elif connected:  # a disconnected relay: nothing flows, the registers stand still
                series = day_cache.get(start.date())
                if series is None:
                    series = self._day_slots(i, household, start.date())
                    day_cache = {start.date(): series}
                drawn, registered, exported = (float(a[slot]) for a in series)
                imp += registered
                exp += exported
                true_wh += drawn
                if flows is not None:
                    flows[t + step] = flows.get(t + step, 0.0) + drawn - exported
            t += step
            stamp = CosemDateTime.from_datetime(dt.datetime.fromtimestamp(t, dt.UTC))
            if push is not None:
                block.append(
                    Structure(
                        (
                            OctetString(stamp.to_bytes()),
                            DoubleLongUnsigned(int(imp) & 0xFFFFFFFF),
                            DoubleLongUnsigned(int(exp) & 0xFFFFFFFF),
                        )
                    )
                )
                if len(block) == per_push or t + step > end:
                    body: Structure | Array = block[0] if per_push == 1 else Array(tuple(block))
                    note = DataNotification(0x00000001, stamp, body)
                    push(i, self._protect(i, note, protector))
                    block = []
            count += 1
        self.a["import_wh"][i], self.a["export_wh"][i], self.a["last_period"][i] = imp, exp, t
        self.a["true_wh"][i] = true_wh
        return count

    def _feeder_energy(self, i: int, slot_end: int) -> float:
        """Net Wh through feeder meter ``i`` in the slot ending at ``slot_end``.

        The homes' net draw, plus the transformer's no-load loss and the load losses (r·E²),
        plus the feeder meter's own measurement noise (0.2%, accuracy class 0.5).
        """
        homes = self._flows.get(i, {}).pop(slot_end, 0.0)
        rng = np.random.default_rng([int(self.a["serial"][i]), slot_end])
        loss = (FEEDER_NO_LOAD_W / 4 + FEEDER_LOAD_LOSS * homes * homes) if homes else 0.0
        return homes + loss + float(rng.normal(0.0, 0.002)) * abs(homes)

    # ------------------------------------------------------------------ the grid, theft

    def use_grid(self, homes_per_feeder: int = 20) -> list[int]:
        """Make the last meters feeder meters, each measuring the homes before it (once).

        With ``n`` meters, ``ceil(n / (homes_per_feeder + 1))`` of them are feeder meters
        (the last rows); home ``k`` is behind feeder ``k // homes_per_feeder``. A fleet of
        fewer than three meters has no grid. Returns the feeder rows. A fleet that already
        has its grid keeps it.
        """
        rows = [int(r) for r in np.flatnonzero(self.a["is_feeder"])]
        if rows or len(self) < 3:
            return rows
        n = len(self)
        feeders = -(-n // (homes_per_feeder + 1))
        homes = n - feeders
        first = homes
        for k in range(homes):
            self.a["feeder"][k] = first + min(k // homes_per_feeder, feeders - 1)
        self.a["is_feeder"][first:] = 1
        self.save()
        return list(range(first, n))

    def feeder_of(self, i: int) -> int | None:
        """The feeder meter row home ``i`` is behind, if any."""
        f = int(self.a["feeder"][i])
        return f if f >= 0 else None

    def steal(
        self,
        i: int,
        model: str,
        *,
        seed: int,
        evidence: float = 0.0,
        push: Push | None = None,
        since: dt.datetime | None = None,
    ) -> bool:
        """Make home ``i`` a thief: from ``since`` (default: now) it registers per ``model``.

        With probability ``evidence`` the theft leaves evidence in the meter's logs (§3.1.5):
        a physical model (a shunt, a bypass, a magnet) fires the terminal-cover or the DC-field
        sensor, the others (the data or the firmware attacked) an authentication-failure
        event, pushed through ``push``. Returns whether it left any. Everything is checked
        before anything changes.

        Raises:
            ConfigurationError: an unknown model, one the fleet cannot simulate (substitution
                needs another home's data), a feeder meter, or ``evidence`` outside [0, 1].
        """
        model_of(model)
        if model not in THEFT_MODELS:
            raise ConfigurationError(f"the fleet does not simulate {model!r}")
        if bool(self.a["is_feeder"][i]):
            raise ConfigurationError("a feeder meter is the utility's own: it does not steal")
        if not 0.0 <= evidence <= 1.0:
            raise ConfigurationError("evidence is a probability, 0 to 1")
        self.a["theft"][i] = THEFT_MODELS.index(model) + 1
        self.a["theft_seed"][i] = seed
        self.a["theft_since"][i] = int((since or self.now).timestamp())
        self.save()
        return self._theft_evidence(i, model, evidence, seed=seed, push=push)

    def _theft_evidence(
        self, i: int, name: str, probability: float, *, seed: int, push: Push | None
    ) -> bool:
        rng = np.random.default_rng([seed, 0xE71D])
        if rng.random() >= probability:
            return False
        if MODELS[name].kind == "physical":
            sensors = (TamperKind.TERMINAL_COVER_OPEN, TamperKind.MAGNETIC_FIELD)
            self.tamper(i, sensors[int(rng.integers(0, 2))], push)
        else:
            self._alarm(i, EventCode.AUTHENTICATION_FAILURE, ALARM_AUTHENTICATION_FAILURE, push)
        return True

    def stop_stealing(self, i: int) -> None:
        """Home ``i`` registers honestly again."""
        self.a["theft"][i] = 0
        self.save()

    def theft(self, i: int) -> str | None:
        """Home ``i``'s theft model (ground truth), or None."""
        k = int(self.a["theft"][i])
        return THEFT_MODELS[k - 1] if k else None

    def vacation(self, i: int, days: float) -> None:
        """Home ``i``'s people are away for ``days`` from now: nobody home, base load only.

        Raises:
            ConfigurationError: not more than 0 and at most 60 days.
        """
        if not 0 < days <= 60:
            raise ConfigurationError("a vacation lasts more than 0 and at most 60 days")
        self.a["away_until"][i] = int((self.now + dt.timedelta(days=days)).timestamp())
        self.save()

    def tamper(self, i: int, kind: TamperKind, push: Push | None = None) -> int:
        """A sensor fired on meter ``i``: chain the fraud log, latch the alarm, push it."""
        seq = self._log_fraud(i, kind.code)
        self._alarm(i, kind.code, kind.bit, push)
        return seq

    def _log_fraud(self, i: int, code: int) -> int:
        """Append to meter ``i``'s fraud log (the compact record keeps the chain's head)."""
        seq = int(self.a["fraud_seq"][i]) + 1
        head = link(self.a["fraud_head"][i].tobytes(), seq, int(self.now.timestamp()), int(code))
        self.a["fraud_seq"][i] = seq
        self.a["fraud_head"][i] = np.frombuffer(head, dtype=np.uint8)
        return seq

    def _alarm(self, i: int, code: int, bit: int, push: Push | None) -> None:
        """Latch ``bit``, keep the alarm pending (TAMP-3) and push it (sequence, code, time)."""
        self.a["alarm"][i] |= np.uint32(1 << bit)
        self.a["push_seq"][i] += 1
        seq, at = int(self.a["push_seq"][i]), int(self.now.timestamp())
        slots = self.a["pending"][i]
        slots[int(np.argmin(slots[:, 0]))] = (seq, int(code), at)  # a free slot, or the oldest
        if push is not None:
            push(i, self._protect(i, self._alarm_note(i, seq, int(code), at)))

    def _alarm_note(self, i: int, seq: int, code: int, at: int) -> DataNotification:
        serial = f"{int(self.a['serial'][i]):010d}"
        return alarm_notification(serial, seq, code, dt.datetime.fromtimestamp(at, dt.UTC))

    def pending_alarms(self, i: int) -> list[int]:
        """Sequences of meter ``i``'s alarms the head-end has not acknowledged, oldest first."""
        return sorted(int(s) for s in self.a["pending"][i][:, 0] if s)

    def resend_pending(self, push: Push) -> int:
        """Push every pending alarm of every meter again, each under a fresh counter (TAMP-3).

        Returns how many were pushed. The head-end stores an alarm once per (meter, sequence)
        and acknowledges it again, so a re-send that crosses an acknowledgement is harmless.
        """
        sent = 0
        for i in np.flatnonzero(self.a["pending"][:, :, 0].any(axis=1)):
            for seq, code, at in sorted(map(tuple, self.a["pending"][int(i)].tolist())):
                if seq:
                    push(int(i), self._protect(int(i), self._alarm_note(int(i), seq, code, at)))
                    sent += 1
        return sent

    def _acknowledge(self, i: int, value: Data) -> DataAccessResult:
        """The acknowledgement object's write: an array of sequences the head-end stored."""
        if not isinstance(value, Array) or not all(
            isinstance(v, DoubleLongUnsigned) for v in value.items
        ):
            return DataAccessResult.TYPE_UNMATCHED
        acked = {v.value for v in value.items if isinstance(v, DoubleLongUnsigned)}
        slots = self.a["pending"][i]
        for k in range(PENDING_SLOTS):
            if int(slots[k, 0]) in acked:
                slots[k] = 0
        return DataAccessResult.SUCCESS

    # ------------------------------------------------------------------ commands, API-10

    def command(
        self,
        i: int,
        unverified_envelope: bytes,
        *,
        result: Push | None = None,
        alarm: Push | None = None,
    ) -> CommandResult | None:
        """Verify and execute one command for meter ``i``; push the result, or alarm.

        Returns the result, or None for a refused command (nothing changed; the alarm —
        replay, authentication or decryption failure — was pushed through ``alarm``).
        """
        if self.command_key is None:
            raise ConfigurationError("this fleet trusts no command key")
        ek, ak, _ = self.keys(i)
        try:
            opened = open_command(
                unverified_envelope,
                command_key=self.command_key,
                headend_title=self.headend_title,
                meter_title=self.system_title(i),
                unicast_key=ek,
                authentication_key=ak,
                last_counter=int(self.a["cmd_counter"][i]),
            )
        except ReplayError:
            self._alarm(i, EventCode.REPLAY_ATTACK, ALARM_REPLAY, alarm)
            return None
        except (SignatureInvalidError, UnexpectedSystemTitleError):
            self._alarm(i, EventCode.AUTHENTICATION_FAILURE, ALARM_AUTHENTICATION_FAILURE, alarm)
            return None
        except (SecurityError, DecodeError):
            self._alarm(
                i, EventCode.DECRYPTION_OR_AUTHENTICATION_FAILURE, ALARM_DECRYPTION_FAILURE, alarm
            )
            return None
        # Write-ahead: the counter is persisted before the command acts, so a crash in between
        # can never let the same command act twice.
        self.a["cmd_counter"][i] = opened.counter
        self.save()
        code, value = self._execute(i, opened.plain)
        self.save()  # what the command changed, before the meter says it did
        state = ControlState(int(self.a["relay"][i]))
        out = CommandResult(opened.counter, code, state, self.now, value)
        if result is not None:
            stamp = CosemDateTime.from_datetime(self.now)
            note = DataNotification(0x00000002, stamp, result_body(out))
            result(i, self._protect(i, note))
        new = self._new_keys.pop(i, None)
        if new is not None:  # DM-12: the new key applies once the answer has gone out
            self.a["keys"][i][:16] = np.frombuffer(new.expose_secret(), dtype=np.uint8)
            self.save()
        return out

    def _execute(self, i: int, plain: bytes) -> tuple[int, int | None]:
        """Apply a verified GET, ACTION or SET through the meter's COSEM objects.

        The same objects (:mod:`meterguard.meter.controls`) the DLMS/TCP device serves,
        bound to this meter's row: (DLMS result code, the value read or None).
        """
        try:
            request = decode_xdlms(plain)
        except DecodeError:
            return int(ActionResult.OTHER_REASON), None
        import_wh = Register(
            IMPORT_REGISTER,
            lambda: DoubleLongUnsigned(int(self.a["import_wh"][i]) & 0xFFFFFFFF),
            scaler=0,
            unit=30,
        )
        security = SecuritySetup(
            SECURITY_SETUP,
            policy=lambda: 0x6C,
            activate=lambda _policy: ActionResult.READ_WRITE_DENIED,
            suite=0,
            client_title=lambda: self.headend_title,
            server_title=self.system_title(i),
            key_transfer=lambda items: self._key_transfer(i, items),
        )
        acknowledgement = DataObject(
            ALARM_ACK,
            lambda: Array(tuple(DoubleLongUnsigned(s) for s in self.pending_alarms(i))),
            lambda value: self._acknowledge(i, value),
        )
        agent = self.agent(i)
        model = command_model(
            _RowControls(self, i),
            import_wh=import_wh,
            security=security,
            acknowledgement=acknowledgement,
            firmware=_RowFirmware(self, i, agent) if agent is not None else None,
        )
        code, value = execute(model, request)
        return code, value.value if isinstance(value, DoubleLongUnsigned) else None

    def _key_transfer(self, i: int, items: list[tuple[int, bytes]]) -> ActionResult:
        """Unwrap a new global unicast key under meter ``i``'s master key (all or nothing).

        The compact record holds one unicast key: a transfer of any other key is refused.
        """
        if len(items) != 1 or items[0][0] != int(KeyId.GLOBAL_UNICAST):
            return ActionResult.TYPE_UNMATCHED
        _, _, kek = self.keys(i)
        try:
            key = unwrap_key(kek, items[0][1])
        except KeyUnwrapError:  # a wrap under another master key: tampering, as the device logs
            self._log_fraud(i, EventCode.DECRYPTION_OR_AUTHENTICATION_FAILURE)
            return ActionResult.OTHER_REASON
        if len(key) != 16:
            return ActionResult.OTHER_REASON
        self._new_keys[i] = key
        return ActionResult.SUCCESS

    def control_state(self, i: int) -> ControlState:
        """The disconnect control's state of meter ``i``."""
        return ControlState(int(self.a["relay"][i]))


class _RowControls:
    """:class:`~meterguard.meter.controls.Controls` over one row of the fleet's arrays."""

    def __init__(self, fleet: Fleet, i: int) -> None:
        self._a, self._i = fleet.a, i

    def connected(self) -> bool:
        return int(self._a["relay"][self._i]) == ControlState.CONNECTED

    def switch(self, connect: bool) -> None:
        state = ControlState.CONNECTED if connect else ControlState.DISCONNECTED
        self._a["relay"][self._i] = int(state)

    def limit_w(self) -> int:
        return int(self._a["limit_w"][self._i])

    def set_limit_w(self, watts: int) -> None:
        self._a["limit_w"][self._i] = watts

    def tariff(self) -> int:
        return int(self._a["tariff"][self._i])

    def set_tariff(self, tariff: int) -> None:
        self._a["tariff"][self._i] = tariff


class _RowFirmware(CommandedFirmware):
    """The firmware agent of one row: a confirmed image's settings apply to the row."""

    def __init__(self, fleet: Fleet, i: int, agent: FirmwareAgent) -> None:
        super().__init__(agent)
        self._a, self._i = fleet.a, i

    def activate(self, sha256: bytes) -> ActionResult:
        result = super().activate(sha256)
        settings = self.agent.running().manifest.settings
        self._a["creep_w"][self._i] = int(settings["creep_threshold_w"])
        return result


def _add_grid_state(arrays: dict[str, npt.NDArray[np.generic]], meters: int) -> None:
    """Feeders, theft (ground truth) and vacations, if a saved fleet lacks them."""
    defaults: dict[str, tuple[type[np.generic], int]] = {
        "feeder": (np.int32, -1),  # a home's feeder meter row
        "is_feeder": (np.uint8, 0),
        "theft": (np.uint8, 0),  # 1 + index in THEFT_MODELS
        "theft_seed": (np.uint64, 0),
        "theft_since": (np.int64, 0),
        "away_until": (np.int64, 0),
    }
    for name, (dtype, value) in defaults.items():
        if name not in arrays:
            arrays[name] = np.full(meters, value, dtype=dtype)
    if "true_wh" not in arrays:  # what was really drawn, for evaluation (never pushed)
        arrays["true_wh"] = np.asarray(arrays["import_wh"], dtype=np.float64).copy()


def _add_alarm_state(arrays: dict[str, npt.NDArray[np.generic]], meters: int) -> None:
    """Pending alarm slots (sequence, code, time; sequence 0 is free), if a fleet lacks them."""
    if "pending" not in arrays:
        arrays["pending"] = np.zeros((meters, PENDING_SLOTS, 3), dtype=np.int64)


def _add_command_state(arrays: dict[str, npt.NDArray[np.generic]], meters: int) -> None:
    """Relay, command counter, limiter threshold and tariff, if a saved fleet lacks them."""
    defaults: dict[str, tuple[type[np.generic], int]] = {
        "relay": (np.uint8, int(ControlState.CONNECTED)),
        "cmd_counter": (np.uint64, 0),
        "limit_w": (np.uint32, 0),
        "tariff": (np.uint8, 1),
        "creep_w": (np.uint8, 0),  # the running image's no-load threshold (FW: by version)
    }
    for name, (dtype, value) in defaults.items():
        if name not in arrays:
            arrays[name] = np.full(meters, value, dtype=dtype)
