"""Observability (issue 17, item 5): /metrics scraped and parsed, /healthz, request ids, JSON logs.

The app is the real one over a real SQLite store; the scrape is parsed with the Prometheus
text-format parser (``prometheus_client.parser``), as Prometheus would read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from meterguard.headend.api.app import create_app
from meterguard.headend.ingest.worker import BatchReport
from meterguard.headend.metrics import Metrics
from meterguard.headend.store.repository import RefusalRow
from meterguard.headend.web.charts import activity_charts
from meterguard.logs import JsonFormatter
from tests.integration.test_api import OLGA, PASSWORD, Site, login, site

__all__ = ["site"]
pytestmark = pytest.mark.integration
TOKEN = "scrape-token-for-tests-only-0123456789"  # noqa: S105 - a test's own token


def _app(site: Site) -> tuple[TestClient, Metrics]:
    metrics = Metrics(site.store)
    app = create_app(
        site.accounts,
        site.store,
        metrics=metrics,
        scrape_token_sha256=hashlib.sha256(TOKEN.encode()).digest(),
    )
    return TestClient(app, base_url="https://testserver"), metrics


def _families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_are_scraped_with_the_token_and_parse(site: Site) -> None:
    c, metrics = _app(site)
    site.store.commit_ingest(
        [], [RefusalRow("meters/MGD0000000001/data", "bad tag", b"x", "authentication_failed",
                        "MGD0000000001", "authentication_failed")], now=int(time.time()),
    )  # fmt: skip
    metrics.ingest_batch(BatchReport(5, 8, ("authentication_failed",), 1, 0.004, 0.02))
    assert c.get("/api/v1/meters").status_code == 401  # an API request, measured
    for junk in range(30):  # a scan of random URLs
        assert c.get(f"/no/such/{junk}").status_code in (401, 404)

    assert c.get("/metrics").status_code == 401
    assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = _families(r.text)
    assert got["meterguard_meters"] == {(("state", "active"),): 2.0}
    assert got["meterguard_alarms"][(("state", "open"),)] == 0.0
    assert got["meterguard_security_events_total"] == {(("event", "authentication_failed"),): 1}
    assert got["meterguard_refused_messages_total"][(("kind", "authentication_failed"),)] == 1
    assert got["meterguard_ingest_readings_total"][()] == 8.0
    assert got["meterguard_ingest_messages_total"][(("outcome", "stored"),)] == 3.0
    assert got["meterguard_ingest_refusals_total"][(("kind", "authentication_failed"),)] == 1.0
    assert got["meterguard_ingest_batch_commit_seconds_count"][()] == 1.0
    assert got["meterguard_ingest_queue_depth"][()] == 0.0
    api = got["meterguard_api_request_seconds_count"]
    assert api[(("method", "GET"), ("route", "/api/v1/meters"), ("status", "4xx"))] == 1.0
    # The scan is one label value, not thirty: a flood of URLs does not grow the metrics.
    routes = {dict(k)["route"] for k in api}
    assert "unmatched" in routes and not any(r.startswith("/no/such") for r in routes)
    assert "MGD0000000001" not in r.text  # no meter ids, no names in labels


def test_only_monitoring_roles_read_metrics_in_a_browser(site: Site) -> None:
    c, _ = _app(site)
    login(c, "alice", PASSWORD)
    assert c.get("/metrics").status_code == 403  # a consumer
    o, _ = _app(site)
    login(o, "olga", OLGA)
    code = site.operator_totp.code(time.time())
    assert o.post("/api/v1/auth/totp", json={"code": code}).status_code == 200
    assert o.get("/metrics").status_code == 200  # an operator watching the system


def test_health_says_only_whether_the_database_answers(site: Site) -> None:
    c, _ = _app(site)
    r = c.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    site.store.engine.dispose()
    Path(site.store.engine.url.database or "").unlink()
    Path(site.store.engine.url.database or "").mkdir()  # the file is gone: SQLite cannot open it
    r = c.get("/healthz")
    assert (r.status_code, r.json()) == (503, {"status": "unavailable"})


def test_requests_have_ids_in_the_header_the_log_line_and_the_audit_entry(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    c, _ = _app(site)
    with caplog.at_level(logging.INFO, logger="meterguard.http"):
        r = c.post(
            "/api/v1/auth/login",
            json={"username": "alice", "password": "wrong password here"},
            headers={"X-Request-ID": "trace-0123456789"},
        )
        bad = c.get("/api/v1/me", headers={"X-Request-ID": "<script>"})
    assert r.headers["X-Request-ID"] == "trace-0123456789"
    assert bad.headers["X-Request-ID"] != "<script>" and len(bad.headers["X-Request-ID"]) == 16
    lines = [json.loads(JsonFormatter().format(rec)) for rec in caplog.records]
    mine = next(line for line in lines if line["request_id"] == "trace-0123456789")
    assert mine["route"] == "/api/v1/auth/login" and mine["status"] == 401
    assert mine["logger"] == "meterguard.http" and "ms" in mine and "password" not in str(mine)
    with site.store.engine.connect() as conn:
        ids = [
            row[0]
            for row in conn.exec_driver_sql(
                "SELECT request_id FROM audit_entries WHERE action LIKE 'login%'"
            )
        ]
    assert "trace-0123456789" in ids, ids


def test_the_dashboards_live_charts_sample_the_totals_every_five_seconds(site: Site) -> None:
    metrics = Metrics(site.store)
    metrics.follow_broker(lambda: {"MGD0000000001", "MGD0000000002", "headend-ingest-1"})
    metrics.sample(100.0)
    metrics.ingest_batch(BatchReport(10, 40, ("throttled",) * 5, 0, 0.002, 0.010))
    assert len(metrics.sample(103.0)) == 1  # within 5 s: the same sample
    metrics.sample(110.0)
    metrics.ingest_batch(BatchReport(10, 20, (), 0, 0.002, 0.030))
    samples = metrics.sample(120.0)
    assert [s.at for s in samples] == [100.0, 110.0, 120.0]
    charts = {c.label: c for c in activity_charts(samples)}
    assert charts["Readings stored"].now == "2" and charts["Readings stored"].peak == "4"
    assert charts["Messages refused"].now == "0.0" and charts["Messages refused"].peak == "0.5"
    assert charts["Meters online"].now == "2"  # services are not meters
    assert charts["Ingest lag (mean)"].now == "30.0"
    assert all(len(c.points.split()) == 2 for c in charts.values())
