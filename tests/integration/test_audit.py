"""The audit log on SQLite and PostgreSQL: appended, signed, and audited against rewrites.

The auditor must catch an edited entry and a deleted entry — also when whoever edited the
database held the audit signing key and re-signed every tree head (LOG-4).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from meterguard.audit.auditor import Auditor
from meterguard.audit.log import AuditEntry, TreeHead
from meterguard.audit.merkle import root
from meterguard.cli.main import main
from meterguard.crypto.ecc import SigningKey
from meterguard.errors import ConfigurationError
from meterguard.headend.store.db import open_database
from meterguard.headend.store.repository import PushRow, RefusalRow, Store

pytestmark = pytest.mark.integration


def fill(store: Store, key: SigningKey, n: int, *, start: int = 0) -> None:
    for i in range(start, start + n):
        store.audit.append(
            at=1_800_000_000 + i, actor=f"operator-{i % 3}", target=f"MGD{i:010d}",
            action="disconnect", result="approved", request_id=f"req-{i}",
        )  # fmt: skip
        if i % 4 == 3:
            store.audit.sign_head(key, now=1_800_000_000 + i)
    store.audit.sign_head(key, now=1_800_000_000 + start + n)


def resign_everything(store: Store, key: SigningKey) -> None:
    """What an insider with the signing key does after editing rows: recompute and re-sign."""
    with store.engine.begin() as c:
        rows = c.execute(
            text("SELECT seq, at, actor, target, action, result, request_id, detail"
                 " FROM audit_entries ORDER BY seq")
        ).all()  # fmt: skip
        leaves = []
        for n, r in enumerate(rows, start=1):
            e = AuditEntry(n, int(r[1]), *(str(v) for v in r[2:8]))
            c.execute(text("UPDATE audit_entries SET seq = :n, leaf = :l WHERE seq = :s"),
                      {"n": n, "l": e.leaf(), "s": int(r[0])})  # fmt: skip
            leaves.append(e.leaf())
        heads = c.execute(text("SELECT size, at FROM audit_tree_heads ORDER BY size")).all()
        c.execute(text("DELETE FROM audit_tree_heads"))
        for old_size, at in heads:
            size = min(int(old_size), len(leaves))
            h = TreeHead(size, root(leaves[:size]), int(at)).sign(key)
            c.execute(
                text("INSERT INTO audit_tree_heads (size, root, at, signature)"
                     " VALUES (:s, :r, :a, :g) ON CONFLICT DO NOTHING"),
                {"s": h.size, "r": h.root, "a": h.at, "g": h.signature},
            )  # fmt: skip


def test_a_clean_log_verifies_and_the_pin_moves(store: Store, tmp_path: Path) -> None:
    key = SigningKey.generate()
    fill(store, key, 10)
    auditor = Auditor(store.engine, key.verifying_key(), tmp_path / "auditor.json")
    first = auditor.run()
    assert first.ok, first.problems
    assert (first.entries, first.pinned_before, first.pinned_now) == (10, None, 10)
    fill(store, key, 7, start=10)
    second = auditor.run()
    assert second.ok and (second.pinned_before, second.pinned_now) == (10, 17)


def test_an_edited_entry_is_caught_even_when_re_signed(store: Store, tmp_path: Path) -> None:
    key = SigningKey.generate()
    fill(store, key, 12)
    auditor = Auditor(store.engine, key.verifying_key(), tmp_path / "auditor.json")
    assert auditor.run().ok
    with store.engine.begin() as c:
        c.execute(text("UPDATE audit_entries SET result = 'rejected' WHERE seq = 5"))
    assert auditor.run().ok  # an incremental run reads only what is new since the pin ...
    naive = auditor.run(full=True)  # ... a full one re-reads every entry
    assert any("entry 5 does not match" in p for p in naive.problems), naive.problems
    resign_everything(store, key)  # the insider fixes the leaf hashes and every head
    report = auditor.run()
    assert not report.ok
    assert any("not consistent with the head of size 12" in p for p in report.problems)
    assert report.pinned_now == 12  # the pin does not move to a forged head


def test_a_deleted_entry_is_caught_even_when_re_signed(store: Store, tmp_path: Path) -> None:
    key = SigningKey.generate()
    fill(store, key, 9)
    auditor = Auditor(store.engine, key.verifying_key(), tmp_path / "auditor.json")
    assert auditor.run().ok
    with store.engine.begin() as c:
        c.execute(text("DELETE FROM audit_entries WHERE seq = 3"))
    assert any("1 of the 9 pinned entries are missing" in p for p in auditor.run().problems)
    assert any("entry 3 is missing" in p for p in auditor.run(full=True).problems)
    resign_everything(store, key)
    fill(store, key, 1, start=100)  # and appends one, so the size is back to 9
    report = auditor.run()
    assert any("not consistent with the head of size 9" in p for p in report.problems), report


def test_a_head_signed_by_another_key_is_refused(store: Store, tmp_path: Path) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    fill(store, key, 3)
    store.audit.append(at=1, actor="x", target="y", action="z", result="ok")
    store.audit.sign_head(other, now=2)
    report = Auditor(store.engine, key.verifying_key(), tmp_path / "a.json").run()
    assert any("signature does not verify" in p for p in report.problems)


def test_alarms_and_security_events_are_audited(store: Store) -> None:
    m = "MGD0000000042"
    store.registry.add_meter(m, serial=m[3:], system_title=b"MGD\x00\x00\x00\x00\x2a", now=0)
    store.commit_ingest(
        [PushRow(m, 7, "t", b"", False, (), (1, 0x2A, 5))],
        [RefusalRow(f"meters/{m}/data", "tag", b"x", "authentication_failed", m)],
        now=9,
    )
    store.security_event(at=10, event="session_taken_over", detail="again", meter_id=m)
    with store.engine.connect() as c:
        got = c.execute(text("SELECT target, action FROM audit_entries ORDER BY seq")).all()
    assert [tuple(r) for r in got] == [
        (m, "alarm_raised"),
        (m, "authentication_failed"),
        (m, "session_taken_over"),
    ]


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)  # SQLite has no roles
def test_the_writer_role_cannot_rewrite_the_log(store: Store) -> None:
    store.audit.append(at=1, actor="a", target="b", action="c", result="ok")
    for sql in ("UPDATE audit_entries SET result = 'x'", "DELETE FROM audit_entries"):
        with store.engine.connect() as c, c.begin():
            c.exec_driver_sql("SET LOCAL ROLE meterguard_audit_writer")
            with pytest.raises(ProgrammingError, match="permission denied"):
                c.exec_driver_sql(sql)


def test_concurrent_writers_lose_no_entry(store: Store) -> None:
    """Issue 12, item 9: eight writers (each its own engine, as separate processes would have)
    append at once; every entry is kept, numbered 1…n without a gap, and the log verifies."""
    url = store.engine.url.render_as_string(hide_password=False)
    errors: list[str] = []

    def work(k: int) -> None:
        s = Store(open_database(url, migrate_schema=False))
        try:
            for n in range(25):
                try:
                    s.audit.append(at=n, actor=f"w{k}", target="web", action="login", result="x")
                except Exception as exc:  # noqa: BLE001 - counted: the test's point
                    errors.append(type(exc).__name__)
        finally:
            s.engine.dispose()

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.engine.connect() as conn:
        count, top = conn.execute(text("SELECT count(*), max(seq) FROM audit_entries")).one()
    assert errors == [] and count == top == 200, (errors, count, top)


def test_runs_after_the_first_read_only_what_is_new(store: Store, tmp_path: Path) -> None:
    """Item 8: from the pin, only entries added since are read; a full run reads them all."""
    key = SigningKey.generate()
    fill(store, key, 40)
    auditor = Auditor(store.engine, key.verifying_key(), tmp_path / "auditor.json")
    first = auditor.run()
    assert first.verified and first.checked == 40
    fill(store, key, 5, start=40)
    again = auditor.run()
    assert again.verified and (again.checked, again.pinned_now) == (5, 45)
    assert auditor.run(full=True).checked == 45
    store.audit.append(at=1, actor="x", target="y", action="z", result="ok")  # not yet signed
    later = auditor.run()
    assert later.verified and later.uncovered == 1 and later.pinned_now == 45


def test_a_pinned_auditor_refuses_a_replaced_audit_key(store: Store, tmp_path: Path) -> None:
    """The state pins the public key: an insider who swaps in a key of their own and re-signs
    everything is refused, not trusted from then on."""
    key, insider = SigningKey.generate(), SigningKey.generate()
    fill(store, key, 6)
    state = tmp_path / "auditor.json"
    assert Auditor(store.engine, key.verifying_key(), state).run().verified
    resign_everything(store, insider)
    with pytest.raises(ConfigurationError, match="not the one this auditor pinned"):
        Auditor(store.engine, insider.verifying_key(), state).run()


def test_a_log_without_a_signed_head_is_not_called_verified(store: Store, tmp_path: Path) -> None:
    store.audit.append(at=1, actor="x", target="y", action="z", result="ok")
    report = Auditor(store.engine, SigningKey.generate().verifying_key(), tmp_path / "a").run()
    assert report.ok and not report.verified and report.uncovered == 1
    assert not (tmp_path / "a").exists()  # nothing pinned


def test_the_cli_says_plainly_when_nothing_is_signed_or_pinned(
    store: Store, tmp_path: Path
) -> None:
    """Item 8: a log with no signed head is not "verified" (exit 2), a first run says that
    nothing was pinned, and a tampered log exits 1."""
    key = SigningKey.generate()
    pub = tmp_path / "audit.pub"
    pub.write_text(key.verifying_key().to_bytes().hex())
    url = store.engine.url.render_as_string(hide_password=False)
    args = ["audit", "verify", "--data", str(tmp_path), "--db", url, "--key", str(pub),
            "--state", str(tmp_path / "pin.json")]  # fmt: skip
    store.audit.append(at=1, actor="x", target="y", action="z", result="ok")
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "nothing verified" in res.output, res.output
    fill(store, key, 3)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "nothing was pinned before this run" in res.output, res.output
    assert "audit log verified" in res.output
    with store.engine.begin() as c:
        c.execute(text("UPDATE audit_entries SET actor = 'someone else' WHERE seq = 4"))
    res = CliRunner().invoke(main, [*args, "--full"])
    assert res.exit_code == 1 and "entry 4 does not match" in res.output, res.output
