"""The dashboard: server-rendered pages and live panels over the same services as the API.

(No ``from __future__ import annotations``: FastAPI reads these routes' annotations.)

* ``/login`` — the two login steps (password, then TOTP for utility roles), driven by
  ``static/app.js`` against the JSON API;
* ``/`` — the caller's dashboard: consumers get their meters (usage chart, alarms, bills,
  who accessed their data, consent); utility roles get fleet health, alarms with
  acknowledge/clear, dual-control commands, meters and security events;
* ``/ui/panel/<name>`` — one panel's HTML, which the page re-fetches every two seconds
  (live state while a command waits for its meter, an alarm arrives, …).

Jinja2 autoescapes every value; charts are SVG drawn by the server; the only script is
``/static/app.js`` — so the strict CSP of API-8 holds with no exception. Every page and
panel route depends on a :class:`PageGuard` (a :class:`~meterguard.headend.api.app.Guard`
that sends a browser without a session to ``/login``), so the route-role table covers
them too. Actions (acknowledge, approve, …) are API calls with the CSRF header; the
pages themselves only read.
"""

import datetime as dt
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from meterguard.errors import AccessDeniedError, InvalidValueError, NotFoundError
from meterguard.headend.api.deps import Services
from meterguard.headend.api.guard import Guard
from meterguard.headend.services.accounts import ACCOUNT_READERS, ROLES, Principal
from meterguard.headend.services.alarms import ACK_ROLES, CLEAR_ROLES, meaning
from meterguard.headend.services.commands import COMMAND_ROLES
from meterguard.headend.services.fleet import STATES, SUPPLY_LABELS, Search
from meterguard.headend.services.meters import MOVES
from meterguard.headend.services.meters import ROLES as LIFECYCLE_ROLES
from meterguard.headend.services.redteam import REPORT_READERS
from meterguard.headend.services.theft import (
    GRID_ROLES,
    INVESTIGATOR_ROLES,
    OUTCOMES,
    SUSPECT_THRESHOLD,
)
from meterguard.headend.services.usage import USES, Bucket
from meterguard.headend.store.audit import SUMMARY_WINDOW
from meterguard.headend.web.charts import (
    STALE_AFTER,
    STEP,
    UsageChart,
    activity_charts,
    health_chart,
    usage_chart,
)

__all__ = ["PAGE_PUBLIC", "PageGuard", "add_pages"]

HERE = Path(__file__).parent
PAGE_PUBLIC = frozenset({"/login"})
PERIODS = {"day": (86400, "interval"), "week": (7 * 86400, "hour"), "month": (30 * 86400, "day")}
FLEET_ROWS = 50
PANEL_ROWS = 100
EVENT_DAYS = 7
"""Security events are grouped over this many recent days (the log keeps them all)."""
BILL_ROWS = 24
STAFF_SPAN = {"interval": 86400, "hour": 7 * 86400, "day": 30 * 86400, "month": 366 * 86400}
"""How far back a meter page's consumption goes, at the consented granularity."""


class PageGuard(Guard):
    """A :class:`Guard` that sends a browser without a valid session to the login page."""

    def __call__(
        self, request: Request, x_csrf_token: Annotated[str | None, Header()] = None
    ) -> Principal:
        """As :meth:`Guard.__call__`, but 401 becomes a redirect to ``/login``."""
        try:
            return super().__call__(request, x_csrf_token)
        except HTTPException as exc:
            if exc.status_code == 401:
                raise HTTPException(303, headers={"Location": "/login"}) from None
            raise


def _utc(ts: int | None) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _when(ts: int | None, sim: bool = False) -> Markup:
    """A time as ``<time>``: UTC in the text, ISO in ``datetime``.

    The page's script shows it in the viewer's time zone; ``sim`` marks a meter's simulated
    clock (a demo's), which the page labels as such.
    """
    if ts is None:
        return Markup("never")
    iso = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    flag = Markup(" data-sim") if sim else Markup("")
    return Markup('<time datetime="{}"{}>{} UTC</time>').format(iso, flag, _utc(ts))


