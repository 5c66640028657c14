"""Meter-role and client-role connections driven against each other in memory (DM-1…13, DH-1…8)."""

from __future__ import annotations

import pytest

from meterguard.cosem.acse import AARE, Mechanism
from meterguard.cosem.apdu import decode_apdu
from meterguard.cosem.association import AssociationState
from meterguard.cosem.axdr import (
    Array,
    DoubleLongUnsigned,
    Integer,
    LongUnsigned,
    OctetString,
    Structure,
)
from meterguard.cosem.connection import (
    HLS_METHOD,
    ActionCompleted,
    AssociationEstablished,
    AssociationReleased,
    ClientConnection,
    ClientSettings,
    ExceptionReceived,
    GetCompleted,
    GetListCompleted,
    NotificationReceived,
    SetCompleted,
)
from meterguard.cosem.counters import ReceiveCounter, SendCounter
from meterguard.cosem.obis import Obis
from meterguard.cosem.security import (
    CipheringKind,
    GeneralGloCiphering,
    SecurityControl,
    ServiceCiphered,
    protect,
    unprotect,
)
from meterguard.cosem.xdlms import (
    ActionRequestNormal,
    ActionResult,
    AttributeDescriptor,
    AttributeWithSelection,
    DataAccessResult,
    DataNotification,
    ExceptionResponse,
    GetRequestNormal,
    MethodDescriptor,
    decode_xdlms,
)
from meterguard.crypto.aead import GcmKey
from meterguard.crypto.ecc import Curve, SigningKey
from meterguard.crypto.keys import SecretKey
from meterguard.errors import (
    AssociationRejectedError,
    AuthenticationFailedError,
    HlsFailedError,
    InsufficientProtectionError,
    LocalProtocolError,
    RemoteProtocolError,
    ReplayError,
    UnexpectedSystemTitleError,
)
from tests.unit.cosem.harness import (
    CLOCK,
    DISCONNECT,
    ENERGY,
    METER_TITLE,
    PROFILE,
    Link,
    MiniMeter,
    headend_material,
    meter_material,
    pair,
    server,
)

CLOCK_TIME = AttributeDescriptor(8, CLOCK, 2)
ENERGY_VALUE = AttributeDescriptor(3, ENERGY, 2)
ENERGY_SCALER = AttributeDescriptor(3, ENERGY, 3)
PROFILE_BUFFER = AttributeDescriptor(7, PROFILE, 2)
OTHER_KEY = SecretKey(bytes(range(16, 32)))


def _associate(link: Link) -> list[object]:
    link.client.associate()
    return list(link.pump())


def _unwrap_ic(apdu: bytes) -> int:
    env = decode_apdu(apdu)
    assert isinstance(env, GeneralGloCiphering | ServiceCiphered)
    return env.invocation_counter


def test_full_hls_gmac_session() -> None:
    link = pair()
    events = _associate(link)
    assert len(events) == 1 and isinstance(events[0], AssociationEstablished)
    assert events[0].peer_system_title == METER_TITLE
    assert link.client.state is link.server.state is AssociationState.ASSOCIATED
    # AARQ, AARE, pass 3, pass 4 went over the wire; the AARE asked for authentication (DM-3).
    aare = decode_apdu(link.log[1][1])
    assert (
        isinstance(aare, AARE) and aare.diagnostic == 14 and aare.responding_ap_title == METER_TITLE
    )
    assert (
        aare.responding_authentication_value is not None
        and 8 <= len(aare.responding_authentication_value) <= 64
    )
    assert (
        aare.user_information is not None and aare.user_information[0] == 0x28
    )  # ciphered initiate-response

    link.client.get(CLOCK_TIME)
    [ev] = link.pump()
    assert isinstance(ev, GetCompleted) and ev.result == OctetString(
        bytes.fromhex("07EA0B18FF12041800000000")
    )
    link.client.get(ENERGY_SCALER)
    [ev] = link.pump()
    assert isinstance(ev, GetCompleted) and ev.result == Structure((Integer(0), LongUnsigned(30)))

    link.client.release()
    [ev] = link.pump()
    assert isinstance(ev, AssociationReleased)
    assert link.client.state is link.server.state is AssociationState.IDLE
    # Every APDU after the AARQ was protected; none in clear.
    for direction, apdu in link.log[2:-2]:
        assert apdu[0] in (0xDB,), (direction, apdu.hex())


