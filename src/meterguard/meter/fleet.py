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
and pushes an alarm the same way.

The fleet does no IO besides its state file; the CLI and transports decide
where pushes go.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from meterguard.cosem.axdr import Array, DoubleLongUnsigned, LongUnsigned, OctetString, Structure
from meterguard.cosem.cosemtime import CosemDateTime
from meterguard.cosem.security import ApduProtector, CipheringKind, SecurityControl
from meterguard.cosem.xdlms import DataNotification
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import ConfigurationError
from meterguard.meter.device import TamperKind
from meterguard.meter.metrology import HouseholdModel

__all__ = ["Fleet", "FleetStats", "Push"]

PERIOD = dt.timedelta(minutes=15)
COUNTER_BLOCK = 4096
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
            "import_wh": (1_000_000 + (serial * 7919) % 40_000_000).astype(np.float64),
            "export_wh": np.zeros(meters, dtype=np.float64),
            "last_period": np.full(meters, int(start.timestamp()), dtype=np.int64),
            "alarm": np.zeros(meters, dtype=np.uint32),
            "push_seq": np.zeros(meters, dtype=np.uint32),
            "fraud_seq": np.zeros(meters, dtype=np.uint32),
            "fraud_head": np.zeros((meters, 32), dtype=np.uint8),
        }
        fleet = cls(arrays, now=start, path=path)
        fleet._reserve(np.arange(meters))
        return fleet

    @classmethod
    def load(cls, path: Path) -> Fleet:
        """Restore a fleet saved by :meth:`save`."""
        with np.load(path) as data:
            arrays = {k: data[k].copy() for k in data.files if k != "now"}
            now = dt.datetime.fromtimestamp(int(data["now"]), dt.UTC)
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
        fd, tmp = tempfile.mkstemp(prefix=".fleet-", suffix=".npz", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, now=np.int64(int(self.now.timestamp())), **self.a)  # type: ignore[arg-type]
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
        """``MGD`` + 5-byte serial."""
        return b"MGD" + int(self.a["serial"][i]).to_bytes(5, "big")

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
        for i in range(len(self)):
            stats.readings += self._step_meter(i, until, push, per_push)
        self.now = max(self.now, until)
        self.save()
        return stats

    def _step_meter(self, i: int, until: dt.datetime, push: Push | None, per_push: int) -> int:
        last = int(self.a["last_period"][i])
        end = int(until.timestamp())
        step = int(PERIOD.total_seconds())
        if end - last < step:
            return 0
        household = HouseholdModel.for_meter(int(self.a["serial"][i]))
        protector = self._protector(i) if push is not None else None
        count = 0
        imp, exp = float(self.a["import_wh"][i]), float(self.a["export_wh"][i])
        day_cache: dict[dt.date, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        t = last
        block: list[Structure] = []
        while t + step <= end:
            start = dt.datetime.fromtimestamp(t, dt.UTC)
            series = day_cache.get(start.date())
            if series is None:
                d = household.day(start.date())
                series = (d.import_wh, d.export_wh)
                day_cache = {start.date(): series}
            m0 = start.hour * 60 + start.minute
            imp += float(series[0][m0 : m0 + 15].sum())
            exp += float(series[1][m0 : m0 + 15].sum())
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
        return count

    def tamper(self, i: int, kind: TamperKind, push: Push | None = None) -> int:
        """A sensor fired on meter ``i``: chain the fraud log, latch the alarm, push it."""
        when = int(self.now.timestamp())
        seq = int(self.a["fraud_seq"][i]) + 1
        head = hashlib.sha256(
            self.a["fraud_head"][i].tobytes()
            + seq.to_bytes(8, "big")
            + when.to_bytes(8, "big", signed=True)
            + int(kind.code).to_bytes(2, "big")
        ).digest()
        self.a["fraud_seq"][i] = seq
        self.a["fraud_head"][i] = np.frombuffer(head, dtype=np.uint8)
        self.a["alarm"][i] |= np.uint32(1 << kind.bit)
        self.a["push_seq"][i] += 1
        stamp = CosemDateTime.from_datetime(self.now)
        body = Structure(
            (
                OctetString(f"{int(self.a['serial'][i]):010d}".encode()),
                DoubleLongUnsigned(int(self.a["push_seq"][i])),
                LongUnsigned(int(kind.code)),
                OctetString(stamp.to_bytes()),
            )
        )
        if push is not None:
            push(i, self._protect(i, DataNotification(int(self.a["push_seq"][i]), stamp, body)))
        return seq
