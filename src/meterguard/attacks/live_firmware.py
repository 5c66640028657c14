"""Malware injection against the running fleet: bad images campaigned to a live meter.

The firmware range of :mod:`meterguard.attacks.firmware` plays every attack on the update
path against a meter agent of its own. These plays go further: they put a bad image on the
running system's own firmware endpoint and have two utility people (the demo's ``olga``
proposes, ``erik`` approves: dual control is not the defence here) campaign it to one live
meter of the fleet through the web API, exactly as a real update travels: a signed command,
the meter's TUF client over mutual TLS, its checks, its signed status report.

* **tampered**: the image is signed and published, then the attacker, who can write to the
  distribution server, changes the bytes it serves (malware written over the payload's tail);
* **downgrade**: an older image, properly signed, below the meter's security counter (a
  rollback to a vulnerable version);
* **wrong model**: an image properly signed for another meter model.

Each passes when the meter refused with the expected reason, still runs what it ran, and the
head-end recorded the refusal as a security event. The images are signed with the
repository's offline targets key where the demo keeps it (``firmware/offline``); each is
published once and reused by later runs, and the served file a tampered run changed is put
back afterwards. A deployment whose offline keys are elsewhere gets an error, not a pass.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import httpx

from meterguard.attacks.scenario import Attempt, Play, Profile
from meterguard.attacks.target import Target
from meterguard.errors import ConflictError, NotFoundError
from meterguard.firmware.image import build_image, image_name
from meterguard.firmware.repository import FirmwareRepository, TargetEntry

__all__ = ["LIVE_IMAGES", "LiveImage", "campaign"]

CAMPAIGN_DEADLINE = 120.0
"""Longest wait for the live meter's report on a campaign."""
PROPOSER, APPROVER = "olga", "erik"


@dataclass(frozen=True, slots=True)
class LiveImage:
    """A bad image for the fleet's meters (vendor MGD, model MG-1, hardware A)."""

    name: str
    summary: str
    version: str
    security_version: int
    model: str
    refusal: str
    """The meter's status report: ``refused:<reason>``."""
    requirements: tuple[str, ...]
    tamper: bool = False
    """Change the served bytes after signing (the distribution server is the attacker's)."""


LIVE_IMAGES = (
    LiveImage(
        "tampered", "Malware written into a signed image on the distribution server",
        "9.0.0", 9, "MG-1", "refused:tampered", ("FW-3", "FW-12", "FW-14"), tamper=True,
    ),
    LiveImage(
        "downgrade", "An older signed image below the meter's security counter (a rollback)",
        "0.9.0", 0, "MG-1", "refused:downgrade", ("FW-8", "FW-12"),
    ),
    LiveImage(
        "wrong-model", "An image signed for another meter model",
        "1.0.0", 1, "MG-2", "refused:incompatible", ("FW-9", "FW-12"),
    ),
)  # fmt: skip


def _published(t: Target, image: LiveImage) -> TargetEntry:
    """The image, signed into the running system's repository (once: later runs reuse it)."""
    repo = FirmwareRepository(t.firmware_dir)
    name = image_name("MGD", image.model, "A", image.version)
    try:
        return repo.target(name)
    except NotFoundError:
        pass  # not published yet: sign it now
    data = build_image(
        vendor="MGD",
        model=image.model,
        hw_revision="A",
        version=image.version,
        security_version=image.security_version,
        settings={"creep_threshold_w": 0, "power_quality": False},
        payload_size=64 * 1024,
    )
    try:
        return repo.add_image(data, now=dt.datetime.now(dt.UTC))
    except ConflictError:  # another run published it meanwhile
        return repo.target(name)


def _meter(c: httpx.Client, mid: str) -> dict[str, Any]:
    rows = c.get("/api/v1/firmware/meters").json()["meters"]
    return dict(next((m for m in rows if m["meter_id"] == mid), {}))


def _campaign(c: httpx.Client, cid: int) -> dict[str, Any]:
    for item in c.get("/api/v1/firmware/campaigns").json()["campaigns"]:
        if item["campaign"]["id"] == cid:
            return dict(item)
    return {}


def _logged_in(t: Target, c: httpx.Client, user: str) -> None:
    r = t.login(c, user)
    if r.status_code == 401:  # a code used by an earlier run in this window: the next one
        r = t.login(c, user)
    if r.status_code != 200:
        raise ConnectionError(f"{user} could not log in: {r.status_code}")


def campaign(image: LiveImage) -> Play:
    """The play that campaigns ``image`` to the victim's live meter."""

    def play(t: Target, _p: Profile) -> Attempt:
        mid = t.role("victim")
        entry = _published(t, image)
        served = t.firmware_dir / "targets" / f"{entry.sha256}.{entry.name}"
        original = served.read_bytes()
        try:
            if image.tamper:
                malware = b"\x90" * 16 + b"malware"  # over the payload's tail, same length
                served.write_bytes(original[: -len(malware)] + malware)
            with t.web() as olga, t.web() as erik:
                _logged_in(t, olga, PROPOSER)
                _logged_in(t, erik, APPROVER)
                before = _meter(olga, mid)
                r = olga.post(
                    "/api/v1/firmware/campaigns",
                    json={"image": entry.name, "meters": mid, "deadline_hours": 1,
                          "reason": f"meterguard attack: {image.name} image"},
                )  # fmt: skip
                if r.status_code != 201:
                    return Attempt(True, f"the head-end refused the campaign: {r.status_code}")
                cid = int(r.json()["campaign"]["id"])
                r = erik.post(f"/api/v1/firmware/campaigns/{cid}/approve")
                if r.status_code != 200:
                    return Attempt(False, f"the approval failed: {r.status_code} {r.text[:200]}")
                deadline, got = time.monotonic() + CAMPAIGN_DEADLINE, {}
                while time.monotonic() < deadline:
                    got = _campaign(olga, cid)
                    if got and set(got["counts"]) & {"staged", "failed", "updated"}:
                        break
                    time.sleep(0.5)
                after = _meter(olga, mid)
        finally:
            served.write_bytes(original)
        reasons = {why for meter, why in got.get("failures", []) if meter == mid}
        fields = ("version", "slot", "counter")
        # What the meter runs is unchanged (a meter that never reported had nothing to compare).
        same = bool(after) and all(before.get(k) in (None, after.get(k)) for k in fields)
        return Attempt(
            reasons == {image.refusal} and same and got.get("counts") == {"failed": 1},
            f"campaign {cid} of {entry.name} to {mid}: {got.get('counts')}, reasons"
            f" {sorted(reasons) or 'none'}; the meter ran {before.get('version')} (slot"
            f" {before.get('slot')}, counter {before.get('counter')}) before and"
            f" {after.get('version')} (slot {after.get('slot')}, counter"
            f" {after.get('counter')}) after",
            left=f"a failed campaign {cid} on the firmware page; {entry.name} stays published",
        )

    play.__doc__ = image.summary
    return play