def test_block_transfer_every_block_has_a_new_counter() -> None:
    link = pair(
        client_settings=ClientSettings(
            max_receive_pdu_size=256, expected_server_system_title=METER_TITLE
        )
    )
    _associate(link)
    start = len(link.log)
    link.client.get(PROFILE_BUFFER)
    [ev] = link.pump()
    assert (
        isinstance(ev, GetCompleted)
        and isinstance(ev.result, Array)
        and len(ev.result.items) == 600
    )
    assert ev.result.items[599] == Structure(
        (ev.result.items[599].items[0], DoubleLongUnsigned(599))
    )  # type: ignore[union-attr]
    replies = [apdu for d, apdu in link.log[start:] if d == "S->C"]
    assert len(replies) > 20  # 600 entries of ~21 bytes through 256-byte PDUs
    assert all(len(r) <= 256 for r in replies)  # DM-11: fits after ciphering overhead
    ics = [_unwrap_ic(r) for r in replies]
    assert ics == sorted(set(ics))  # strictly increasing: a fresh IC per block


def test_get_with_list_and_set_and_action_in_blocks() -> None:
    app = MiniMeter()
    link = pair(srv=server(app=app, max_pdu=128))
    _associate(link)
    link.client.get_with_list(
        (
            AttributeWithSelection(ENERGY_VALUE),
            AttributeWithSelection(CLOCK_TIME),
            AttributeWithSelection(AttributeDescriptor(1, DISCONNECT, 2)),
        )
    )
    [ev] = link.pump()
    assert isinstance(ev, GetListCompleted)
    assert ev.results[0] == DoubleLongUnsigned(123456)
    assert ev.results[2] is DataAccessResult.OBJECT_UNDEFINED

    big = OctetString(bytes(range(256)) * 4)  # > the meter's 128-byte PDU: SET-with-block
    link.client.set(AttributeDescriptor(1, Obis(0, 0, 96, 1, 0, 255), 2), big)
    [ev] = link.pump()
    assert isinstance(ev, SetCompleted) and ev.results == (DataAccessResult.SUCCESS,)
    assert app.writes[-1][1] == big

    link.client.action(MethodDescriptor(18, Obis(0, 0, 44, 0, 0, 255), 2), big)
    [ev] = link.pump()
    assert isinstance(ev, ActionCompleted) and ev.result is ActionResult.SUCCESS
    assert app.actions[-1][1] == big
    sent = [apdu for d, apdu in link.log if d == "C->S"]
    assert all(len(a) <= 128 for a in sent[1:])


def test_public_association_is_plain_and_limited() -> None:
    link = Link(ClientConnection(ClientSettings.public()), server())
    [ev] = _associate(link)
    assert isinstance(ev, AssociationEstablished)
    link.client.get(CLOCK_TIME)
    [ev] = link.pump()
    assert isinstance(ev, GetCompleted) and isinstance(ev.result, OctetString)
    link.client.get(ENERGY_VALUE)
    [ev] = link.pump()
    assert ev.result is DataAccessResult.READ_WRITE_DENIED  # type: ignore[union-attr]
    assert all(apdu[0] in (0x60, 0x61, 0xC0, 0xC4) for _, apdu in link.log)


def test_wrong_keys_in_aarq_are_rejected() -> None:
    # DM-7: a client with the wrong unicast key cannot even get an AARE accepted.
    link = pair(client_material=headend_material(unicast_key=OTHER_KEY))
    link.client.associate()
    with pytest.raises(AssociationRejectedError):
        link.pump(raise_server=False)
    assert isinstance(link.server_errors[0], AuthenticationFailedError)
    assert link.server.state is AssociationState.IDLE


