"""Every scenario of ``meterguard attack``, as data: threat, capability, steps, expectations.

One tuple, :data:`SCENARIOS`, drives the command and the test suite alike. The order is the
order of a run: quiet attacks first, floods later (so no attack measures another's backlog),
the insider's TOTP brute force after the scenarios that need that insider logged in, the
theft detector's bypass last (it needs scoring rounds). :func:`select` picks scenarios by id,
by threat, or all.
"""

from __future__ import annotations

from collections.abc import Sequence

from meterguard.attacks import firmware as fw
from meterguard.attacks import live_access as acc
from meterguard.attacks import live_data as dat
from meterguard.attacks import live_dos as dos
from meterguard.attacks import live_firmware as lfw
from meterguard.attacks.scenario import (
    Attempt,
    Capability,
    Expect,
    Play,
    Profile,
    Scenario,
    Threat,
)
from meterguard.attacks.target import Target
from meterguard.cosem.eventcodes import EventCode
from meterguard.errors import ConfigurationError

__all__ = ["SCENARIOS", "select"]

UA, DT, MITM, DOS, MAL, PHY = (
    Threat.UNAUTHORIZED_ACCESS,
    Threat.DATA_THEFT,
    Threat.MITM,
    Threat.DOS,
    Threat.MALWARE,
    Threat.TAMPERING,
)


def _denied(subject: str = "") -> Expect:
    return Expect("audit", "access_denied", subject, "denied")


def _event(name: str, subject: str = "compromised") -> Expect:
    return Expect("security_event", name, subject)


def _alarm(code: EventCode) -> Expect:
    return Expect("alarm", f"alarm:{int(code)}", "neighbour")


_TLS_REFUSED = r"(?i)(OpenSSL Error|certificate verify failed|unknown ca|peer did not return)"
_PASSIVE = (
    "a passive capture or a copied file is invisible to the system; the defence is that it"
    " holds nothing readable"
)


def _firmware(s: fw.FirmwareScenario) -> Play:
    def play(t: Target, _p: Profile) -> Attempt:
        if t.firmware_range is None:
            return Attempt(False, "no firmware range was given")
        with t.firmware_range() as rng:
            o = fw.run_scenario(s, rng)
        return Attempt(o.passed, f"raised {o.raised}; meter log {list(o.events)}; {o.detail}")

    play.__doc__ = s.summary
    return play


