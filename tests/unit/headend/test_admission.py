"""PKI-5 / DOS-1: messages are admitted by meter identity before any cryptography."""

from __future__ import annotations

import pytest

from meterguard.errors import AccessDeniedError, DecodeError
from meterguard.headend.ingest.admission import Admission, meter_id_from_topic


def test_topics() -> None:
    assert meter_id_from_topic("meters/MGD0000000001/data") == ("MGD0000000001", "data")
    for bad in (
        "meters/MGD0000000001/commands",
        "meters/x/data",
        "meters/MGD0000000001/data/extra",
        "#",
    ):
        with pytest.raises(DecodeError):
            meter_id_from_topic(bad)


def test_admission() -> None:
    a = Admission(
        known={"MGD0000000001", "MGD0000000002", "MGD0000000003", "MGD0000000004"},
        revoked={"MGD0000000002"},
        suspended={"MGD0000000003": "disabled", "MGD0000000004": "quarantined"},
    )
    assert a.check("meters/MGD0000000001/alarms") == "MGD0000000001"
    for topic, reason in (
        ("meters/MGD0000000002/data", "revoked"),
        ("meters/MGD0000000003/data", "disabled"),
        ("meters/MGD0000000004/alarms", "quarantined"),
        ("meters/MGD0000000009/data", "not registered"),
    ):
        with pytest.raises(AccessDeniedError, match=reason):
            a.check(topic)
    assert a.refused == 4
    assert AccessDeniedError.event == "access_denied"


def test_load_suspends_quarantined_meters() -> None:
    a = Admission()
    a.load({"MGD0000000001": "active", "MGD0000000004": "quarantined"})
    assert a.check("meters/MGD0000000001/data") == "MGD0000000001"
    with pytest.raises(AccessDeniedError, match="quarantined"):
        a.check("meters/MGD0000000004/data")