def test_wrong_hls_reply_leaves_association_unestablished() -> None:
    # DM-5: right EK (AARQ decrypts) but the wrong AK → f(StoC) fails; later requests refused.
    link = pair(client_material=headend_material(authentication_key=OTHER_KEY))
    link.client.associate()
    with pytest.raises((AssociationRejectedError, AuthenticationFailedError, HlsFailedError)):
        link.pump(raise_server=False)
    assert link.server.state is not AssociationState.ASSOCIATED


def test_bad_f_stoc_with_good_keys() -> None:
    srv = server()
    material = headend_material()
    client = ClientConnection(ClientSettings(), material)
    client.associate()
    [aarq] = client.outgoing()
    srv.receive(aarq, client_sap=1)
    [aare] = srv.outgoing()
    client.receive(aare)
    client.outgoing()  # the genuine pass 3 is dropped
    # Forge a pass 3 that is correctly ciphered but carries a wrong f(StoC).

    ek, ak = material.unicast_key, material.authentication_key
    assert ek is not None and ak is not None
    bad = ActionRequestNormal(0xC1, HLS_METHOD, OctetString(b"\x10" + bytes(16))).to_bytes()
    forged = protect(
        bad,
        kind=CipheringKind.GENERAL_GLO,
        security=SecurityControl(),
        invocation_counter=10_000,
        system_title=material.system_title,
        key=GcmKey(ek),
        authentication_key=ak,
    )
    with pytest.raises(HlsFailedError):
        srv.receive(forged, client_sap=1)
    [deny] = srv.outgoing()
    assert srv.state is AssociationState.FAILED
    # The denial comes back ciphered with result read-write-denied.
    with pytest.raises(HlsFailedError):
        client.receive(deny)
    assert client.state is AssociationState.FAILED
    # Later requests on the failed association are refused.
    get = GetRequestNormal(0xC1, AttributeWithSelection(ENERGY_VALUE)).to_bytes()
    fresh = protect(
        get,
        kind=CipheringKind.GENERAL_GLO,
        security=SecurityControl(),
        invocation_counter=10_001,
        system_title=material.system_title,
        key=GcmKey(ek),
        authentication_key=ak,
    )
    with pytest.raises(RemoteProtocolError):
        srv.receive(fresh, client_sap=1)
    [refusal] = srv.outgoing()
    assert isinstance(decode_apdu(refusal), ExceptionResponse)


def test_only_hls_reply_before_authentication() -> None:
    # DM-4: a GET slipped in after the AARE, before pass 3, is refused.
    srv = server()
    material = headend_material()
    client = ClientConnection(ClientSettings(), material)
    client.associate()
    [aarq] = client.outgoing()
    srv.receive(aarq, client_sap=1)
    srv.outgoing()

    assert material.unicast_key is not None
    get = GetRequestNormal(0xC1, AttributeWithSelection(ENERGY_VALUE)).to_bytes()
    sneaky = protect(
        get,
        kind=CipheringKind.GENERAL_GLO,
        security=SecurityControl(),
        invocation_counter=500,
        system_title=material.system_title,
        key=GcmKey(material.unicast_key),
        authentication_key=material.authentication_key,
    )
    with pytest.raises(RemoteProtocolError, match="only reply_to_HLS"):
        srv.receive(sneaky, client_sap=1)
    assert isinstance(decode_apdu(srv.outgoing()[0]), ExceptionResponse)
    assert srv.state is AssociationState.HLS_PENDING


def test_replayed_request_is_refused() -> None:
    # DM-6: the meter rejects a client IC ≤ the last accepted.
    captured: list[bytes] = []

    def tap(direction: str, apdu: bytes) -> bytes | None:
        if direction == "C->S" and apdu[0] == 0xDB:
            captured.append(apdu)
        return apdu

    link = pair(tap=tap)
    _associate(link)
    link.client.get(ENERGY_VALUE)
    link.pump()
    with pytest.raises(ReplayError):
        link.server.receive(captured[-1], client_sap=1)
    reply = decode_apdu(link.server.outgoing()[0])
    assert (
        isinstance(reply, ExceptionResponse) and reply.service_error == 6
    )  # invocation-counter-error


