"""Data sharing with third parties: pseudonymised exports and differentially private aggregates.

Every rule of sharing lives here or in the consumption-data service it calls
(:mod:`meterguard.headend.services.usage`, which decides *whose* data may leave and logs
it in each consumer's access log); every entry point (API, CLI, demo) reaches it through
:class:`DataSharing`:

* **recipients** (research institutes, energy-service companies, the grid operator) are
  defined by a data-sharing role (:data:`~.usage.SHARING_ROLES`), each for one use;
* **exports** (PRIV-2): which meters, period, granularity, fields, how often pseudonyms
  rotate (a day, a week, a month) and optionally k-anonymous microaggregation. Only meters
  whose consumer consented to the recipient's use at that granularity or finer are in it;
  the others are counted as refused. Each meter gets a pseudonym of the recipient's own for
  each rotation period — HMAC-SHA256 in the key store, whose secret never leaves it — so
  two recipients, or two periods, cannot be joined on the pseudonym. The files (CSV and
  Parquet) and a manifest with their SHA-256 are written to the export's directory and the
  manifest is signed (ECDSA P-256): :func:`verify_export` checks a delivered export.
  Pseudonymised interval, hourly or daily data is **not anonymous**: the privacy evaluation
  (``meterguard analytics privacy-eval``) measures what it leaks, and the manifest says so;
* **DP aggregates**: a feeder's or the whole region's hourly load curve for one day, with
  OpenDP's noise (:mod:`meterguard.analytics.privacy.dp`); the cost in ε of each member's
  day is debited in the ledger in the same transaction as the release, and a release that
  would take any member's day beyond :data:`DP_BUDGET_DAY` is refused
  (:class:`~meterguard.errors.BudgetExceededError`). A repeated request returns the stored
  release and spends nothing (fresh noise for the same question would average away).
  Groups smaller than :data:`MIN_GROUP` homes are refused.

No SQL here (:mod:`meterguard.headend.store.sharing`), and no web framework.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from meterguard.analytics.privacy.defences import microaggregate
from meterguard.analytics.privacy.dp import DpPlan, clipped_sums, release
from meterguard.crypto.ecc import SigningKey, VerifyingKey
from meterguard.errors import (
    AccessDeniedError,
    BudgetExceededError,
    InvalidValueError,
    NotFoundError,
    SignatureInvalidError,
)
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.usage import (
    GRANULARITIES,
    RELEASE_ROLES,
    SHARING_ROLES,
    USES,
    ConsumptionData,
)
from meterguard.headend.store.sharing import (
    BudgetExhausted,
    ExportView,
    RecipientView,
    ReleaseView,
    SharingStore,
)

__all__ = [
    "DP_BUDGET_DAY",
    "FIELDS",
    "MANIFEST_DOMAIN",
    "MIN_GROUP",
    "NOT_ANONYMOUS",
    "ROTATIONS",
    "DataSharing",
    "ExportRequest",
    "verify_export",
]

DAY = 86400
FIELDS = ("import_wh", "export_wh")
ROTATIONS = ("day", "week", "month")
DP_BUDGET_DAY = 10.0
"""The most ε one consumer's day may spend over all releases (ANALYTICS.md §3.3: ε_day ≤ 10)."""
MIN_GROUP = 10
SETTLE = 3600
"""Seconds after a day's end before it may be released: late readings (meters' outboxes)
arrive first, and a release is stored and repeated, never recomputed."""
MIN_K = 10
"""The smallest microaggregation group offered (privacy-eval: k=5 fails the linking target)."""
MAX_SPAN_DAYS = 366
MAX_METERS = 100_000
MANIFEST_DOMAIN = b"meterguard-export-v1\n"
NOT_ANONYMOUS = (
    "pseudonymised, not anonymous: load curves can be linked across periods and to bills, "
    "and reveal occupancy (see meterguard analytics privacy-eval); share only under the "
    "consumers' consent for this use"
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
_MONDAY = 4 * DAY  # 1970-01-05 was a Monday


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export for a recipient."""

    recipient_id: int
    start: int
    end: int
    granularity: str = "day"
    rotation: str = "week"
    fields: tuple[str, ...] = ("import_wh",)
    k: int = 0
    """0: one row per pseudonymous meter; k ≥ 10: groups of at least k meters' means (k = 5
    let a linking attacker match 5% of daily groups to bills: not offered)."""
    meters: tuple[str, ...] | None = None
    """None: every meter the caller may see."""

    def check(self) -> None:
        """Raises InvalidValueError on anything out of range."""
        if self.granularity not in GRANULARITIES:
            raise InvalidValueError(f"granularity is one of {', '.join(GRANULARITIES)}")
        if self.rotation not in ROTATIONS:
            raise InvalidValueError(f"rotation is one of {', '.join(ROTATIONS)}")
        if not self.fields or any(f not in FIELDS for f in self.fields):
            raise InvalidValueError(f"fields are some of {', '.join(FIELDS)}")
        if not 0 <= self.start < self.end or self.end - self.start > MAX_SPAN_DAYS * DAY:
            raise InvalidValueError(f"the period must be 1 s to {MAX_SPAN_DAYS} days")
        if self.k and not MIN_K <= self.k <= 100:
            raise InvalidValueError(f"k is 0 (none) or {MIN_K} to 100")
        if self.meters is not None and not 0 < len(self.meters) <= MAX_METERS:
            raise InvalidValueError(f"1 to {MAX_METERS} meters")


def _period(ts: int, rotation: str) -> int:
    if rotation == "day":
        return ts // DAY
    if rotation == "week":
        return (ts - _MONDAY) // (7 * DAY)
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    return d.year * 12 + d.month - 1


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_export(directory: Path, key: VerifyingKey) -> dict[str, Any]:
    """Check a delivered export: the manifest's signature and every file's SHA-256.

    Returns the manifest.

    Raises:
        SignatureInvalidError: not signed by the export key, altered, or a file changed.
        NotFoundError: no manifest or a listed file is missing.
    """
    manifest_path, sig_path = directory / "manifest.json", directory / "manifest.sig"
    if not manifest_path.is_file() or not sig_path.is_file():
        raise NotFoundError(f"no signed manifest in {directory}")
    doc = json.loads(manifest_path.read_text())
    try:
        signature = bytes.fromhex(sig_path.read_text().strip())
    except ValueError:
        raise SignatureInvalidError("the manifest signature is not hex") from None
    key.verify(signature, MANIFEST_DOMAIN + _canonical(doc))
    for name, digest in doc["files"].items():
        path = directory / Path(name).name
        if not path.is_file():
            raise NotFoundError(f"{name} is listed in the manifest but missing")
        if _sha256(path) != digest:
            raise SignatureInvalidError(f"{name} differs from the signed manifest")
    return dict(doc)


class DataSharing:
    """Recipients, exports and DP releases."""

    def __init__(
        self,
        store: SharingStore,
        data: ConsumptionData,
        *,
        pseudonyms: Callable[[int, Sequence[tuple[int, str]]], list[str]],
        signing_key: SigningKey,
        out_dir: Path,
        meters: Callable[[Principal], list[str]],
        groups: Callable[[], dict[str, list[str]]] = dict,
        budget_day: float = DP_BUDGET_DAY,
    ) -> None:
        self._store, self._data, self._pseudonyms = store, data, pseudonyms
        self._key, self._out = signing_key, out_dir
        self._meters, self._groups, self.budget_day = meters, groups, budget_day
        self.verifying_key = signing_key.verifying_key()

    def __repr__(self) -> str:
        return f"DataSharing(out_dir={self._out})"

    @staticmethod
    def _may_share(who: Principal) -> None:
        if who.role not in SHARING_ROLES:
            raise AccessDeniedError(f"data sharing is not for the {who.role} role")

    # ------------------------------------------------------------------ recipients

    def add_recipient(self, who: Principal, name: str, use: str, *, now: int) -> int:
        """A new recipient for one use (audited); its id.

        Raises:
            AccessDeniedError: not a data-sharing role.
            InvalidValueError: a bad name or an unknown use.
            ConflictError: the name is taken.
        """
        self._may_share(who)
        if not _NAME.match(name):
            raise InvalidValueError("a recipient's name is 1-64 letters, digits, ' ._-'")
        if use not in USES:
            raise InvalidValueError(f"use is one of {', '.join(USES)}")
        return self._store.add_recipient(name, use, actor=who.actor, now=now)

    def recipients(self, who: Principal) -> list[RecipientView]:
        """Every recipient."""
        self._may_share(who)
        return self._store.recipients()

    # ------------------------------------------------------------------ exports

    def exports(self, who: Principal) -> list[ExportView]:
        """Exports, newest first."""
        self._may_share(who)
        return self._store.exports()

    def export_file(self, who: Principal, export_id: int, name: str) -> Path:
        """A file of an export, for delivery.

        Raises:
            NotFoundError: no such export or file.
        """
        self._may_share(who)
        row = self._store.export(export_id)
        if row is None or name not in ("data.csv", "data.parquet", "manifest.json", "manifest.sig"):
            raise NotFoundError(f"no file {name[:40]} in export {export_id}")
        return Path(row.path) / name

    def create_export(self, who: Principal, req: ExportRequest, *, now: int) -> ExportView:
        """Generate, sign and record an export.

        Raises:
            AccessDeniedError: not a data-sharing role.
            NotFoundError: no such recipient.
            InvalidValueError: a bad request, or fewer than k consenting meters.
        """
        self._may_share(who)
        req.check()
        recipient = self._store.recipient(req.recipient_id)
        if recipient is None:
            raise NotFoundError(f"no recipient {req.recipient_id}")
        meters = list(req.meters) if req.meters is not None else self._meters(who)
        eid = self._store.reserve_export(recipient.id, who.actor, now)
        what = f"export {eid} to {recipient.name} ({recipient.use}, {req.granularity})"
        try:
            view = self._generate(eid, who, recipient, req, meters, what=what, now=now)
        except BaseException:
            self._store.drop_export(eid)  # the id is not listed; the files, if any, stay unsigned
            raise
        self._store.complete_export(view, detail=what)
        return view

    def _generate(
        self,
        eid: int,
        who: Principal,
        recipient: RecipientView,
        req: ExportRequest,
        meters: list[str],
        *,
        what: str,
        now: int,
    ) -> ExportView:
        """Read (consent-checked, logged in each consumer's access log), write and sign."""
        data, refused = self._data.share(
            who, meters, recipient.use, req.granularity, req.start, req.end, what=what, now=now
        )
        if req.k and len(data) < req.k:
            raise InvalidValueError(
                f"{len(data)} consenting meters: microaggregation needs at least k={req.k}"
            )
        rows = self._rows(recipient, req, data)
        directory = self._out / f"export-{eid}"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        header = ["pseudonym" if not req.k else "group", "period", "start", *req.fields]
        if req.k:
            header.insert(1, "members")
        csv_path = directory / "data.csv"
        with csv_path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        parquet_path = directory / "data.parquet"
        _write_parquet(parquet_path, header, rows)
        manifest = {
            "format": "meterguard-export-v1",
            "export": eid,
            "recipient": recipient.name,
            "use": recipient.use,
            "granularity": req.granularity,
            "rotation": req.rotation,
            "k": req.k,
            "fields": list(req.fields),
            "start": _iso(req.start),
            "end": _iso(req.end),
            "included": len(data),
            "refused": len(refused),
            "generated_at": _iso(now),
            "generated_by": who.actor,
            "files": {p.name: _sha256(p) for p in (csv_path, parquet_path)},
            "privacy": (
                f"k-anonymous groups of at least {req.k} meters' means" if req.k else NOT_ANONYMOUS
            ),
        }
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        signature = self._key.sign(MANIFEST_DOMAIN + _canonical(manifest))
        (directory / "manifest.sig").write_text(signature.hex() + "\n")
        return ExportView(
            eid, recipient.id, who.actor, now, req.start, req.end, req.granularity,
            req.rotation, req.k, len(data), len(refused),
            hashlib.sha256(_canonical(manifest)).hexdigest(), str(directory),
        )  # fmt: skip

    def _rows(
        self, recipient: RecipientView, req: ExportRequest, data: dict[str, list[Any]]
    ) -> list[list[Any]]:
        if not req.k:
            # one pseudonym per (period, meter), derived in one batch in the key store
            keyed = [(_period(b.start, req.rotation), mid, b) for mid in data for b in data[mid]]
            pairs = sorted({(p, mid) for p, mid, _ in keyed})
            names = dict(zip(pairs, self._pseudonyms(recipient.id, pairs), strict=True))
            out: list[list[Any]] = []
            for p, mid, b in keyed:
                values = [b.import_wh if f == "import_wh" else b.export_wh for f in req.fields]
                out.append([names[(p, mid)], p, _iso(b.start), *values])
            out.sort(key=lambda r: (r[1], r[0], r[2]))  # by period, then pseudonym: no meter order
            return out
        # k-anonymous microaggregation, per rotation period, on the meters' period vectors
        starts = sorted({b.start for rows in data.values() for b in rows})
        index = {s: i for i, s in enumerate(starts)}
        mids = sorted(data)
        grid = np.zeros((len(mids), len(starts), len(req.fields)))
        for r, mid in enumerate(mids):
            for b in data[mid]:
                grid[r, index[b.start]] = [
                    b.import_wh if f == "import_wh" else b.export_wh for f in req.fields
                ]
        periods = np.array([_period(s, req.rotation) for s in starts])
        out = []
        for p in sorted(set(periods.tolist())):
            cols = np.flatnonzero(periods == p)
            block = grid[:, cols]
            labels = microaggregate(block.reshape(len(mids), -1), req.k)
            for g in range(int(labels.max()) + 1):
                members = labels == g
                mean = block[members].mean(axis=0)
                name = f"g{p}-{g}"
                for j, c in enumerate(cols):
                    out.append(
                        [name, int(members.sum()), p, _iso(starts[c]), *np.round(mean[j]).tolist()]
                    )
        return out

    # ------------------------------------------------------------------ DP aggregates

    def _members(self, who: Principal, scope: str) -> list[str]:
        groups = self._groups()
        if scope == "all":  # the homes behind every feeder, or every meter without a grid
            if groups:
                return sorted({m for ms in groups.values() for m in ms})
            return self._meters(who)
        if scope.startswith("feeder:") and scope[7:] in groups:
            return sorted(groups[scope[7:]])
        raise NotFoundError(f"no aggregate scope {scope[:72]} (all, or feeder:NAME)")

    def releases(self, who: Principal) -> list[ReleaseView]:
        """Releases, newest first."""
        if who.role not in RELEASE_ROLES:
            raise AccessDeniedError(f"releases are not for the {who.role} role")
        return self._store.releases()

    def release(
        self, who: Principal, scope: str, day: int, epsilon_day: float, *, now: int
    ) -> ReleaseView:
        """A differentially private hourly curve of ``scope`` for the UTC day at ``day``.

        Raises:
            AccessDeniedError: not a release role.
            NotFoundError: no such scope.
            InvalidValueError: a bad day or ε, a day not ended ``SETTLE`` ago, or fewer than
                MIN_GROUP homes.
            BudgetExceededError: a member's day has not enough budget left.
        """
        if who.role not in RELEASE_ROLES:
            raise AccessDeniedError(f"releases are not for the {who.role} role")
        if day < 0 or day % DAY:
            raise InvalidValueError("day is the start (UTC midnight) of a day")
        if day + DAY + SETTLE > now:  # a release is stored for good: never of a partial day
            raise InvalidValueError(
                f"the day must have ended at least {SETTLE // 60} min ago (readings still come)"
            )
        if not (math.isfinite(epsilon_day) and 0 < epsilon_day <= self.budget_day):
            raise InvalidValueError(f"ε per day must be in (0, {self.budget_day:g}]")
        stored = self._store.release(scope, day, epsilon_day)
        if stored is not None:
            return stored
        members = self._members(who, scope)
        if len(members) < MIN_GROUP:
            raise InvalidValueError(f"{len(members)} homes: an aggregate needs {MIN_GROUP}")
        spent = self._store.spent(members, day)
        over = [m for m in members if spent.get(m, 0.0) + epsilon_day > self.budget_day + 1e-9]
        if over:
            raise BudgetExceededError(
                f"{len(over)} of {len(members)} homes have less than ε={epsilon_day:g} left "
                f"of their day's budget {self.budget_day:g}"
            )
        plan = DpPlan(epsilon_day)
        what = f"DP aggregate {scope} {_iso(day)[:10]} ε={epsilon_day:g}"
        data = self._data.aggregate(who, members, day, day + DAY, what=what, now=now)
        wh = np.zeros((len(members), 24), dtype=np.int64)
        for r, mid in enumerate(members):
            for b in data.get(mid, []):
                wh[r, (b.start - day) // 3600] = b.import_wh
        noisy = release(clipped_sums(wh, np.zeros(len(members), dtype=np.int64), 1, plan), plan)
        curve = {
            "import_wh": [int(v) for v in noisy[0]],
            "epsilon_day": plan.accounted_day,
            "epsilon_slot": plan.epsilon_slot,
            "bound_wh": plan.bound_wh,
            "day_bound_wh": plan.day_bound_wh,
            "noise_scale_wh": plan.scale,
        }
        row = ReleaseView(
            0, scope, day, epsilon_day, len(members), who.actor, now, json.dumps(curve)
        )
        try:
            rid = self._store.add_release(row, members, budget=self.budget_day)
        except BudgetExhausted as exc:
            raise BudgetExceededError(f"{exc.meter_id}'s day ran out of budget meanwhile") from None
        return ReleaseView(rid, *[getattr(row, k) for k in ReleaseView.__slots__[1:]])

    def spent(self, who: Principal, meter_ids: Sequence[str], day: int) -> dict[str, float]:
        """ε each meter's day has spent (release roles)."""
        if who.role not in RELEASE_ROLES:
            raise AccessDeniedError(f"the ledger is not for the {who.role} role")
        return self._store.spent(list(meter_ids), day)


def _write_parquet(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    import pyarrow as pa  # noqa: PLC0415 - a large library, loaded when an export is written
    import pyarrow.parquet as pq  # noqa: PLC0415

    columns = {name: [r[i] for r in rows] for i, name in enumerate(header)}
    pq.write_table(pa.table(columns), path)
