"""Hypothesis strategies for every COSEM data type and APDU meterguard encodes."""

from __future__ import annotations

from hypothesis import strategies as st

from meterguard.cosem import axdr as x
from meterguard.cosem import xdlms as d
from meterguard.cosem.acse import (
    AARE,
    AARQ,
    RLRE,
    RLRQ,
    ApplicationContext,
    AssociationResult,
    Mechanism,
    ReleaseRequestReason,
    ReleaseResponseReason,
)
from meterguard.cosem.cosemtime import CosemDate, CosemDateTime, CosemTime
from meterguard.cosem.obis import Obis
from meterguard.cosem.security import (
    SERVICE_CIPHERED_TAGS,
    GeneralCiphering,
    GeneralGloCiphering,
    GeneralSigning,
    KeyInfo,
    SecurityControl,
    ServiceCiphered,
)
from meterguard.crypto.keys import SecretKey

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
small_bytes = st.binary(max_size=40)
titles = st.binary(min_size=8, max_size=8)

obis = st.builds(Obis, u8, u8, u8, u8, u8, u8)


def _opt(s: st.SearchStrategy[int]) -> st.SearchStrategy[int | None]:
    return st.none() | s


dates = st.builds(
    CosemDate,
    _opt(st.integers(0, 0xFFFE)),
    _opt(st.integers(1, 12) | st.sampled_from([0xFD, 0xFE])),
    _opt(st.integers(1, 31) | st.sampled_from([0xFD, 0xFE])),
    _opt(st.integers(1, 7)),
)
times = st.builds(
    CosemTime,
    _opt(st.integers(0, 23)),
    _opt(st.integers(0, 59)),
    _opt(st.integers(0, 59)),
    _opt(st.integers(0, 99)),
)
datetimes = st.builds(
    CosemDateTime, dates, times, _opt(st.integers(-720, 720)), _opt(st.integers(0, 0xFE))
)

_INTS = [
    x.Integer,
    x.Long,
    x.DoubleLong,
    x.Long64,
    x.Unsigned,
    x.LongUnsigned,
    x.DoubleLongUnsigned,
    x.Long64Unsigned,
    x.Enum,
    x.Bcd,
]
int_data = st.one_of(*[st.integers(c.LO, c.HI).map(c) for c in _INTS])
scalar_data = st.one_of(
    st.just(x.NullData()),
    st.just(x.DontCare()),
    st.booleans().map(x.Boolean),
    st.text("01", max_size=40).map(x.BitString),
    int_data,
    st.floats(width=32, allow_nan=False).map(x.Float32),
    st.floats(allow_nan=False).map(x.Float64),
    st.binary(max_size=300).map(x.OctetString),
    st.text(st.characters(max_codepoint=127), max_size=30).map(x.VisibleString),
    st.text(max_size=30).map(x.Utf8String),
    datetimes.map(x.DateTimeData),
    dates.map(x.DateData),
    times.map(x.TimeData),
)
_SIMPLE_TAGS = [
    x.DataType.BOOLEAN,
    x.DataType.LONG_UNSIGNED,
    x.DataType.DOUBLE_LONG,
    x.DataType.OCTET_STRING,
    x.DataType.ENUM,
    x.DataType.LONG64,
    x.DataType.VISIBLE_STRING,
]


def _value_for(tag: x.DataType) -> st.SearchStrategy[x.Data]:
    return {
        x.DataType.BOOLEAN: st.booleans().map(x.Boolean),
        x.DataType.LONG_UNSIGNED: u16.map(x.LongUnsigned),
        x.DataType.DOUBLE_LONG: st.integers(-(2**31), 2**31 - 1).map(x.DoubleLong),
        x.DataType.OCTET_STRING: small_bytes.map(x.OctetString),
        x.DataType.ENUM: u8.map(x.Enum),
        x.DataType.LONG64: st.integers(-(2**63), 2**63 - 1).map(x.Long64),
        x.DataType.VISIBLE_STRING: st.text(st.characters(max_codepoint=127), max_size=8).map(
            x.VisibleString
        ),
    }[tag]