def test_tampered_request_is_refused_and_counter_not_advanced() -> None:
    link = pair()
    _associate(link)
    material = link.client.security
    assert material is not None
    before = link.server.settings.associations[1].security.peer_counter.last  # type: ignore[union-attr]
    link.client.get(ENERGY_VALUE)
    [apdu] = link.client.outgoing()
    forged = bytearray(apdu)
    forged[-1] ^= 1
    with pytest.raises(AuthenticationFailedError):
        link.server.receive(bytes(forged), client_sap=1)
    assert link.server.settings.associations[1].security.peer_counter.last == before  # type: ignore[union-attr]
    reply = decode_apdu(link.server.outgoing()[0])
    assert isinstance(reply, ExceptionResponse) and reply.service_error == 5  # deciphering-error
    # The genuine APDU still goes through: a forgery cannot burn counters.
    link.server.receive(apdu, client_sap=1)
    [answer] = link.server.outgoing()
    [ev] = link.client.receive(answer)
    assert isinstance(ev, GetCompleted)


def test_tampered_response_is_refused_by_the_client() -> None:
    def tap(direction: str, apdu: bytes) -> bytes | None:
        if direction == "S->C" and apdu[0] == 0xDB:
            return apdu[:-1] + bytes((apdu[-1] ^ 0x01,))
        return apdu

    link = pair()
    _associate(link)
    link.tap = tap
    link.client.get(ENERGY_VALUE)
    with pytest.raises(AuthenticationFailedError):
        link.pump()


def test_meter_counter_never_goes_backwards_across_associations() -> None:
    # DH-4: the head-end keeps the meter's counter per (meter, key) across associations.
    meter_counter = ReceiveCounter()
    link = pair(client_material=headend_material(peer_counter=meter_counter))
    _associate(link)
    link.client.release()
    link.pump()
    high = meter_counter.last
    assert high is not None
    # A "meter" that restarted with its counter reset (nonce reuse) is refused.
    reset_meter = server(meter_material(send_counter=SendCounter(1)))
    client = ClientConnection(
        ClientSettings(),
        headend_material(peer_counter=meter_counter, send_counter=SendCounter(5000)),
    )
    link2 = Link(client, reset_meter)
    client.associate()
    with pytest.raises(ReplayError, match="attempt to lower invocation counter"):
        link2.pump()
    assert client.state is AssociationState.IDLE


def test_meter_counter_persists_across_associations_and_restarts() -> None:
    persisted = {"ceiling": 1}

    def reserve(c: int) -> None:
        persisted["ceiling"] = c

    meter_counter = ReceiveCounter()
    seen: list[int] = []
    for _ in range(3):  # three restarts of the meter, each from its persisted ceiling
        srv = server(
            meter_material(send_counter=SendCounter(persisted["ceiling"], reserve=reserve, block=4))
        )
        link = pair(
            srv=srv,
            client_material=headend_material(
                peer_counter=meter_counter,
                send_counter=SendCounter((meter_counter.last or 0) + 1000),
            ),
        )
        _associate(link)
        link.client.get(ENERGY_VALUE)
        link.pump()
        link.client.release()
        link.pump()
        assert meter_counter.last is not None
        seen.append(meter_counter.last)
    # The head-end refuses any lowered counter, so three clean sessions prove no reuse.
    assert seen == sorted(set(seen))
    assert persisted["ceiling"] > seen[-1]


def test_unexpected_system_title() -> None:
    link = pair(
        client_settings=ClientSettings(
            expected_server_system_title=bytes.fromhex("4D4D4D00000000FF")
        )
    )
    link.client.associate()
    with pytest.raises(UnexpectedSystemTitleError):
        link.pump()
    assert link.client.state is AssociationState.IDLE


def test_general_glo_from_another_title_is_refused() -> None:
    link = pair()
    _associate(link)
    material = headend_material(system_title=bytes.fromhex("4D4D4D0000000099"))

    assert material.unicast_key is not None
    get = GetRequestNormal(0xC1, AttributeWithSelection(ENERGY_VALUE)).to_bytes()
    foreign = protect(
        get,
        kind=CipheringKind.GENERAL_GLO,
        security=SecurityControl(),
        invocation_counter=99_999,
        system_title=material.system_title,
        key=GcmKey(material.unicast_key),
        authentication_key=material.authentication_key,
    )
    with pytest.raises(UnexpectedSystemTitleError):
        link.server.receive(foreign, client_sap=1)


