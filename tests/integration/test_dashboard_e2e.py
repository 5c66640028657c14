"""The dashboard end to end in headless Chromium (Debian's, driven by Playwright).

A real demo system (PKI, Mosquitto, ingest, fleet, HTTPS dashboard) runs in this process
on accelerated time; the browser trusts exactly the dashboard's server key (Chromium's
SPKI pin flag: certificate verification stays on for everything else) and the pages run
under the production CSP — a CSP violation fails the test. Covered: a consumer's login
and usage chart, an operator's password + TOTP login, a tamper alarm appearing,
acknowledged by the operator and cleared by an engineer, and a disconnect proposed by one
person, approved by another, reaching the meter and reported back; an operator adding a
security key (Chromium's virtual WebAuthn authenticator) and logging in with password and
that key instead of TOTP.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from sqlalchemy import text

from meterguard.cosem.command import ControlState
from meterguard.crypto.ecc import VerifyingKey
from meterguard.crypto.keys import KeyId
from meterguard.demo import DemoConfig, DemoSystem, request_tamper
from meterguard.headend.services.billing import verify_bill
from meterguard.meter.device import TamperKind

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SPEED = 3600.0  # a simulated day in 24 s


@dataclass
class Demo:
    system: DemoSystem
    url: str
    passwords: dict[str, str]
    totp: dict[str, pyotp.TOTP]
    spki: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data = tmp_path_factory.mktemp("e2e") / "demo"
    system = DemoSystem(DemoConfig(data=data, meters=4, speed=SPEED))
    system.start(now=dt.datetime.now(dt.UTC))
    assert system.fleet is not None
    stop = threading.Event()
    sim_start, started = system.fleet.now, time.monotonic()

    def run() -> None:
        while not stop.is_set():
            system.tick(sim_start + dt.timedelta(seconds=(time.monotonic() - started) * SPEED))
            stop.wait(0.25)

    ticker = threading.Thread(target=run, daemon=True)
    ticker.start()
    creds = (data / "web" / "demo-accounts.txt").read_text()
    passwords = dict(re.findall(r"^(\w+) \(\w+\) password: (.*)$", creds, re.M))
    totp = {
        name: pyotp.TOTP(secret)
        for name, secret in re.findall(r"^(\w+) TOTP .*secret=([A-Z2-7]+)", creds, re.M)
    }
    cert = x509.load_pem_x509_certificate((data / "web" / "web.pem").read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    try:
        # localhost, not 127.0.0.1: a WebAuthn relying-party id must be a domain.
        yield Demo(system, f"https://localhost:{system.web_port}", passwords, totp, pin)
    finally:
        stop.set()
        ticker.join(10)
        system.stop()


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--no-first-run",
                f"--ignore-certificate-errors-spki-list={demo.spki}",
            ],
        )
        try:
            yield b
        finally:
            b.close()


def new_page(browser: Browser) -> tuple[Page, list[str]]:
    """A fresh context (its own cookies) collecting script errors and CSP violations.

    (Failed resource loads — the refused login's 401 — are expected and not collected.)
    """
    page = browser.new_context().new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: d.accept())
    return page, errors


def log_in(page: Page, demo: Demo, user: str) -> None:
    page.goto(f"{demo.url}/login")
    page.fill("#username", user)
    page.fill("#password", demo.passwords[user])
    page.click("#login-submit")
    if user in demo.totp:
        expect(page.locator("#totp-form")).to_be_visible()
        page.fill("#totp", demo.totp[user].now())
        page.click("#totp-submit")
    page.wait_for_url(f"{demo.url}/")


@pytest.fixture(scope="module")
def olga(browser: Browser, demo: Demo) -> tuple[Page, list[str]]:
    page, errors = new_page(browser)
    log_in(page, demo, "olga")
    return page, errors


@pytest.fixture(scope="module")
def erik(browser: Browser, demo: Demo) -> tuple[Page, list[str]]:
    page, errors = new_page(browser)
    log_in(page, demo, "erik")
    return page, errors


def test_consumer_logs_in_and_sees_her_usage_chart(browser: Browser, demo: Demo) -> None:
    page, errors = new_page(browser)
    page.goto(f"{demo.url}/")
    page.wait_for_url(f"{demo.url}/login")  # no session: to the login page
    page.fill("#username", "alice")
    page.fill("#password", "not her password")
    page.click("#login-submit")
    expect(page.locator("#status")).to_contain_text("Wrong user name or password")
    log_in(page, demo, "alice")
    expect(page.locator("h2")).to_have_text(["Meter MGD0000000001"])
    bars = page.locator("#usage-MGD0000000001 svg.chart rect.bar")
    expect(bars.nth(1)).to_be_attached()  # two bars at least, once the hours have come
    page.select_option("select.usage-period", "day")  # 15-minute intervals
    expect(page.locator("#usage-MGD0000000001 svg.chart")).to_have_attribute(
        "aria-label", re.compile("per 15-minute interval")
    )
    assert "MGD0000000002" not in page.content()
    with page.expect_download() as dl:  # a copy of all her data (PRIV-4)
        page.get_by_role("link", name="Download all my data").first.click()
    copy = json.loads(Path(dl.value.path()).read_text())
    assert copy["meter_id"] == "MGD0000000001" and copy["readings"] and "access_log" in copy
    # Sharing with research: consented by the hour, then withdrawn (PRIV-2).
    research = page.locator('form[data-url="/api/v1/meters/MGD0000000001/sharing"]').filter(
        has=page.locator('input[value="research"]')
    )
    research.locator("select").select_option("hour")
    research.locator("button").click()
    expect(page.locator("#status")).to_contain_text("Saved.")
    page.reload()
    expect(research.locator("select")).to_have_value("hour")
    research.locator("select").select_option("")
    research.locator("button").click()
    expect(page.locator("#status")).to_contain_text("Saved.")
    page.reload()
    expect(research.locator("select")).to_have_value("")
    assert errors == []


def test_operator_needs_password_and_totp(olga: tuple[Page, list[str]]) -> None:
    page, errors = olga
    expect(page.locator("h1")).to_have_text("Fleet")
    expect(page.locator("[data-panel=health] svg.chart rect.seg").first).to_be_attached()
    expect(page.locator("#count-meters")).to_have_text("4")
    expect(page.locator("[data-panel=fleet] tr[data-meter]")).to_have_count(4)
    assert errors == []


def test_tamper_alarm_appears_and_is_cleared_by_an_engineer(
    demo: Demo, olga: tuple[Page, list[str]], erik: tuple[Page, list[str]]
) -> None:
    page, errors = olga
    request_tamper(demo.system.config.data, "MGD0000000003", TamperKind.MAIN_COVER_OPEN)
    row = page.locator("[data-panel=alarms] tr", has_text="MGD0000000003")
    expect(row.locator(".alarm-state")).to_have_text("open", timeout=30_000)
    expect(page.locator(".badge")).to_have_text("1 open alarm")  # on every page's header
    expect(row).to_contain_text("meter cover removed")
    expect(row.get_by_role("button", name="Clear")).to_have_count(0)  # operators cannot clear
    row.get_by_role("button", name="Acknowledge").click()
    expect(row.locator(".alarm-state")).to_have_text("acknowledged")
    expect(row.locator(".handled")).to_contain_text("acknowledged by olga")
    expect(row.locator(".sev")).to_have_text("critical")
    expect(page.locator(".badge")).to_have_count(0)  # no alarm open any more (acknowledged)
    epage, eerrors = erik
    erow = epage.locator("[data-panel=alarms] tr", has_text="MGD0000000003")
    erow.get_by_role("button", name="Clear").click()
    expect(erow).to_have_count(0)  # the list shows the alarms still to handle ...
    expect(row).to_have_count(0)  # ... live on olga's page too
    page.select_option("form[data-target=alarms-panel] select[name=show]", "all")
    expect(row.locator(".alarm-state")).to_have_text("cleared")  # ... and all on request
    expect(row.locator(".handled")).to_contain_text("cleared by erik")
    # Times are shown in the viewer's zone; the meter's simulated clock says so.
    expect(row.locator(".meter-time time")).to_contain_text("(simulated)")
    assert errors == [] and eerrors == []


def test_dual_approved_disconnect_reaches_the_meter(
    demo: Demo, olga: tuple[Page, list[str]], erik: tuple[Page, list[str]]
) -> None:
    page, errors = olga
    page.fill("#cmd-meter", "MGD0000000002")
    page.select_option("#cmd-kind", "disconnect")
    page.fill("#cmd-reason", "e2e: site safety visit")
    page.click("#propose")
    row = page.locator("[data-panel=commands] tr", has_text="e2e: site safety visit")
    expect(row.locator(".command-state")).to_have_text("proposed")
    expect(row).to_contain_text("waiting for a second person")  # no approve button for her
    expect(row.get_by_role("button", name="Approve")).to_have_count(0)

    epage, eerrors = erik
    erow = epage.locator("[data-panel=commands] tr", has_text="e2e: site safety visit")
    erow.get_by_role("button", name="Approve").click()
    expect(erow.locator(".command-state")).to_have_text("executed", timeout=30_000)
    expect(row.locator(".command-state")).to_have_text("executed")
    fleet = demo.system.fleet
    assert fleet is not None and fleet.control_state(1) is ControlState.DISCONNECTED
    assert fleet.control_state(0) is ControlState.CONNECTED
    supply = page.locator("[data-panel=fleet] tr[data-meter=MGD0000000002] .supply")
    expect(supply).to_have_text("disconnected")
    assert errors == [] and eerrors == []


def test_operator_reads_a_meter_on_demand(demo: Demo, olga: tuple[Page, list[str]]) -> None:
    page, errors = olga
    page.locator("[data-panel=fleet] tr[data-meter=MGD0000000004]").get_by_role(
        "button", name="Read now"
    ).click()
    row = page.locator("[data-panel=commands] tr", has_text="on-demand read").first
    expect(row.locator(".command-state")).to_have_text("executed", timeout=30_000)
    expect(row.locator(".reading")).to_have_text(re.compile(r"^[\d,]+\.\d{3} kWh$"))
    assert errors == []


def test_provisioning_registers_serial_keys_and_meter(demo: Demo) -> None:
    system = demo.system
    he = system.headend
    assert system.pki is not None and he is not None
    mid = he.meters.provision("erik", "engineer", "0000000777", now=int(time.time()))
    system.pki.refresh()
    assert mid == "MGD0000000777" and "0000000777" in system.pki.registry.serials
    with he.keys.lock:  # the demo's threads share the key store
        assert len(he.keys.store.active(mid, KeyId.GLOBAL_UNICAST)) == 16
    assert mid in {m for m, _, _ in he.store.registry.meters()}
    deadline = time.monotonic() + 10  # the registry watch admits it to ingest
    while mid not in he.processor.admission.known and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mid in he.processor.admission.known


def test_operator_adds_a_security_key_and_logs_in_with_it(
    demo: Demo, olga: tuple[Page, list[str]]
) -> None:
    page, errors = olga
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    page.click("#passkey-register")
    expect(page.locator("#status")).to_contain_text("Security key added")
    page.click("#logout")
    page.wait_for_url(f"{demo.url}/login")
    page.fill("#username", "olga")
    page.fill("#password", demo.passwords["olga"])
    page.click("#login-submit")
    expect(page.locator("#passkey-login")).to_be_visible()  # offered instead of the code
    page.click("#passkey-login")
    page.wait_for_url(f"{demo.url}/")
    expect(page.locator("h1")).to_have_text("Fleet")
    trail = [
        (a, r) for a, r in _audit_actions(demo) if a in ("webauthn_registered", "login_webauthn")
    ]
    assert trail == [("webauthn_registered", "ok"), ("login_webauthn", "ok")]
    assert errors == []


def _audit_actions(demo: Demo) -> list[tuple[str, str]]:
    assert demo.system.store is not None
    with demo.system.store.engine.connect() as c:
        return [
            (str(a), str(r))
            for a, r in c.execute(text("SELECT action, result FROM audit_entries ORDER BY seq"))
        ]


SHOTS = os.environ.get("MG_SCREENSHOTS", "")
"""A directory for the getting-started guide's screenshots (docs/images), or none."""


def _shot(page: Page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_the_fleet_is_searched_filtered_sorted_and_paged(
    demo: Demo, olga: tuple[Page, list[str]]
) -> None:
    """Issue 17: server-side search, filters, sort and pages; the meter's own page."""
    page, errors = olga
    he = demo.system.headend
    assert he is not None
    for n in range(1001, 1061):  # 60 more meters on record (not online): three pages of 25
        he.store.registry.add_meter(
            f"MGD{n:010d}", serial=f"{n:010d}", system_title=b"MGT" + n.to_bytes(5, "big"), now=1
        )
    request_tamper(demo.system.config.data, "MGD0000000004", TamperKind.MAGNETIC_FIELD)
    page.reload()
    panel = page.locator("#fleet-panel")
    page.select_option(".fleet-filter select[name=per_page]", "25")
    page.fill(".fleet-filter input[name=q]", "MGD00000010")
    expect(panel.locator(".found")).to_contain_text("60 meters match; 1 to 25 shown")
    expect(panel.locator("tr[data-meter]")).to_have_count(25)
    expect(panel.locator("tr[data-meter]").first).to_have_attribute("data-meter", "MGD0000001001")
    panel.locator("#fleet-next").click()
    expect(panel.locator(".pager")).to_contain_text("page 2 of 3")
    expect(panel.locator("tr[data-meter]").first).to_have_attribute("data-meter", "MGD0000001026")
    panel.get_by_role("button", name="sort by Meter").click()  # back to page 1, newest id first
    expect(panel.locator("tr[data-meter]").first).to_have_attribute("data-meter", "MGD0000001060")
    expect(panel.locator(".pager")).to_contain_text("page 1 of 3")
    # The page refreshes every two seconds and keeps the question asked.
    page.wait_for_timeout(2500)
    expect(panel.locator("tr[data-meter]").first).to_have_attribute("data-meter", "MGD0000001060")
    page.fill(".fleet-filter input[name=q]", "")
    page.select_option(".fleet-filter select[name=alarms]", "open")
    expect(panel.locator("tr[data-meter]")).to_have_count(1, timeout=30_000)
    expect(panel.locator("tr[data-meter]")).to_have_attribute("data-meter", "MGD0000000004")
    _shot(page, "fleet")
    link = panel.get_by_role("link", name="MGD0000000004")
    expect(link).to_have_attribute("href", "/ui/meters/MGD0000000004")
    page.goto(f"{demo.url}/ui/meters/MGD0000000004")  # (the panel re-renders under a click)
    expect(page.locator("h1")).to_have_text("Meter MGD0000000004")
    expect(page.locator("table.certificates")).to_contain_text("valid")
    expect(page.locator("table.keys")).to_contain_text("global unicast")
    expect(page.locator("#meter-panel table.alarms")).to_contain_text("strong magnetic field")
    value = page.locator("#propose-form .command-value")
    expect(value).to_be_hidden()  # a disconnect takes no value
    page.select_option("#propose-form select[name=kind]", "load_limit")
    expect(value).to_be_visible()
    expect(value).to_contain_text("W")
    _shot(page, "meter")
    before = _accesses(demo, "MGD0000000004")
    page.click("#show-usage")  # loaded once, on request: each look is in the consumer's log
    expect(page.locator("#meter-usage svg.chart")).to_be_attached(timeout=20_000)
    expect(page.locator("#meter-usage svg.chart")).to_have_attribute(
        "aria-label",
        re.compile("per day"),  # the default consent: daily values for staff
    )
    page.wait_for_timeout(4500)  # two refresh rounds: the consumption is not fetched again
    assert _accesses(demo, "MGD0000000004") == before + 1
    assert errors == []


def _accesses(demo: Demo, meter: str) -> int:
    assert demo.system.store is not None
    with demo.system.store.engine.connect() as c:
        return int(
            c.scalar(text("SELECT count(*) FROM data_access WHERE meter_id = :m"), {"m": meter})
        )


def test_a_gap_in_the_readings_is_a_gap_on_the_consumers_chart(
    browser: Browser, demo: Demo
) -> None:
    assert demo.system.store is not None
    with demo.system.store.engine.begin() as c:  # two hours of readings lost before ingest
        newest = int(
            c.scalar(
                text("SELECT max(interval_start) FROM readings WHERE meter_id = 'MGD0000000001'")
            )
        )
        c.execute(text("DELETE FROM readings WHERE meter_id = 'MGD0000000001'"
                       " AND interval_start BETWEEN :a AND :b"),
                  {"a": newest - 6 * 3600, "b": newest - 4 * 3600})  # fmt: skip
    page, errors = new_page(browser)
    log_in(page, demo, "alice")
    page.select_option("select.usage-period", "day")
    chart = page.locator("#usage-MGD0000000001")
    expect(chart.locator("svg.chart")).to_have_attribute(
        "aria-label", re.compile("per 15-minute interval")
    )
    expect(chart.locator(".gaps")).to_contain_text("without readings are gaps")
    # The energy measured across the gap is one outlined bar as wide as the gap, at its
    # average; every other bar is one interval wide.
    widths = [float(w) for w in chart.locator("rect.bar:not(.spread)").evaluate_all(
        "bars => bars.map(b => b.getAttribute('width'))")]  # fmt: skip
    spread = chart.locator("rect.bar.spread")
    expect(spread).to_have_count(1)
    assert float(spread.get_attribute("width") or 0) > 5 * max(widths)
    assert "readings missing" in (spread.locator("title").text_content() or "")
    ticks = chart.locator("text.tick").evaluate_all("ts => ts.map(t => t.textContent)")
    assert any(re.match(r"^\d\d [A-Z][a-z]{2} \d\d:\d\d$", t) for t in ticks), ticks
    expect(chart).to_contain_text("kWh")
    _shot(page, "consumer")
    assert errors == []


def test_a_consumer_sees_her_cost_and_downloads_a_bill_that_verifies(
    browser: Browser, demo: Demo
) -> None:
    system = demo.system
    assert system.billing is not None
    deadline = time.monotonic() + 60  # a simulated day is 24 s: wait for a whole one
    while system.bill_days() == 0 and not system.billing.bills("MGD0000000001"):
        assert time.monotonic() < deadline, "no whole day to bill"
        time.sleep(1)
    page, errors = new_page(browser)
    log_in(page, demo, "alice")
    cost = page.locator("#cost-MGD0000000001")
    expect(cost.locator(".cost-now")).to_have_text(re.compile(r"^\d+\.\d\d EUR$"))
    expect(cost).to_contain_text("estimate from your tariff")
    row = page.locator("table.bills tr[data-bill]").first
    with page.expect_download() as dl:
        row.locator("a.bill-json").click()
    signed = json.loads(Path(dl.value.path()).read_text())
    assert dl.value.suggested_filename.startswith("bill-MGD0000000001-")
    key = VerifyingKey.from_bytes(system.billing.verifying_key.to_bytes())
    verify_bill(signed["document"], bytes.fromhex(signed["signature"]), key)  # as `bill verify`
    row.get_by_role("link", name="view").click()
    page.wait_for_url(re.compile(r"/ui/bills/MGD0000000001/\d+$"))
    expect(page.locator("h1")).to_have_text("Electricity bill")
    total = signed["document"]["total_e4"] / 10000
    expect(page.locator("tr.total")).to_contain_text(f"{total:.2f} EUR")
    _shot(page, "bill")
    # Another consumer's bill, or a bill that is not this meter's, is not found.
    assert page.goto(f"{demo.url}/ui/bills/MGD0000000002/1").status == 404
    assert errors == []


def test_live_charts_grouped_events_and_a_lifecycle_move(
    demo: Demo, olga: tuple[Page, list[str]], erik: tuple[Page, list[str]]
) -> None:
    page, errors = olga
    store = demo.system.store
    assert store is not None
    now = int(time.time())
    for at in (now - 1_000, now - 990, now - 100):  # two of the log's windows: one row shown
        store.security_event(at=at, event="authentication_failed", detail=f"bad tag at {at}",
                             meter_id="MGD0000001005", summarise=True)  # fmt: skip
    page.goto(f"{demo.url}/")
    events = page.locator("#events-panel tr", has_text="MGD0000001005")
    expect(events).to_have_count(1)
    expect(events.locator(".count")).to_have_text("3")
    expect(events).to_contain_text(f"bad tag at {now - 100}")
    page.select_option("form[data-target=events-panel] select[name=event]", "authentication_failed")
    expect(page.locator("#events-panel tr", has_text="MGD0000001005")).to_have_count(1)
    # The fleet's live charts fill in as the samples come (one every 5 s).
    spark = page.locator("[data-panel=activity] figure", has_text="Readings stored")
    expect(spark.locator("polyline")).to_be_attached(timeout=20_000)
    expect(spark.locator("strong")).to_have_text(re.compile(r"^[\d,]+$"))
    # An engineer disables a meter from its page (audited); the page then offers to enable it.
    epage, eerrors = erik
    epage.goto(f"{demo.url}/ui/meters/MGD0000001005")
    expect(epage.locator("button.move-revoke")).to_have_count(0)  # the security admin's
    epage.locator("button.move-disable").click()
    expect(epage.locator("#meter-panel .state-disabled")).to_have_text("disabled")
    expect(epage.locator("button.move-enable")).to_be_visible()
    assert any(a == "meter_disabled" for a, _ in _audit_actions(demo))
    assert errors == [] and eerrors == []
