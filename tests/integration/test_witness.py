"""The witnessed audit log end to end: a real witness process, SQLite and PostgreSQL (item 10).

The attack it stops: an insider with the audit signing key rewrites entries added since the
auditor's last run and re-signs every head. Without a witness the auditor cannot tell (the
pinned prefix is intact); with one, the rewritten heads carry no cosignature, the witness
refuses to cosign them, and its earlier cosignature contradicts the rewritten tree.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from meterguard.audit.auditor import Auditor
from meterguard.audit.witness import Witness
from meterguard.cli.main import main
from meterguard.crypto.ecc import SigningKey, VerifyingKey
from meterguard.errors import ConfigurationError
from meterguard.headend.store.repository import Store
from meterguard.system.witness import AuditSigner, WitnessLink

from .test_audit import fill, resign_everything

pytestmark = pytest.mark.integration


def signer_with_witness(store: Store, key: SigningKey, directory: Path) -> AuditSigner:
    w = Witness.init(directory, key.verifying_key())
    command = [sys.executable, "-m", "meterguard", "audit", "witness", "serve"]
    link = WitnessLink([*command, "--state", str(directory)], w.public_key, timeout=30)
    return AuditSigner(store, key, witness=link)


def edit_entry(store: Store, seq: int) -> None:
    with store.engine.begin() as c:
        c.execute(text("UPDATE audit_entries SET result = 'refused' WHERE seq = :s"), {"s": seq})


def test_the_witness_stops_a_rewrite_signed_with_the_audit_key(
    store: Store, tmp_path: Path
) -> None:
    key = SigningKey.generate()
    signer = signer_with_witness(store, key, tmp_path / "witness")
    witness_key = signer.witness.witness_key if signer.witness else None
    try:
        fill(store, key, 10)
        signer.once()
        assert store.audit.cosigned_size() == 10
        plain = Auditor(store.engine, key.verifying_key(), tmp_path / "plain.json")
        witnessed = Auditor(
            store.engine, key.verifying_key(), tmp_path / "witnessed.json", witness=witness_key
        )
        assert plain.run().ok and witnessed.run().ok
        # The log grows and is cosigned; the auditors have not run since.
        fill(store, key, 10, start=10)
        signer.once()
        assert store.audit.cosigned_size() == 20
        # The insider edits an entry the auditors have not yet seen and re-signs every head.
        edit_entry(store, 15)
        resign_everything(store, key)
        assert plain.run().ok  # the audit key alone cannot be caught here: the gap item 10 closes
        report = witnessed.run()
        assert not report.ok
        assert any("witness cosigned another tree at size 20" in p for p in report.problems)
        # And the witness refuses to cosign the rewritten log from now on.
        fill(store, key, 3, start=20)
        signer.once()
        assert signer.refusals == 1
        assert store.audit.cosigned_size() == 20
        events = [e for _, e in store.security_events()]
        assert events.count("witness_refused") == 1
        signer.once()  # the retry (a new head: the event grew the log) records no second event
        assert [e for _, e in store.security_events()].count("witness_refused") == 1
    finally:
        if signer.witness is not None:
            signer.witness.close()


def test_heads_the_witness_did_not_cosign_are_not_trusted(store: Store, tmp_path: Path) -> None:
    key = SigningKey.generate()
    signer = signer_with_witness(store, key, tmp_path / "witness")
    assert signer.witness is not None
    witness_key = signer.witness.witness_key
    try:
        fill(store, key, 8)
        signer.once()
        fill(store, key, 8, start=8)  # signed by the log's key, never shown to the witness
        auditor = Auditor(
            store.engine, key.verifying_key(), tmp_path / "a.json", witness=witness_key
        )
        report = auditor.run()
        assert report.ok and report.pinned_now == 8
        assert report.unwitnessed >= 1 and report.uncovered == 8
    finally:
        signer.witness.close()
    # The pin now names the witness: dropping it or swapping it is refused, adding one is not.
    with pytest.raises(ConfigurationError, match="witness key is not the one"):
        Auditor(store.engine, key.verifying_key(), tmp_path / "a.json").run()
    other = SigningKey.generate().verifying_key()
    with pytest.raises(ConfigurationError, match="witness key is not the one"):
        Auditor(store.engine, key.verifying_key(), tmp_path / "a.json", witness=other).run()
    plain = Auditor(store.engine, key.verifying_key(), tmp_path / "b.json")
    assert plain.run().ok
    assert (
        Auditor(store.engine, key.verifying_key(), tmp_path / "b.json", witness=witness_key)
        .run()
        .ok
    )


def test_a_forged_cosignature_is_a_problem(store: Store, tmp_path: Path) -> None:
    key = SigningKey.generate()
    fill(store, key, 4)
    witness = SigningKey.generate()
    with store.engine.begin() as c:
        c.execute(
            text("INSERT INTO audit_cosignatures (size, root, at, signature)"
                 " VALUES (4, :r, 1, :s)"),
            {"r": b"\x00" * 32, "s": b"\x01" * 64},
        )  # fmt: skip
    report = Auditor(
        store.engine, key.verifying_key(), tmp_path / "a.json", witness=witness.verifying_key()
    ).run()
    assert any("does not verify" in p for p in report.problems)


def test_a_dead_witness_is_retried_and_blocks_nothing(store: Store, tmp_path: Path) -> None:
    key = SigningKey.generate()
    w = Witness.init(tmp_path / "w", key.verifying_key())
    link = WitnessLink([sys.executable, "-c", "import sys; sys.exit(3)"], w.public_key, timeout=5)
    signer = AuditSigner(store, key, witness=link)
    fill(store, key, 3)
    signer.once()  # the witness died: the head is signed, not cosigned, no event
    assert store.audit.newest_head() is not None and store.audit.cosigned_size() == 0
    assert "witness_refused" not in [e for _, e in store.security_events()]


def test_the_witness_cli(tmp_path: Path) -> None:
    key = SigningKey.generate()
    pub = tmp_path / "audit-key.pub"
    pub.write_text(key.verifying_key().to_bytes().hex())
    runner = CliRunner()
    init = runner.invoke(main, ["audit", "witness", "init", "--state", str(tmp_path / "w"),
                                "--log-key", str(pub)])  # fmt: skip
    assert init.exit_code == 0, init.output
    printed = init.output.strip().splitlines()[-1]
    assert (
        VerifyingKey.from_bytes(bytes.fromhex(printed)) == Witness.open(tmp_path / "w").public_key
    )
    served = runner.invoke(
        main,
        ["audit", "witness", "serve", "--state", str(tmp_path / "w")],
        input='{"op": "size"}\nnot json\n[1]\n',
    )
    assert served.exit_code == 0, served.output
    lines = served.output.splitlines()
    assert lines[0].startswith('{"size": 0') and all('"bad_request"' in x for x in lines[1:])
    shown = runner.invoke(main, ["audit", "witness", "show", "--state", str(tmp_path / "w")])
    assert shown.exit_code == 0 and "cosigned     0 heads" in shown.output
