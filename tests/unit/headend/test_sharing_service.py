"""Data sharing over a real SQLite store and key store: consents per use, exports, DP releases.

Readings are 15-minute register values for 14 meters over three days. The tests check
who may share, that only consenting consumers are exported and never finer than they
allowed, that pseudonyms differ between recipients and rotation periods, that an export's
signature and file hashes verify (and a changed file does not), that every included
consumer's access log records the export, and that the privacy ledger refuses a release
beyond the budget while a repeated release spends nothing.
"""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from meterguard.crypto.ecc import SigningKey
from meterguard.crypto.keys import SecretKey
from meterguard.crypto.keystore import KeyStore, LocalKek
from meterguard.errors import (
    AccessDeniedError,
    BudgetExceededError,
    ConflictError,
    InvalidValueError,
    NotFoundError,
    SignatureInvalidError,
)
from meterguard.headend.services.accounts import Principal
from meterguard.headend.services.sharing import DataSharing, ExportRequest, verify_export
from meterguard.headend.services.usage import consumption_data
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import ReadingRow, Store
from meterguard.identity import system_title
from meterguard.system.keys import SharedKeyStore
from tests.accounts import test_accounts

DAY = 86400
T0 = 1_767_225_600  # 2026-01-01, a Thursday
N = 14


def _ids() -> list[str]:
    return [f"MGD{k:010d}" for k in range(1, N + 1)]