@st.composite
def compact_arrays(draw: st.DrawFn) -> x.CompactArray:
    field_tags = draw(st.lists(st.sampled_from(_SIMPLE_TAGS), min_size=1, max_size=4))
    desc = x.TypeDescription(
        x.DataType.STRUCTURE, fields=tuple(x.TypeDescription(t) for t in field_tags)
    )
    n = draw(st.integers(0, 5))
    items = tuple(x.Structure(tuple(draw(_value_for(t)) for t in field_tags)) for _ in range(n))
    return x.CompactArray(desc, items)


data = (
    st.recursive(
        scalar_data,
        lambda children: st.one_of(
            st.lists(children, max_size=6).map(lambda xs: x.Array(tuple(xs))),
            st.lists(children, max_size=6).map(lambda xs: x.Structure(tuple(xs))),
        ),
        max_leaves=25,
    )
    | compact_arrays()
)

invoke = u8
attr_desc = st.builds(d.AttributeDescriptor, u16, obis, st.integers(-128, 127))
method_desc = st.builds(d.MethodDescriptor, u16, obis, st.integers(-128, 127))
access = st.none() | st.builds(d.SelectiveAccess, u8, data)
attr_sel = st.builds(d.AttributeWithSelection, attr_desc, access)
dar = st.sampled_from(list(d.DataAccessResult))
get_result = data | dar
block_sa = st.builds(d.DataBlockSA, st.booleans(), u32, small_bytes)
block_g = st.one_of(
    st.builds(d.DataBlockG, st.booleans(), u32, raw_data=small_bytes),
    st.builds(d.DataBlockG, st.booleans(), u32, error=dar),
)
action_return = st.builds(
    d.ActionReturn, st.sampled_from(list(d.ActionResult)), st.none() | get_result
)
conformance = st.integers(0, 0xFFFFFF).map(d.Conformance)
keys = st.none() | st.binary(min_size=16, max_size=16).map(SecretKey)

xdlms_apdus = st.one_of(
    st.builds(
        d.InitiateRequest,
        dedicated_key=keys,
        response_allowed=st.booleans(),
        proposed_quality_of_service=st.none() | st.integers(-128, 127),
        proposed_dlms_version=u8,
        proposed_conformance=conformance,
        client_max_receive_pdu_size=u16,
    ),
    st.builds(
        d.InitiateResponse,
        negotiated_quality_of_service=st.none() | st.integers(-128, 127),
        negotiated_dlms_version=u8,
        negotiated_conformance=conformance,
        server_max_receive_pdu_size=u16,
        vaa_name=u16,
    ),
    st.builds(d.ConfirmedServiceError, st.integers(1, 12), st.integers(0, 10), u8),
    st.builds(d.ExceptionResponse, st.integers(1, 2), st.integers(1, 5)),
    st.builds(d.ExceptionResponse, st.integers(1, 2), st.just(6), u32),
    st.builds(d.GetRequestNormal, invoke, attr_sel),
    st.builds(d.GetRequestNext, invoke, u32),
    st.builds(d.GetRequestWithList, invoke, st.lists(attr_sel, max_size=4).map(tuple)),
    st.builds(d.GetResponseNormal, invoke, get_result),
    st.builds(d.GetResponseWithDataBlock, invoke, block_g),
    st.builds(d.GetResponseWithList, invoke, st.lists(get_result, max_size=4).map(tuple)),
    st.builds(d.SetRequestNormal, invoke, attr_sel, data),
    st.builds(d.SetRequestWithFirstDataBlock, invoke, attr_sel, block_sa),
    st.builds(d.SetRequestWithDataBlock, invoke, block_sa),
    st.builds(
        d.SetRequestWithList,
        invoke,
        st.lists(attr_sel, max_size=3).map(tuple),
        st.lists(data, max_size=3).map(tuple),
    ),
    st.builds(
        d.SetRequestWithListAndFirstDataBlock,
        invoke,
        st.lists(attr_sel, max_size=3).map(tuple),
        block_sa,
    ),
    st.builds(d.SetResponseNormal, invoke, dar),
    st.builds(d.SetResponseDataBlock, invoke, u32),
    st.builds(d.SetResponseLastDataBlock, invoke, dar, u32),
    st.builds(
        d.SetResponseLastDataBlockWithList, invoke, st.lists(dar, max_size=4).map(tuple), u32
    ),
    st.builds(d.SetResponseWithList, invoke, st.lists(dar, max_size=4).map(tuple)),
    st.builds(d.ActionRequestNormal, invoke, method_desc, st.none() | data),
    st.builds(d.ActionRequestNextPblock, invoke, u32),
    st.builds(
        d.ActionRequestWithList,
        invoke,
        st.lists(method_desc, max_size=3).map(tuple),
        st.lists(data, max_size=3).map(tuple),
    ),
    st.builds(d.ActionRequestWithFirstPblock, invoke, method_desc, block_sa),
    st.builds(
        d.ActionRequestWithListAndFirstPblock,
        invoke,
        st.lists(method_desc, max_size=3).map(tuple),
        block_sa,
    ),
    st.builds(d.ActionRequestWithPblock, invoke, block_sa),
    st.builds(d.ActionResponseNormal, invoke, action_return),
    st.builds(d.ActionResponseWithPblock, invoke, block_sa),
    st.builds(d.ActionResponseWithList, invoke, st.lists(action_return, max_size=3).map(tuple)),
    st.builds(d.ActionResponseNextPblock, invoke, u32),
    st.builds(d.DataNotification, u32, st.none() | datetimes, data),
    st.builds(d.EventNotification, st.none() | datetimes, attr_desc, data),
)

