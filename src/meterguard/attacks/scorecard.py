"""The scorecard of an attack run: JSON for CI and the dashboard, a self-contained HTML report.

:func:`report` turns :class:`~meterguard.attacks.scenario.Result` objects into one JSON-able
dict (every scenario with its outcome, time to detection, evidence found and missing, what it
left; a per-threat summary); :func:`html` renders that dict as one HTML page with inline CSS
and no external asset, every value escaped. Neither reads anything nor holds a secret: the
plays never put one in a result.
"""

from __future__ import annotations

import datetime as dt
import html as _html
from collections.abc import Sequence
from typing import Any

from meterguard.attacks.scenario import Outcome, Result, Threat

__all__ = ["html", "report", "summary"]


def summary(results: Sequence[Result]) -> dict[str, dict[str, int]]:
    """Per threat: how many scenarios passed, failed, errored."""
    out: dict[str, dict[str, int]] = {}
    for t in Threat:
        mine = [r for r in results if r.scenario.threat is t]
        if mine:
            out[t.value] = {o.value: sum(1 for r in mine if r.outcome is o) for o in Outcome}
    return out


def report(results: Sequence[Result], *, target: str, profile: str, took: float) -> dict[str, Any]:
    """The run as one dict (``passed``: every scenario passed)."""
    return {
        "meterguard_attack_report": 1,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "target": target,
        "profile": profile,
        "duration_s": round(took, 1),
        "passed": bool(results) and all(r.outcome is Outcome.PASSED for r in results),
        "summary": summary(results),
        "scenarios": [r.to_json() for r in results],
    }


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1b1f24}
h1{font-size:1.4em}table{border-collapse:collapse;width:100%;margin:1em 0}
td,th{border:1px solid #d0d7de;padding:.35em .5em;vertical-align:top;text-align:left}
th{background:#f6f8fa}.passed{color:#116329;font-weight:600}
.failed,.error{color:#a40e26;font-weight:600}details{margin:.2em 0}
code{font-size:12px;white-space:pre-wrap}small{color:#57606a}
"""


def _e(x: object) -> str:
    return _html.escape(str(x), quote=True)


def html(doc: dict[str, Any]) -> str:
    """A self-contained HTML report of :func:`report`'s dict."""
    rows = []
    for s in doc["scenarios"]:
        ttd = s["time_to_detection_s"]
        evidence = "".join(f"<li>{_e(f)}</li>" for f in s["evidence_found"])
        missing = "".join(f"<li>missing: {_e(m)}</li>" for m in s["evidence_missing"])
        why = f"<li>{_e(s['no_record'])}</li>" if s["no_record"] else ""
        steps = "".join(f"<li>{_e(x)}</li>" for x in s["steps"])
        left = f"<small>left: {_e(s['left'])}</small>" if s["left"] else ""
        figures = ", ".join(f"{_e(k)} = {_e(v)}" for k, v in s["figures"].items())
        rows.append(
            f"<tr><td>{_e(s['threat'])}</td><td><b>{_e(s['id'])}</b><br>{_e(s['title'])}"
            f"<br><small>{_e(s['capability'])}; {_e(', '.join(s['requirements']))}</small>"
            f"<details><summary>steps</summary><ol>{steps}</ol></details></td>"
            f'<td class="{_e(s["outcome"])}">{_e(s["outcome"])}</td>'
            f"<td>{'' if ttd is None else _e(f'{ttd:.2f} s')}</td>"
            f"<td>expected: {_e(s['expected'])}<br><code>{_e(s['detail'])}</code>"
            f"<ul>{evidence}{missing}{why}</ul>"
            f"{f'<small>{figures}</small><br>' if figures else ''}"
            f"{left}</td></tr>"
        )
    summary_rows = "".join(
        f"<tr><td>{_e(t)}</td><td>{c['passed']}</td><td>{c['failed']}</td><td>{c['error']}</td>"
        "</tr>"
        for t, c in doc["summary"].items()
    )
    verdict = "every scenario passed" if doc["passed"] else "NOT every scenario passed"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<title>meterguard attack report</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>meterguard attack report: {_e(verdict)}</h1>"
        f"<p>Target {_e(doc['target'])}, profile {_e(doc['profile'])}, at {_e(doc['at'])},"
        f" {_e(doc['duration_s'])} s.</p>"
        "<table><tr><th>threat</th><th>passed</th><th>failed</th><th>error</th></tr>"
        f"{summary_rows}</table>"
        "<table><tr><th>threat</th><th>scenario</th><th>outcome</th>"
        "<th>time to detection</th><th>evidence</th></tr>"
        f"{''.join(rows)}</table></body></html>\n"
    )