def test_plain_request_in_ciphered_association_is_refused() -> None:
    link = pair()
    _associate(link)
    plain = GetRequestNormal(0xC1, AttributeWithSelection(ENERGY_VALUE)).to_bytes()
    with pytest.raises(InsufficientProtectionError):
        link.server.receive(plain, client_sap=1)
    assert isinstance(decode_apdu(link.server.outgoing()[0]), ExceptionResponse)


def test_authentication_only_requests_when_encryption_is_required() -> None:
    link = pair(client_settings=ClientSettings(request_security=SecurityControl(encrypted=False)))
    link.client.associate()
    with pytest.raises(AssociationRejectedError):
        link.pump(raise_server=False)
    assert isinstance(link.server_errors[0], InsufficientProtectionError)


@pytest.mark.parametrize("kind", list(CipheringKind))
def test_each_ciphering_kind_is_answered_in_kind(kind: CipheringKind) -> None:
    # DM-6 / mirroring rule: service-specific glo/ded and general-glo/ded, answered the same way.
    link = pair(client_settings=ClientSettings(ciphering=kind))
    _associate(link)
    mark = len(link.log)
    link.client.get(ENERGY_VALUE)
    [ev] = link.pump()
    assert isinstance(ev, GetCompleted) and ev.result == DoubleLongUnsigned(123456)
    (_, req), (_, resp) = link.log[mark:]
    expected = {
        CipheringKind.SERVICE_GLO: (0xC8, 0xCC),
        CipheringKind.SERVICE_DED: (0xD0, 0xD4),
        CipheringKind.GENERAL_GLO: (0xDB, 0xDB),
        CipheringKind.GENERAL_DED: (0xDC, 0xDC),
    }[kind]
    assert (req[0], resp[0]) == expected


def test_hls_reply_uses_global_key_with_dedicated_ciphering() -> None:
    link = pair(client_settings=ClientSettings(ciphering=CipheringKind.SERVICE_DED))
    _associate(link)
    assert link.log[2][1][0] == 0xCB  # pass 3: glo-action-request (reference §1.7)
    assert link.log[3][1][0] == 0xCF


def test_hls_ecdsa_suite1() -> None:
    # DH-8: mechanism 7 between our meter and our head-end.
    meter_key, headend_key = SigningKey.generate(Curve.P256), SigningKey.generate(Curve.P256)
    srv = server(
        meter_material(
            suite=1, signing_key=meter_key, peer_verifying_key=headend_key.verifying_key()
        ),
        mechanism=Mechanism.HLS_ECDSA,
    )
    client = ClientConnection(
        ClientSettings(mechanism=Mechanism.HLS_ECDSA, request_security=SecurityControl(suite=1)),
        headend_material(
            suite=1, signing_key=headend_key, peer_verifying_key=meter_key.verifying_key()
        ),
    )
    link = Link(client, srv)
    [ev] = _associate(link)
    assert isinstance(ev, AssociationEstablished) and ev.mechanism is Mechanism.HLS_ECDSA
    pass3 = decode_apdu(link.log[2][1])
    assert isinstance(pass3, GeneralGloCiphering) and pass3.security.suite == 1
    link.client.get(ENERGY_VALUE)
    [ev] = link.pump()
    assert isinstance(ev, GetCompleted)


def test_hls_ecdsa_with_an_impostor_key_fails() -> None:
    meter_key, headend_key, impostor = (SigningKey.generate() for _ in range(3))
    srv = server(
        meter_material(
            suite=1, signing_key=meter_key, peer_verifying_key=headend_key.verifying_key()
        ),
        mechanism=Mechanism.HLS_ECDSA,
    )
    client = ClientConnection(
        ClientSettings(mechanism=Mechanism.HLS_ECDSA, request_security=SecurityControl(suite=1)),
        headend_material(
            suite=1, signing_key=impostor, peer_verifying_key=meter_key.verifying_key()
        ),
    )
    link = Link(client, srv)
    client.associate()
    with pytest.raises(HlsFailedError):
        link.pump(raise_server=False)
    assert isinstance(link.server_errors[0], HlsFailedError)
    assert srv.state is AssociationState.FAILED