acse_apdus = st.one_of(
    st.builds(
        AARQ,
        application_context=st.sampled_from(list(ApplicationContext)),
        calling_ap_title=st.none() | titles,
        calling_ae_qualifier=st.none() | small_bytes,
        authentication=st.booleans(),
        mechanism=st.none() | st.sampled_from(list(Mechanism)),
        calling_authentication_value=st.none() | st.binary(max_size=64),
        user_information=st.none() | st.binary(max_size=300),
    ),
    st.builds(
        AARE,
        application_context=st.sampled_from(list(ApplicationContext)),
        result=st.sampled_from(list(AssociationResult)),
        diagnostic_source=st.sampled_from([1, 2]),
        diagnostic=st.integers(0, 14),
        responding_ap_title=st.none() | titles,
        responding_ae_qualifier=st.none() | small_bytes,
        authentication=st.booleans(),
        mechanism=st.none() | st.sampled_from(list(Mechanism)),
        responding_authentication_value=st.none() | st.binary(max_size=64),
        user_information=st.none() | st.binary(max_size=300),
    ),
    st.builds(
        RLRQ,
        reason=st.none() | st.sampled_from(list(ReleaseRequestReason)),
        user_information=st.none() | small_bytes,
    ),
    st.builds(
        RLRE,
        reason=st.none() | st.sampled_from(list(ReleaseResponseReason)),
        user_information=st.none() | small_bytes,
    ),
)

security_controls = st.builds(
    SecurityControl, st.integers(0, 15), st.booleans(), st.booleans(), st.booleans(), st.booleans()
)
key_info = st.one_of(
    st.builds(KeyInfo, st.just(0), key_id=st.integers(0, 1)),
    st.builds(KeyInfo, st.just(1), key_id=u8, key_ciphered_data=small_bytes),
    st.builds(KeyInfo, st.just(2), key_parameters=small_bytes, key_ciphered_data=small_bytes),
)
ciphered_apdus = st.one_of(
    st.builds(
        ServiceCiphered,
        st.sampled_from(sorted(SERVICE_CIPHERED_TAGS)),
        security_controls,
        u32,
        st.binary(max_size=200),
    ),
    st.builds(
        GeneralGloCiphering, titles, security_controls, u32, st.binary(max_size=200), st.booleans()
    ),
    st.builds(
        GeneralCiphering,
        small_bytes,
        titles,
        titles,
        small_bytes,
        small_bytes,
        st.none() | key_info,
        security_controls,
        u32,
        st.binary(max_size=200),
    ),
    st.builds(
        GeneralSigning,
        small_bytes,
        titles,
        titles,
        small_bytes,
        small_bytes,
        st.binary(max_size=200),
        st.binary(min_size=64, max_size=64),
    ),
)

all_apdus = xdlms_apdus | acse_apdus | ciphered_apdus