SCENARIOS: tuple[Scenario, ...] = (
    # ------------------------------------------------------------ unauthorized access
    Scenario(
        "broker-no-certificate", UA, Capability.OUTSIDER,
        "Connect to the device listener without a client certificate",
        ("open TLS to the device listener", "present no certificate"),
        "the handshake is refused", ("MQ-2",), acc.broker_no_certificate,
        (Expect("broker_log", _TLS_REFUSED),),
    ),
    Scenario(
        "broker-foreign-ca", UA, Capability.OUTSIDER,
        "A meter certificate from a rogue CA that copies our names",
        ("create a root and a device CA named like ours", "issue a meter certificate",
         "connect to the device listener"),
        "the handshake is refused", ("PKI-7", "MQ-2"), acc.broker_foreign_ca,
        (Expect("broker_log", _TLS_REFUSED),),
    ),
    Scenario(
        "broker-other-meters-topics", UA, Capability.COMPROMISED_METER,
        "A compromised meter writes on another meter's data and command topics",
        ("connect with the meter's own identity", "publish a reading on the victim's topic",
         "publish a command on the victim's command topic"),
        "both PUBACKs are 'not authorized'", ("MQ-3",), acc.broker_other_topic,
        no_record="Mosquitto logs ACL denials only at debug level (every publish would be"
        " logged): the refusal is the broker's answer; recording it is a known gap",
    ),
    Scenario(
        "broker-subscribe-everything", DT, Capability.COMPROMISED_METER,
        "A compromised meter subscribes to '#' and to the victim's commands",
        (
            "connect with the meter's identity",
            "subscribe to '#'",
            "subscribe to the victim's command topic",
            "listen for 3 s",
        ),
        "no other meter's message is delivered", ("MQ-3",), acc.broker_subscribe_all,
        no_record="the broker filters each message by the read ACL; a refused subscription"
        " is not logged by Mosquitto",
    ),
    Scenario(
        "api-without-session", UA, Capability.OUTSIDER,
        "Every protected API route without a session",
        ("GET each protected route with no cookie",),
        "401 on every route", ("API-2",), acc.api_without_session,
        no_record="anonymous requests are not security events: recording each would let anyone"
        " grow the log without bound",
    ),
    Scenario(
        "api-guessed-sessions", UA, Capability.OUTSIDER,
        "Twenty guessed session tokens",
        ("set a random 256-bit session cookie", "call a utility route", "repeat 20 times"),
        "401 every time", ("API-6",), acc.api_forged_session,
        no_record="a guessed 256-bit token is a 401 like an expired one (a guess cannot succeed)",
    ),
    Scenario(
        "consumer-bola", UA, Capability.CONSUMER,
        "A consumer reads another consumer's meter by its id",
        (
            "log in as a consumer",
            "GET readings, usage, access log and consent of a neighbour's meter",
            "GET a 30-digit meter id",
        ),
        "404 (another's meter looks like no meter), own meter 200", ("API-1",),
        acc.consumer_bola, (_denied("neighbour"),),
    ),
    Scenario(
        "role-escalation", UA, Capability.INSIDER,
        "A consumer calls utility routes; an operator creates a security administrator",
        ("consumer: GET fleet, GET security events, POST a disconnect",
         "operator: POST a security_admin account"),
        "403 every time", ("API-2", "API-10"), acc.role_escalation,
        (_denied(), Expect("audit", "access_denied", "", "denied")),
    ),
    Scenario(
        "csrf-missing", UA, Capability.OUTSIDER,
        "A forged page makes a logged-in operator's browser send a state change",
        (
            "the operator is logged in",
            "POST an on-demand read without the CSRF token, then with a wrong one",
        ),
        "403 both times", ("API-6",), acc.csrf_missing,
        (Expect("audit", "access_denied", "", "denied"),),
    ),
    Scenario(
        "session-fixation", UA, Capability.OUTSIDER,
        "A session cookie planted before the victim logs in",
        ("plant a cookie of the attacker's choosing", "the victim logs in",
         "the attacker uses the planted cookie"),
        "the login issues a new session; the planted one answers 401", ("API-6",),
        acc.session_fixation,
        no_record="a planted cookie is never a session, so there is nothing to record",
    ),
    Scenario(
        "cloned-meter-identity", UA, Capability.STOLEN_METER_KEYS,
        "A meter's certificate and key copied into a second device that runs beside it",
        (
            "copy a meter's TLS identity",
            "connect with it again and again (at most 8 times) while the real meter runs",
        ),
        "each connection takes the session over; the head-end quarantines the identity",
        ("MQ-4", "PKI-5"), acc.cloned_identity,
        (
            Expect("security_event", "session_taken_over", "cloned"),
            Expect("security_event", "identity_quarantined", "cloned"),
        ),
        within=30.0,
    ),
    Scenario(
        "password-guessing", UA, Capability.OUTSIDER,
        "Ten password guesses for an operator in a row",
        ("POST ten logins with random passwords from one address",),
        "401, then 429 with Retry-After before the password is hashed", ("API-7",),
        acc.password_guessing, (Expect("audit", "login", "", "rate_limited"),),
    ),
    Scenario(
        "totp-replay", UA, Capability.INSIDER,
        "A TOTP code seen over a shoulder, used again at once",
        (
            "the insider logs in with a code",
            "the attacker logs in with the password and the same code",
        ),
        "the second use is refused (each code once)", ("API-5",), acc.totp_replay,
        (Expect("audit", "login_totp", "", "failed"),),
    ),
    Scenario(
        "totp-brute-force", UA, Capability.INSIDER,
        "Guessing an insider's TOTP after their password",
        ("log in with the password", "five wrong codes end the pending login",
         "log in again, five more", "the right code"),
        "the pending login ends, then the account's second factor locks (429)", ("API-5",
         "API-7"), acc.totp_brute_force,
        (Expect("security_event", "mfa_session_ended"), Expect("security_event", "mfa_locked")),
    ),
    # ------------------------------------------------------------ data theft
    Scenario(
        "capture-web-session", DT, Capability.PATH,
        "A recording relay in the path of a consumer's web session",
        ("relay the consumer's HTTPS connection", "she logs in and reads her readings",
         "search the capture for her password, name, token and readings"),
        "nothing of it in the capture", ("WEB-1", "PRIV-2"), dat.capture_web_session,
        no_record=_PASSIVE,
    ),
    Scenario(
        "capture-meter-link", DT, Capability.PATH,
        "A recording relay in the path of a meter's MQTT session",
        ("relay a meter's TLS connection to the broker", "the meter sends a reading APDU",
         "search the capture for the APDU, its topic, keys and names"),
        "nothing of it in the capture", ("MQ-1",), dat.capture_meter_link, no_record=_PASSIVE,
    ),
    Scenario(
        "capture-headend-link", DT, Capability.PATH,
        "A recording relay in the path of a head-end worker's subscription",
        ("relay the worker's TLS connection", "it receives meters' APDUs for 3 s",
         "search the capture for those APDUs and topics"),
        "nothing of it in the capture", ("MQ-1",), dat.capture_service_link, no_record=_PASSIVE,
    ),
    Scenario(
        "copy-database", DT, Capability.FILE_COPY,
        "A copy of the head-end database",
        ("read every row of every table", "read the file with its free pages and WAL",
         "search for reading values, keys, consumer names, passwords and TOTP secrets"),
        "none found", ("PRIV-3", "PRIV-4", "KEY-2"), dat.copy_database, no_record=_PASSIVE,
    ),
    Scenario(
        "copy-keystore", DT, Capability.FILE_COPY,
        "A copy of the key store without its key-encryption key",
        ("copy keys.db", "search it for the meters' keys", "open it under another KEK"),
        "no key found; unwrapping fails with a typed error", ("KEY-2",), dat.copy_keystore,
        no_record=_PASSIVE,
    ),
    # ------------------------------------------------------------ man-in-the-middle
    Scenario(
        "forged-broker-to-meter", MITM, Capability.PATH,
        "A meter is sent to a broker with a forged certificate",
        ("a TLS listener with a rogue CA's certificate for the broker's address",
         "a meter connects to it with a reading to send"),
        "the meter refuses the handshake, sends nothing and keeps the reading", ("PKI-7",),
        dat.forged_broker_to_meter,
        no_record="the meter refuses before any byte reaches the impostor; the real system"
        " never sees the impostor",
    ),
    Scenario(
        "forged-broker-to-headend", MITM, Capability.PATH,
        "A head-end worker is sent to a broker with a forged certificate",
        ("a TLS listener with a rogue CA's certificate", "the worker's client connects"),
        "the worker refuses the handshake and sends nothing", ("PKI-7",),
        dat.forged_broker_to_headend,
        no_record="refused by the client before any byte is sent",
    ),
    Scenario(
        "forged-web-server", MITM, Capability.PATH,
        "A user is sent to a web server with a forged certificate",
        ("a TLS listener with a rogue CA's certificate", "a client pinned to our root logs in"),
        "the client refuses the handshake; no password reaches the impostor", ("PKI-7",),
        dat.forged_web_server, no_record="refused by the client before any byte is sent",
    ),
    Scenario(
        "dlms-altered", MITM, Capability.COMPROMISED_BROKER,
        "A compromised broker alters APDUs inside a valid TLS session",
        ("take a meter's real APDU from the broker", "flip a ciphertext bit, and a tag bit",
         "deliver both on the meter's topic"),
        "both refused by the GCM tag check", ("SEC-2", "DM-6"), dat.dlms_altered,
        (_event("authentication_failed"),),
    ),
    Scenario(
        "dlms-truncated", MITM, Capability.COMPROMISED_BROKER,
        "A compromised broker cuts APDUs short",
        ("take a meter's real APDU", "deliver it 5 bytes short, and cut to its header"),
        "both refused as malformed and quarantined", ("DM-6",), dat.dlms_truncated,
        (Expect("quarantine", "malformed", "compromised"),),
    ),
    Scenario(
        "dlms-replayed", MITM, Capability.COMPROMISED_BROKER,
        "A compromised broker replays an older APDU",
        ("keep a meter's APDU", "wait until the meter sent newer ones", "deliver the old one"),
        "refused: its invocation counter is below the meter's last", ("SEC-3",),
        dat.dlms_replayed, (_event("attempt_to_lower_invocation_counter"),),
    ),
    Scenario(
        "dlms-delayed-reordered", MITM, Capability.COMPROMISED_BROKER,
        "A compromised broker holds APDUs back and delivers them late, reordered",
        ("keep two APDUs", "hold them 5 s", "deliver them newest first"),
        "refused as replays: nothing stored twice, nothing out of order", ("SEC-3",),
        dat.dlms_delayed, (_event("attempt_to_lower_invocation_counter"),),
    ),
    # ------------------------------------------------------------ malware injection
    *(
        Scenario(
            f"firmware-{s.name}", MAL, Capability.OUTSIDER,
            s.summary,
            (f"the attacker {s.capability}", s.summary, "the meter's agent is told to install"),
            f"{s.refusal.__name__}, event {s.event.name}, the meter unchanged",
            s.requirements, _firmware(s),
            no_record="the meter's own firmware log holds the event (checked by the play);"
            " these run on a firmware range of their own, not on the live fleet's meters",
        )
        for s in fw.SCENARIOS
    ),
    *(
        Scenario(
            f"firmware-live-{i.name}", MAL,
            Capability.DISTRIBUTION if i.tamper else Capability.INSIDER,
            f"{i.summary}, campaigned to a live meter of the fleet",
            (
                "sign the image into the running system's repository"
                + (", then change the bytes the endpoint serves" if i.tamper else ""),
                "olga proposes a campaign of it to one live meter, erik approves",
                "the meter fetches it with its TUF client and reports",
            ),
            f"the meter reports {i.refusal}, runs what it ran before, the head-end records a"
            " firmware_refused event", i.requirements,
            lfw.campaign(i), (_event("firmware_refused", "victim"),), within=30.0,
        )
        for i in lfw.LIVE_IMAGES
    ),
    # ------------------------------------------------------------ physical tampering
    *(
        Scenario(
            f"tamper-{sensor}", PHY, Capability.PHYSICAL,
            f"Someone at the meter: {sensor}",
            (f"the meter's {sensor} sensor fires",),
            "the meter latches the alarm and the head-end stores it",
            ("TAMP-1", "TAMP-2"), dos.tamper(sensor), (_alarm(code),), within=30.0,
        )
        for sensor, code in (
            ("main-cover-open", EventCode.METER_COVER_REMOVED),
            ("magnetic-field", EventCode.STRONG_DC_FIELD_DETECTED),
            ("reverse-energy", EventCode.REVERSE_ENERGY),
            ("module-removed", EventCode.COMMUNICATION_MODULE_REMOVED),
        )
    ),
    Scenario(
        "tamper-during-power-cut", PHY, Capability.PHYSICAL,
        "A cover opened while the meter's communication is down",
        (
            "cut the meter's link (its module loses power)",
            "open the main cover",
            "restore the link after 3 s",
        ),
        "the meter keeps the alarm (battery-backed log, outbox) and the head-end stores it once"
        " the link is back", ("TAMP-1", "TAMP-3", "REL-1"), dos.tamper_in_power_cut,
        (Expect("alarm", f"alarm:{int(EventCode.METER_COVER_REMOVED)}", "powercut"),),
        within=30.0,
    ),
    # ------------------------------------------------------------ denial of service
    Scenario(
        "oversized-message", DOS, Capability.COMPROMISED_METER,
        "A compromised meter sends a 1 MiB message",
        ("publish 64 KiB", "publish 1 MiB"),
        "the broker drops the connection (packet limit)", ("DOS-1",), dos.oversized,
        (Expect("broker_log", r"(?i)(oversize|too large|exceeded|disconnected)"),),
    ),
    Scenario(
        "data-flood", DOS, Capability.COMPROMISED_METER,
        "A compromised meter floods its data topic",
        ("measure another meter's alarm latency", "flood junk on the data topic",
         "measure the alarm latency during the flood"),
        "throttled; another meter's alarm no slower than 3x (or +5 s); the fleet's readings"
        " keep arriving", ("DOS-1", "DOS-2", "DOS-3"), dos.data_flood,
        (_event("chatty_or_compromised"),), within=30.0,
    ),
    Scenario(
        "alarm-flood", DOS, Capability.COMPROMISED_METER,
        "A compromised meter floods the alarm topic",
        ("measure another meter's alarm latency", "flood junk on the alarm topic",
         "measure again during the flood"),
        "refused (throttled or malformed, counted on one quarantine row); another meter's alarm"
        " no slower than 3x (or +5 s)", ("DOS-2", "DOS-3"),
        dos.alarm_flood, (Expect("quarantine", "*", "compromised"),), within=30.0,
    ),
    Scenario(
        "handshake-flood", DOS, Capability.OUTSIDER,
        "Many unauthenticated clients open TLS handshakes at once",
        (
            "measure another meter's alarm latency",
            "32 clients open handshakes without a certificate",
            "measure again during the flood",
        ),
        "every handshake refused; another meter's alarm no slower than 3x (or +5 s)",
        ("DOS-1", "MQ-2"), dos.handshake_flood, (Expect("broker_log", _TLS_REFUSED),),
    ),
    Scenario(
        "reconnect-storm", DOS, Capability.OUTAGE,
        "The broker goes down and comes back: every meter and worker reconnects at once",
        (
            "measure another meter's alarm latency",
            "the running system restarts its broker (every session drops at once)",
            "that meter's cover opens while the broker is down",
            "wait until every meter is back and what they queued is stored",
        ),
        "every meter back (jittered back-off), the alarm stored, every queued interval stored"
        " once, no security event or refusal raised by the outage",
        ("REL-1", "DOS-3", "TAMP-3"), dos.reconnect_storm,
        (Expect("broker_log", r"mosquitto version \S+ starting"),
         _alarm(EventCode.TERMINAL_COVER_REMOVED), _alarm(EventCode.METER_COVER_REMOVED)),
        within=30.0,
    ),
    Scenario(
        "bypass-under-registers", PHY, Capability.PHYSICAL,
        "A bypass makes a home's meter register about half its draw, leaving no evidence",
        ("make a home an h1 thief without tamper evidence",
         "wait for the theft detector's rounds"),
        "the home becomes the first suspect, with its feeder's imbalance as evidence",
        ("THEFT-1", "THEFT-2"), dos.bypass,
        no_record="the detector's suspect list is its record (read through the investigator's"
        " API by the play)",
        slow=True,
    ),
)  # fmt: skip


def select(names: Sequence[str], *, everything: bool = False) -> list[Scenario]:
    """Scenarios by id, id prefix or threat name; all with ``everything``.

    Raises:
        ConfigurationError: a name matches nothing.
    """
    if everything or not names:
        return list(SCENARIOS)
    chosen: list[Scenario] = []
    for name in names:
        hits = [
            s for s in SCENARIOS
            if s.id == name or s.id.startswith(name + "-")
            or name in (s.threat.value, s.threat.value.replace(" ", "-"))
        ]  # fmt: skip
        if not hits:
            raise ConfigurationError(
                f"no scenario or threat {name!r} (see `meterguard attack list`)"
            )
        chosen += [s for s in hits if s not in chosen]
    return chosen