def test_suite_downgrade_is_refused() -> None:
    # A client on suite 1 talking to a suite-0 meter: the SC suite differs, the AARQ is refused.
    link = pair(client_material=headend_material(suite=1))
    link.client.associate()
    with pytest.raises(AssociationRejectedError):
        link.pump(raise_server=False)
    assert isinstance(link.server_errors[0], InsufficientProtectionError)


def test_mechanism_mismatch_is_rejected() -> None:
    link = pair(client_settings=ClientSettings(mechanism=Mechanism.LOWEST))
    link.client.associate()
    with pytest.raises(AssociationRejectedError):
        link.pump(raise_server=False)


def test_unknown_client_sap_is_rejected() -> None:
    link = pair(client_settings=ClientSettings(client_sap=0x20))
    link.client.associate()
    with pytest.raises(AssociationRejectedError):
        link.pump(raise_server=False)
    assert isinstance(link.server_errors[0], RemoteProtocolError)


def test_push_inside_the_association() -> None:
    link = pair()
    _associate(link)
    note = DataNotification(0x80000001, None, Array((DoubleLongUnsigned(1), DoubleLongUnsigned(2))))
    link.server.push(note)
    [apdu] = link.server.outgoing()
    assert apdu[0] == 0xDB
    [ev] = link.client.receive(apdu)
    assert isinstance(ev, NotificationReceived) and ev.notification == note


def test_plain_exception_ends_the_pending_request() -> None:
    link = pair()
    _associate(link)
    link.client.get(ENERGY_VALUE)
    link.client.outgoing()
    [ev] = link.client.receive(ExceptionResponse(1, 3).to_bytes())
    assert isinstance(ev, ExceptionReceived)


def test_client_refuses_to_overlap_requests() -> None:
    link = pair()
    _associate(link)
    link.client.get(ENERGY_VALUE)
    with pytest.raises(LocalProtocolError):
        link.client.get(CLOCK_TIME)


def test_requests_need_an_association() -> None:
    client = ClientConnection(ClientSettings(), headend_material())
    with pytest.raises(LocalProtocolError):
        client.get(ENERGY_VALUE)
    srv = server()
    with pytest.raises(RemoteProtocolError):
        srv.receive(
            GetRequestNormal(0xC1, AttributeWithSelection(ENERGY_VALUE)).to_bytes(), client_sap=1
        )


def test_repr_shows_no_keys() -> None:
    link = pair()
    _associate(link)
    text = repr(link.client.security) + repr(link.server.settings) + repr(link.client.settings)
    assert "000102030405060708090A0B0C0D0E0F" not in text.upper()
    assert "D0D1D2D3" not in text.upper()


def test_association_request_context_is_authenticated() -> None:
    app = MiniMeter()
    link = pair(srv=server(app=app))
    _associate(link)
    link.client.get(ENERGY_VALUE)
    link.pump()
    ctx = app.contexts[-1]
    assert ctx.client_sap == 1 and ctx.authenticated and ctx.protection == SecurityControl()


def test_decoded_inner_is_really_a_get() -> None:
    link = pair(client_settings=ClientSettings(ciphering=CipheringKind.SERVICE_GLO))
    _associate(link)
    link.client.get(ENERGY_VALUE)
    [apdu] = link.client.outgoing()
    env = decode_apdu(apdu)
    assert isinstance(env, ServiceCiphered)
    material = headend_material()

    assert material.unicast_key is not None
    plain = unprotect(
        env,
        system_title=material.system_title,
        key=GcmKey(material.unicast_key),
        authentication_key=material.authentication_key,
    )
    assert isinstance(decode_xdlms(plain), GetRequestNormal)
