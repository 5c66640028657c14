"""The fleet list and the meter page over HTTP (issue 17, items 1 and 3): the API and the panels.

Over the real app and store of ``test_api``: an operator searches, filters, sorts and pages;
bad questions are 422 with a reason; consumers have no fleet; a meter's page shows its
records and the key store's facts without any key material.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from meterguard.crypto.keys import KeyId
from meterguard.headend.api.app import create_app
from meterguard.headend.services.fleet import FleetView
from meterguard.headend.store.repository import ReadingRow
from tests.integration.test_api import OLGA, PASSWORD, Site, login, site, utility

__all__ = ["site"]
pytestmark = pytest.mark.integration


def test_the_fleet_is_searched_sorted_and_paged_by_the_server(site: Site) -> None:
    olga = utility(site, "olga", OLGA, site.operator_totp)
    site.store.add_readings([ReadingRow("MGD0000000002", 1_800_009_000, 500, 0, 0)])
    r = olga.get("/api/v1/fleet/meters", params={"per_page": 1})
    assert r.status_code == 200
    doc = r.json()
    assert (doc["total"], doc["page"], doc["per_page"]) == (2, 1, 1)
    assert [m["meter_id"] for m in doc["meters"]] == ["MGD0000000001"]
    newest = olga.get("/api/v1/fleet/meters", params={"sort": "last_reading", "order": "desc"})
    first = newest.json()["meters"][0]
    assert first["meter_id"] == "MGD0000000002" and first["last_reading_at"] == 1_800_009_900
    assert first["supply"] == "connected" and first["open_alarms"] == 0
    found = olga.get("/api/v1/fleet/meters", params={"q": "00002"}).json()
    assert [m["meter_id"] for m in found["meters"]] == ["MGD0000000002"]
    # What the list answers is in the OpenAPI document (patterns from the service's lists) and
    # checked before the service; the service checks again for the dashboard's panel.
    bad = olga.get("/api/v1/fleet/meters", params={"sort": "password_hash"})
    assert bad.status_code == 422 and bad.json() == {"error": "invalid request"}
    spec = olga.get("/openapi.json")
    assert spec.status_code == 200
    params = {p["name"]: p for p in spec.json()["paths"]["/api/v1/fleet/meters"]["get"]
              ["parameters"]}  # fmt: skip
    assert "last_reading" in params["sort"]["schema"]["pattern"]
    assert olga.get("/ui/panel/fleet", params={"sort": "password_hash"}).status_code == 422
    assert olga.get("/api/v1/alarms", params={"show": "everything"}).status_code == 422
    assert olga.get("/api/v1/fleet/meters", params={"per_page": 500}).status_code == 422
    assert olga.get("/api/v1/fleet/meters", params={"q": "a" * 40}).status_code == 422
    panel = olga.get("/ui/panel/fleet", params={"sort": "id", "order": "desc", "per_page": 1})
    assert panel.status_code == 200 and "2 meters" in panel.text
    assert 'href="/ui/meters/MGD0000000002"' in panel.text and "page 1 of 2" in panel.text
    nxt = re.search(r'data-set-query="([^"]+)" id="fleet-next"', panel.text)
    assert nxt and "page=2" in nxt[1] and "order=desc" in nxt[1]
    second = olga.get("/ui/panel/fleet?" + nxt[1].replace("&amp;", "&"))
    assert 'href="/ui/meters/MGD0000000001"' in second.text and "fleet-prev" in second.text
    assert olga.get("/ui/panel/fleet", params={"page": "two"}).status_code == 422

    alice = site.client()
    login(alice, "alice", PASSWORD)
    assert alice.get("/api/v1/fleet/meters").status_code == 403
    assert alice.get("/api/v1/fleet/meters/MGD0000000001").status_code == 403
    assert alice.get("/ui/meters/MGD0000000001").status_code == 404


def test_a_meter_page_shows_its_keys_state_and_never_their_material(site: Site) -> None:
    site.keystore.provision("MGD0000000001")
    site.keystore.begin_rotation("MGD0000000001", KeyId.GLOBAL_UNICAST)
    app = create_app(
        site.accounts,
        site.store,
        fleet=FleetView(site.store, keys=site.keystore.describe,
                        certificates=site.pki.certificates_of),
    )  # fmt: skip
    olga = utility(dataclasses.replace(site, app=app), "olga", OLGA, site.operator_totp)
    r = olga.get("/api/v1/fleet/meters/MGD0000000001")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["serial"] == "0000000001" and doc["meter"]["state"] == "active"
    states = {(k["kind"], k["version"], k["state"]) for k in doc["keys"]}
    assert ("global_unicast", 1, "active") in states and ("global_unicast", 2, "new") in states
    assert {c["status"] for c in doc["certificates"]} == {"valid"}
    material = site.keystore.active("MGD0000000001", KeyId.GLOBAL_UNICAST).expose_secret()
    page = olga.get("/ui/meters/MGD0000000001")
    assert page.status_code == 200 and "Meter MGD0000000001" in page.text
    assert "global unicast" in page.text and "Valid until" in page.text
    for text in (r.text, page.text):
        assert material.hex() not in text and material.hex().upper() not in text
    assert olga.get("/api/v1/fleet/meters/MGD0000000099").status_code == 404
    assert olga.get("/ui/meters/MGD0000000099").status_code == 404
    assert olga.get("/api/v1/fleet/meters/" + "9" * 30).status_code == 404