@pytest.fixture
def env(tmp_path: Path):
    store = Store(open_database(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    ids = _ids()
    for mid in ids:
        store.registry.add_meter(
            mid, serial=mid[3:], system_title=system_title(int(mid[3:])), now=T0
        )
    rows = []
    for n, mid in enumerate(ids):
        reg = 10_000
        for q in range(3 * 96 + 1):
            rows.append(ReadingRow(mid, T0 + q * 900 - 900, reg, 0, T0))
            reg += 50 + 10 * n + (q % 96 > 70) * 200
    store.add_readings(rows)
    accounts = test_accounts(store, tmp_path)
    people = {}
    for n, mid in enumerate(ids):
        uid, _ = accounts.create_user(
            f"home{n}", "correct horse battery staple 1", "consumer", now=T0, meters=(mid,)
        )
        people[mid] = Principal(uid, f"home{n}", "consumer")
    keys = SharedKeyStore(KeyStore(tmp_path / "keys.db", LocalKek(SecretKey.generate(32))))
    data = consumption_data(store, accounts)
    sharing = DataSharing(
        store.sharing, data, pseudonyms=keys.pseudonyms, signing_key=SigningKey.generate(),
        out_dir=tmp_path / "exports", meters=accounts.meters,
        groups=lambda: {"feeder-a": ids[:12], "tiny": ids[:3]},
    )  # fmt: skip
    return sharing, data, store, ids, people


PIA = Principal(900, "pia", "privacy_officer")
OLGA = Principal(901, "olga", "operator")


def test_only_the_privacy_officer_shares(env) -> None:
    sharing, data, _, ids, people = env
    for who in (OLGA, people[ids[0]]):
        with pytest.raises(AccessDeniedError):
            sharing.add_recipient(who, "Uni Lab", "research", now=T0)
        with pytest.raises(AccessDeniedError):
            data.share(who, ids, "research", "day", T0, T0 + DAY, what="x", now=T0)
    with pytest.raises(AccessDeniedError):
        sharing.release(people[ids[0]], "all", T0, 1.0, now=T0 + 3 * DAY)
    rid = sharing.add_recipient(PIA, "Uni Lab", "research", now=T0)
    assert rid > 0
    with pytest.raises(ConflictError):
        sharing.add_recipient(PIA, "Uni Lab", "research", now=T0)
    with pytest.raises(InvalidValueError):
        sharing.add_recipient(PIA, "x" * 65, "research", now=T0)
    with pytest.raises(InvalidValueError):
        sharing.add_recipient(PIA, "Ads Inc", "advertising", now=T0)


def test_an_export_has_only_consenting_consumers_never_finer(env) -> None:
    sharing, data, _, ids, people = env
    uni = sharing.add_recipient(PIA, "Uni Lab", "research", now=T0)
    esco = sharing.add_recipient(PIA, "Esco", "energy-services", now=T0)
    data.set_use_consent(people[ids[0]], ids[0], "research", "hour", now=T0)
    data.set_use_consent(people[ids[1]], ids[1], "research", "day", now=T0)  # coarser than asked
    data.set_use_consent(people[ids[2]], ids[2], "energy-services", "interval", now=T0)
    data.set_use_consent(people[ids[3]], ids[3], "research", "interval", now=T0)
    data.set_use_consent(people[ids[3]], ids[3], "energy-services", "hour", now=T0)
    with pytest.raises(AccessDeniedError):  # only the consumer consents
        data.set_use_consent(PIA, ids[4], "research", "hour", now=T0)
    req = ExportRequest(uni, T0, T0 + 3 * DAY, granularity="hour", rotation="day")
    view = sharing.create_export(PIA, req, now=T0 + 3 * DAY)
    assert (view.included, view.refused) == (2, N - 2)
    directory = Path(view.path)
    with (directory / "data.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3 * 24
    assert set(rows[0]) == {"pseudonym", "period", "start", "import_wh"}
    names = {r["pseudonym"] for r in rows}
    assert len(names) == 2 * 3  # two meters, a new pseudonym each day
    assert not any(mid in (directory / "data.csv").read_text() for mid in ids)
    table = pq.read_table(directory / "data.parquet")
    assert table.num_rows == len(rows)
    manifest = verify_export(directory, sharing.verifying_key)
    assert manifest["included"] == 2 and "not anonymous" in manifest["privacy"]
    # the other recipient's pseudonyms for the same meter and day are different
    view2 = sharing.create_export(
        PIA, ExportRequest(esco, T0, T0 + DAY, granularity="hour", rotation="day"), now=T0 + 3 * DAY
    )
    with (Path(view2.path) / "data.csv").open() as f:
        other = {r["pseudonym"] for r in csv.DictReader(f)}
    assert view2.included == 2 and not other & names
    # each included consumer's access log says so; a refused one's does not
    log0 = data.access_log(people[ids[0]], ids[0])
    assert any("export" in w and "Uni Lab" in w and who == "pia" for _, who, _, w in log0)
    assert not data.access_log(people[ids[1]], ids[1])
    assert ("research", "hour") in [
        (u, c.granularity) for u, c in data.use_consents_of(people[ids[0]], ids[0]).items()
    ]


def test_a_changed_file_or_manifest_fails_verification(env) -> None:
    sharing, data, _, ids, people = env
    uni = sharing.add_recipient(PIA, "Uni Lab", "research", now=T0)
    data.set_use_consent(people[ids[0]], ids[0], "research", "day", now=T0)
    view = sharing.create_export(PIA, ExportRequest(uni, T0, T0 + 2 * DAY), now=T0 + 3 * DAY)
    directory = Path(view.path)
    csv_path = directory / "data.csv"
    csv_path.write_text(csv_path.read_text().replace(",", ";", 3))
    with pytest.raises(SignatureInvalidError):
        verify_export(directory, sharing.verifying_key)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["included"] = 99
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SignatureInvalidError):
        verify_export(directory, sharing.verifying_key)


def test_microaggregation_needs_k_consenting_meters(env) -> None:
    sharing, data, _, ids, people = env
    uni = sharing.add_recipient(PIA, "Uni Lab", "research", now=T0)
    for mid in ids[:11]:
        data.set_use_consent(people[mid], mid, "research", "hour", now=T0)
    with pytest.raises(InvalidValueError, match="k=12"):
        sharing.create_export(
            PIA, ExportRequest(uni, T0, T0 + DAY, granularity="hour", k=12), now=T0 + DAY
        )
    with pytest.raises(InvalidValueError, match="k is 0"):  # k=5 fails the linking target
        ExportRequest(uni, T0, T0 + DAY, granularity="hour", k=5).check()
    view = sharing.create_export(
        PIA, ExportRequest(uni, T0, T0 + DAY, granularity="hour", k=10), now=T0 + DAY
    )
    with (Path(view.path) / "data.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {int(r["members"]) for r in rows} == {11}  # 11 meters, one group of ≥ 10
    assert not any(mid in (Path(view.path) / "data.csv").read_text() for mid in ids)
    assert len(rows) == 24
    assert [e.id for e in sharing.exports(PIA)] == [view.id]  # the refused one left no row


def test_concurrent_exports_each_get_their_own_id_files_and_log_entries(env) -> None:
    sharing, data, _, ids, people = env
    uni = sharing.add_recipient(PIA, "Uni Lab", "research", now=T0)
    data.set_use_consent(people[ids[0]], ids[0], "research", "hour", now=T0)
    req = ExportRequest(uni, T0, T0 + DAY, granularity="hour")
    start, views, errors = threading.Barrier(4), [], []

    def make() -> None:
        start.wait()
        try:
            views.append(sharing.create_export(PIA, req, now=T0 + DAY))
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len({v.id for v in views}) == 4
    for v in views:  # each manifest names its own export, and verifies
        assert verify_export(Path(v.path), sharing.verifying_key)["export"] == v.id
    assert sorted(e.id for e in sharing.exports(PIA)) == sorted(v.id for v in views)
    log = [w for _, _, _, w in data.access_log(people[ids[0]], ids[0])]
    assert sorted(log) == sorted(f"export {v.id} to Uni Lab (research, hour)" for v in views)


def test_dp_release_is_accounted_and_refused_beyond_the_budget(env) -> None:
    sharing, data, _, ids, people = env
    now = T0 + 3 * DAY
    with pytest.raises(InvalidValueError, match="needs 10"):
        sharing.release(PIA, "feeder:tiny", T0, 1.0, now=now)
    with pytest.raises(NotFoundError):
        sharing.release(PIA, "feeder:nope", T0, 1.0, now=now)
    with pytest.raises(InvalidValueError):
        sharing.release(PIA, "all", T0 + 5, 1.0, now=now)  # not a day's start
    for day, at in ((T0 + 2 * DAY, now + 1800), (T0 + 3 * DAY, now + 600)):
        with pytest.raises(InvalidValueError, match="ended"):  # ended 30 min ago / in progress
            sharing.release(PIA, "all", day, 1.0, now=at)
    assert sharing.spent(PIA, ids[:1], T0 + 2 * DAY) == {}  # nothing stored, nothing spent
    with pytest.raises(InvalidValueError):
        sharing.release(PIA, "all", T0, 11.0, now=now)  # more than a day's budget
    first = sharing.release(OLGA, "feeder:feeder-a", T0, 6.0, now=now)
    curve = json.loads(first.curve)
    assert len(curve["import_wh"]) == 24 and curve["epsilon_day"] == pytest.approx(6.0)
    again = sharing.release(OLGA, "feeder:feeder-a", T0, 6.0, now=now)
    assert again.id == first.id and again.curve == first.curve  # stored, nothing spent
    assert sharing.spent(OLGA, ids[:1], T0) == {ids[0]: pytest.approx(6.0)}
    with pytest.raises(BudgetExceededError):  # 6 + 6 > 10 for the feeder's homes
        sharing.release(OLGA, "all", T0, 6.0, now=now)
    assert sharing.spent(OLGA, ids[:1], T0) == {ids[0]: pytest.approx(6.0)}  # nothing debited
    sharing.release(OLGA, "all", T0, 4.0, now=now)  # exactly the rest
    assert sharing.spent(OLGA, ids[:1], T0)[ids[0]] == pytest.approx(10.0)
    sharing.release(OLGA, "all", T0 + DAY, 4.0, now=now)  # another day has its own budget
    log = data.access_log(people[ids[0]], ids[0])
    assert sum("DP aggregate" in w for *_, w in log) == 3