_FLEET_PARAMS = frozenset(
    {"q", "state", "alarms", "supply", "feeder", "firmware", "silent_hours", "sort", "order",
     "page", "per_page"}
)  # fmt: skip
_FLEET_COLUMNS = (
    ("id", "Meter"),
    ("state", "State"),
    ("last_reading", "Last reading"),
    ("alarms", "Open alarms"),
    ("supply", "Supply"),
    ("feeder", "Feeder"),
    ("firmware", "Firmware"),
)


def _search(params: Mapping[str, str]) -> Search:
    """The fleet list's query parameters (as the API takes them).

    Raises:
        ValueError: a number that is not one.
    """
    return Search(
        q=params.get("q", "")[:64],
        state=params.get("state", "")[:32],
        alarms=params.get("alarms", "")[:16],
        supply=params.get("supply", "")[:16],
        feeder=params.get("feeder", "")[:80],
        firmware=params.get("firmware", "")[:80],
        silent_hours=int(params.get("silent_hours") or 0),
        sort=params.get("sort", "id")[:16],
        order=params.get("order", "asc")[:4],
        page=int(params.get("page") or 1),
        per_page=int(params.get("per_page") or 50),
    )


def _chart(buckets: list[Bucket], granularity: str, meter: str, span: int) -> UsageChart:
    """The usage chart on a time axis of ``span`` seconds up to the newest period."""
    if not buckets:
        return usage_chart(buckets, granularity, meter)
    end = buckets[-1].start + STEP[granularity]
    return usage_chart(buckets, granularity, meter, start=end - span, end=end)


def _money(e4: int, currency: str) -> str:
    return f"{e4 / 10000:.2f} {currency}"


def add_pages(app: FastAPI, svc: Services) -> None:
    """Add the dashboard's routes and static files to ``app``."""
    accounts, store, data = svc.accounts, svc.store, svc.data
    commands, billing = svc.commands, svc.billing
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = _utc
    env.filters["when"] = _when
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    page = PageGuard(ROLES)

    def render(name: str, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**ctx))

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page() -> HTMLResponse:
        return render("login.html", who=None, csrf="")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(request: Request, who: Annotated[Principal, Depends(page)]) -> HTMLResponse:
        csrf = request.state.session.csrf
        if who.role == "consumer":
            meters = accounts.meters(who)
            return render(
                "consumer.html",
                who=who,
                csrf=csrf,
                meters=meters,
                consents={m: data.consent(m).granularity for m in meters},
                uses=USES,
                shared={
                    m: {u: c.granularity for u, c in data.use_consents_of(who, m).items()}
                    for m in meters
                },
            )
        feeders, versions = svc.fleet.facets(who)
        return render(
            "utility.html",
            who=who,
            csrf=csrf,
            states=STATES,
            feeders=feeders,
            versions=versions,
            event_names=sorted(store.security_event_names(since=svc.now() - EVENT_DAYS * 86400)),
            can_command=commands is not None and who.role in COMMAND_ROLES,
            can_see_accounts=who.role in ACCOUNT_READERS,
            can_see_attacks=svc.attacks is not None and who.role in REPORT_READERS,
            has_firmware=svc.firmware is not None,
            images=svc.firmware.images() if svc.firmware is not None else [],
            has_grid=svc.theft is not None and who.role in GRID_ROLES,
            can_investigate=svc.theft is not None and who.role in INVESTIGATOR_ROLES,
        )

    def panel_usage(who: Principal, meter: str, period: str) -> HTMLResponse:
        if who.role != "consumer":
            raise HTTPException(404)
        span, granularity = PERIODS.get(period, PERIODS["week"])
        try:  # up to the meter's newest reading: the meter's clock, not the server's
            buckets = data.recent_usage(who, meter, span, granularity, now=svc.now())
        except (NotFoundError, AccessDeniedError):
            raise HTTPException(404) from None
        return render("panel_usage.html", chart=_chart(buckets, granularity, meter, span))

    def panel_alarms(who: Principal, meter: str, params: Mapping[str, str]) -> HTMLResponse:
        try:  # the service decides whose alarms and which questions
            found = svc.alarms.list(
                who,
                meter=meter,
                show=params.get("show", "active"),
                severity=params.get("severity", ""),
                limit=PANEL_ROWS + 1,
            )
        except InvalidValueError:
            raise HTTPException(422) from None
        alarms = [
            {
                "id": a.id,
                "meter_id": a.meter_id,
                "name": m.name,
                "severity": m.severity,
                "explanation": m.explanation,
                "raised": a.raised_at,
                "received": a.received_at,
                "state": a.state,
                "acknowledged": (a.acknowledged_by, a.acknowledged_at),
                "cleared": (a.cleared_by, a.cleared_at),
            }
            for a, m in found[:PANEL_ROWS]
        ]
        return render(
            "panel_alarms.html",
            alarms=alarms,
            more=len(found) > PANEL_ROWS,
            consumer=who.role == "consumer",
            can_ack=who.role in ACK_ROLES,
            can_clear=who.role in CLEAR_ROLES,
            simulated=svc.fleet.simulated,
        )

    def panel_badge(who: Principal) -> HTMLResponse:
        return render("panel_badge.html", open=svc.alarms.open_count(who))

    def panel_bills(who: Principal, meter: str) -> HTMLResponse:
        if billing is None:
            raise HTTPException(404)
        bills = billing.bills(meter, limit=BILL_ROWS + 1)
        try:  # staff reads of bills go to the consumer's access log (API-11)
            data.bills(who, meter, bills, now=svc.now())
        except NotFoundError:
            raise HTTPException(404) from None
        out = []
        for b in bills[:BILL_ROWS]:
            doc = b.document
            out.append(
                {
                    "id": b.id,
                    "meter_id": meter,
                    "period": f"{_utc(b.period_start)} to {_utc(b.period_end)}",
                    "kwh": f"{sum(x['wh'] for x in doc['lines']) / 1000:.1f}",
                    "total": _money(doc["total_e4"], doc["tariff"]["currency"]),
                    "signature": b.signature,
                }
            )
        key = billing.verifying_key.to_bytes().hex()
        return render("panel_bills.html", bills=out, key=key, more=len(bills) > BILL_ROWS)

    def panel_cost(who: Principal, meter: str) -> HTMLResponse:
        if billing is None or who.role != "consumer":
            raise HTTPException(404)
        try:
            data.visible(who, meter)
            newest = store.latest_interval(meter)
            if newest is None:
                return render("panel_cost.html", now=None, before=None, why="no reading yet")
            now_doc, before_doc = billing.so_far(meter, newest + 900)
        except NotFoundError:
            raise HTTPException(404) from None
        except InvalidValueError as exc:
            return render("panel_cost.html", now=None, before=None, why=str(exc))

        def summary(doc: dict[str, Any]) -> dict[str, Any]:
            wh = sum(x["wh"] for x in doc["lines"])
            return {
                "kwh": f"{wh / 1000:,.1f}",
                "wh": wh,
                "total": _money(doc["total_e4"], doc["tariff"]["currency"]),
                "e4": doc["total_e4"],
                "start": doc["period"]["start"],
                "end": doc["period"]["end"],
                "tariff": doc["tariff"]["name"],
            }

        now_s = summary(now_doc)
        before_s = summary(before_doc) if before_doc is not None else None
        change = None
        if before_s is not None and before_s["wh"]:
            change = round((now_s["wh"] - before_s["wh"]) / before_s["wh"] * 100)
        return render("panel_cost.html", now=now_s, before=before_s, change=change, why="")

    @app.get("/ui/bills/{meter_id}/{bill_id}", response_class=HTMLResponse, include_in_schema=False)
    def bill_page(
        meter_id: str, bill_id: int, request: Request, who: Annotated[Principal, Depends(page)]
    ) -> HTMLResponse:
        if billing is None:
            raise HTTPException(404)
        try:
            data.visible(who, meter_id[:32])
            bill = billing.bill(meter_id, bill_id)
            data.bills(who, meter_id, [bill], now=svc.now())
        except NotFoundError:
            raise HTTPException(404) from None
        doc = bill.document
        cur = doc["tariff"]["currency"]
        lines = [
            {"band": x["band"], "kwh": f"{x['wh'] / 1000:,.3f}", "rate": _money(x["rate_e4"], cur),
             "charge": _money(x["charge_e4"], cur)}
            for x in doc["lines"]
        ]  # fmt: skip
        return render(
            "bill.html",
            who=who,
            csrf=request.state.session.csrf,
            bill=bill,
            doc=doc,
            lines=lines,
            standing=_money(doc["standing_e4"], cur),
            total=_money(doc["total_e4"], cur),
            key=billing.verifying_key.to_bytes().hex(),
            simulated=svc.fleet.simulated,
        )

    def panel_access(who: Principal, meter: str) -> HTMLResponse:
        if who.role != "consumer":
            raise HTTPException(404)
        try:
            log = data.access_log(who, meter)
        except NotFoundError:
            raise HTTPException(404) from None

        def name(actor: str) -> str:  # consumers are recorded by pseudonym (PRIV-4)
            return "you" if actor == who.actor else actor

        rows = [{"at": _utc(a), "actor": name(b), "role": r, "what": w} for a, b, r, w in log]
        return render("panel_access.html", accesses=rows)

    def panel_health() -> HTMLResponse:
        return render(
            "panel_health.html",
            chart=health_chart(store.fleet_health(stale_after=STALE_AFTER)),
            counts=store.counts(),
        )

    def panel_activity() -> HTMLResponse:
        if svc.metrics is None:
            return render("panel_activity.html", charts=[], window=0)
        samples = svc.metrics.sample(time.monotonic())
        return render(
            "panel_activity.html",
            charts=activity_charts(samples),
            window=round((samples[-1].at - samples[0].at) / 60) if len(samples) > 1 else 0,
        )

    def panel_fleet(who: Principal, params: Mapping[str, str]) -> HTMLResponse:
        try:
            search = _search(params)
            found = svc.fleet.page(who, search)
        except (InvalidValueError, ValueError):
            raise HTTPException(422) from None
        except AccessDeniedError:
            raise HTTPException(404) from None
        supply = SUPPLY_LABELS
        meters = [
            {
                "meter_id": m.meter_id,
                "state": m.state,
                "last": _utc(m.last_reading_at),
                "open_alarms": m.open_alarms,
                "supply": supply.get(m.supply, "?"),
                "feeder": m.feeder,
                "firmware": m.firmware,
            }
            for m in found.rows
        ]
        base = {k: v for k, v in params.items() if k in _FLEET_PARAMS and v}
        pages = max(1, -(-found.total // search.per_page))

        def query(**change: object) -> str:
            return urlencode({**base, **{k: str(v) for k, v in change.items()}})

        def flip(key: str) -> str:
            order = "desc" if search.sort == key and search.order == "asc" else "asc"
            return query(sort=key, order=order, page=1)

        first = (search.page - 1) * search.per_page + 1
        return render(
            "panel_fleet.html",
            meters=meters,
            total=found.total,
            filtered=any(k not in ("sort", "order", "page", "per_page") for k in base),
            first=first,
            last=first + len(meters) - 1,
            page=search.page,
            pages=pages,
            prev_query=query(page=search.page - 1) if search.page > 1 else "",
            next_query=query(page=search.page + 1) if search.page < pages else "",
            sort=search.sort,
            order=search.order,
            columns=_FLEET_COLUMNS,
            sort_query={key: flip(key) for key, _ in _FLEET_COLUMNS if key},
            can_command=commands is not None and who.role in COMMAND_ROLES,
            simulated=svc.fleet.simulated,
        )

    def meter_context(who: Principal, meter_id: str) -> dict[str, Any]:
        try:
            m = svc.fleet.meter(who, meter_id)
        except (NotFoundError, AccessDeniedError):
            raise HTTPException(404) from None
        d, supply = m.detail, SUPPLY_LABELS
        return {
            "m": d,
            "last": _utc(d.row.last_reading_at),
            "supply": supply.get(d.row.supply, "?"),
            "created": _utc(d.created_at),
            "reported": _utc(d.firmware_reported_at) if d.firmware_reported_at else "never",
            "keys": m.keys,
            "certificates": m.certificates,
            "alarms": [
                {
                    "id": a.id,
                    "name": meaning(a.code).name,
                    "severity": meaning(a.code).severity,
                    "raised": _utc(a.raised_at),
                    "received": _utc(a.received_at),
                    "state": a.state,
                }
                for a in d.alarms
            ],
            "events": [
                {
                    "at": _utc(e.at),
                    "last": _utc(e.last_at),
                    "event": e.event,
                    "count": e.count,
                    "detail": e.detail,
                }
                for e in d.events
            ],
            "commands": commands.list(meter_id=meter_id, limit=20) if commands else [],
            "can_ack": who.role in ACK_ROLES,
            "can_clear": who.role in CLEAR_ROLES,
            "can_command": commands is not None and who.role in COMMAND_ROLES,
            "simulated": svc.fleet.simulated,
            "me": who.username,
            # The lifecycle moves this caller may make on this meter now (the service's table).
            "moves": [
                (name, move.to)
                for name, move in MOVES.items()
                if svc.meters is not None
                and name in LIFECYCLE_ROLES
                and who.role in LIFECYCLE_ROLES[name]
                and d.row.state in move.expect
            ],
        }

    def panel_meter_usage(who: Principal, meter_id: str) -> HTMLResponse:
        """A meter's consumption for staff, as finely as its consumer consented (PRIV-1).

        Loaded once per click: each look goes to the consumer's access log (API-11).
        """
        try:
            svc.fleet.meter(who, meter_id)  # a utility role, a meter that exists
            finest = data.consent(meter_id).granularity
            span = STAFF_SPAN[finest]
            buckets = data.recent_usage(who, meter_id, span, finest, now=svc.now())
        except (NotFoundError, AccessDeniedError):
            raise HTTPException(404) from None
        return render("panel_usage.html", chart=_chart(buckets, finest, meter_id, span))

    def panel_meter(who: Principal, meter_id: str) -> HTMLResponse:
        return render("panel_meter.html", **meter_context(who, meter_id))

    @app.get("/ui/meters/{meter_id}", response_class=HTMLResponse, include_in_schema=False)
    def meter_page(
        meter_id: str, request: Request, who: Annotated[Principal, Depends(page)]
    ) -> HTMLResponse:
        if who.role == "consumer":
            raise HTTPException(404)  # consumers have their own page
        ctx = meter_context(who, meter_id[:32])
        return render(
            "meter.html",
            who=who,
            csrf=request.state.session.csrf,
            meter_id=meter_id,
            consent=data.consent(meter_id).granularity,
            **ctx,
        )

    def panel_commands(who: Principal) -> HTMLResponse:
        if commands is None:
            raise HTTPException(404)
        return render(
            "panel_commands.html",
            commands=commands.list(limit=50),
            can_command=who.role in COMMAND_ROLES,
            me=who.username,
        )

    def panel_firmware(who: Principal) -> HTMLResponse:
        fw = svc.firmware
        if fw is None:
            raise HTTPException(404)
        statuses = [
            {
                "campaign": st.campaign,
                "deadline": _utc(st.campaign.deadline),
                "counts": st.counts,
                "failures": st.failures,
            }
            for st in fw.campaigns()
        ]
        rows = fw.meters()
        shown = [
            {
                "meter_id": m.meter_id,
                "version": m.version,
                "slot": m.slot,
                "counter": m.counter,
                "result": m.result,
                "reported": _utc(m.reported_at) if m.reported_at else "",
                "attestation": m.attestation,
                "attested": _utc(m.attested_at) if m.attested_at else "",
            }
            for m in rows[:FLEET_ROWS]
        ]
        return render(
            "panel_firmware.html",
            campaigns=statuses,
            versions=fw.versions(),
            meters=shown,
            more=max(len(rows) - FLEET_ROWS, 0),
            can_command=who.role in COMMAND_ROLES,
            me=who.username,
        )

    def panel_grid(who: Principal) -> HTMLResponse:
        if svc.theft is None:
            raise HTTPException(404)
        try:  # the service decides who sees the topology
            feeders = svc.theft.feeders(who)
        except AccessDeniedError:
            raise HTTPException(404) from None
        return render("panel_grid.html", feeders=feeders)

    def panel_theft(who: Principal) -> HTMLResponse:
        theft = svc.theft
        if theft is None:
            raise HTTPException(404)
        try:  # the service decides who sees suspicion; for anyone else the panel does not exist
            suspects = theft.suspects(who, limit=FLEET_ROWS)
        except AccessDeniedError:
            raise HTTPException(404) from None
        rows = [
            {
                "meter_id": s.meter_id,
                "score": s.score,
                "week_end": _utc(s.week_end),
                "evidence": s.evidence,
                "case": s.case,
            }
            for s in suspects
        ]
        return render(
            "panel_theft.html",
            suspects=rows,
            threshold=SUSPECT_THRESHOLD,
            outcomes=OUTCOMES,
            me=who.username,
            trained=str(theft.scorer_if_ready() or "still training"),
        )

    def panel_accounts(who: Principal) -> HTMLResponse:
        if who.role not in ACCOUNT_READERS:
            raise HTTPException(404)
        listed = sorted(
            accounts.accounts(now=svc.now()), key=lambda a: (-a.mfa_failures, a.username)
        )
        rows = [
            {
                "name": a.username,
                "role": a.role,
                "disabled": a.disabled,
                "failures": a.mfa_failures,
                "last": _utc(a.mfa_last_failure) if a.mfa_last_failure else "",
                "locked": _utc(a.mfa_locked_until) if a.mfa_locked_until else "",
            }
            for a in listed
        ]
        return render("panel_accounts.html", accounts=rows[:FLEET_ROWS], total=len(rows))

    def panel_attacks(who: Principal) -> HTMLResponse:
        if svc.attacks is None or who.role not in REPORT_READERS:
            raise HTTPException(404)
        try:
            doc, problem = svc.attacks.last(), ""
        except InvalidValueError as exc:
            doc, problem = None, str(exc)
        return render("panel_attacks.html", report=doc, problem=problem)

    def panel_events(params: Mapping[str, str]) -> HTMLResponse:
        event = params.get("event", "")[:64]
        groups = [
            {"meter_id": m, "event": e, "count": n, "rows": k, "first": first, "last": last,
             "detail": detail}
            for m, e, n, k, first, last, detail in store.security_event_groups(
                since=svc.now() - EVENT_DAYS * 86400, event=event
            )
        ]  # fmt: skip
        return render(
            "panel_events.html",
            groups=groups,
            window=SUMMARY_WINDOW,
            chosen=event,
            days=EVENT_DAYS,
        )

    @app.get("/ui/panel/{name}", response_class=HTMLResponse, include_in_schema=False)
    def panel(
        name: str,
        request: Request,
        who: Annotated[Principal, Depends(page)],
        meter: str = "",
        period: str = "week",
    ) -> HTMLResponse:
        consumer = who.role == "consumer"
        if name == "usage":
            return panel_usage(who, meter, period)
        if name == "alarms":
            return panel_alarms(who, meter, request.query_params)
        if name == "badge":
            return panel_badge(who)
        if name == "bills":
            return panel_bills(who, meter)
        if name == "cost":
            return panel_cost(who, meter)
        if name == "access":
            return panel_access(who, meter)
        if consumer:
            raise HTTPException(404)  # the utility panels do not exist for consumers
        if name == "health":
            return panel_health()
        if name == "activity":
            return panel_activity()
        if name == "fleet":
            return panel_fleet(who, request.query_params)
        if name == "meter":
            return panel_meter(who, meter)
        if name == "meter_usage":
            return panel_meter_usage(who, meter)
        if name == "commands":
            return panel_commands(who)
        if name == "events":
            return panel_events(request.query_params)
        if name == "firmware":
            return panel_firmware(who)
        if name == "accounts":
            return panel_accounts(who)
        if name == "grid":
            return panel_grid(who)
        if name == "theft":
            return panel_theft(who)
        if name == "attacks":
            return panel_attacks(who)
        raise HTTPException(404)
