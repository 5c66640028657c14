"""Decoding any plain xDLMS APDU (raises only DecodeError).

Part of :mod:`meterguard.cosem.xdlms`, which re-exports it.
"""

from __future__ import annotations

from meterguard.cosem._codec import Reader
from meterguard.cosem.axdr import (
    decode_data,
)
from meterguard.cosem.xdlms.action import (
    ActionRequest,
    ActionRequestNextPblock,
    ActionRequestNormal,
    ActionRequestWithFirstPblock,
    ActionRequestWithList,
    ActionRequestWithListAndFirstPblock,
    ActionRequestWithPblock,
    ActionResponse,
    ActionResponseNextPblock,
    ActionResponseNormal,
    ActionResponseWithList,
    ActionResponseWithPblock,
    ActionReturn,
    DataNotification,
    EventNotification,
    XdlmsApdu,
    _decode_optional_data,
)
from meterguard.cosem.xdlms.basics import (
    ConfirmedServiceError,
    DataAccessResult,
    ExceptionResponse,
    InitiateRequest,
    InitiateResponse,
    _enum_of,
)
from meterguard.cosem.xdlms.descriptors import (
    AttributeWithSelection,
    DataBlockG,
    DataBlockSA,
    MethodDescriptor,
    _decode_get_result,
    decode_get_results,
)
from meterguard.cosem.xdlms.get_set import (
    GetRequest,
    GetRequestNext,
    GetRequestNormal,
    GetRequestWithList,
    GetResponse,
    GetResponseNormal,
    GetResponseWithDataBlock,
    GetResponseWithList,
    SetRequest,
    SetRequestNormal,
    SetRequestWithDataBlock,
    SetRequestWithFirstDataBlock,
    SetRequestWithList,
    SetRequestWithListAndFirstDataBlock,
    SetResponse,
    SetResponseDataBlock,
    SetResponseLastDataBlock,
    SetResponseLastDataBlockWithList,
    SetResponseNormal,
    SetResponseWithList,
    _decode_results,
)
from meterguard.errors import DecodeError

__all__ = ["XDLMS_TAGS", "decode_xdlms"]


# ------------------------------------------------------------------ decoding


def _decode_get_request(choice: int, inv: int, r: Reader) -> GetRequest:
    if choice == 1:
        return GetRequestNormal(inv, AttributeWithSelection.decode(r))
    if choice == 2:
        return GetRequestNext(inv, r.u32())
    if choice == 3:
        return GetRequestWithList(
            inv, tuple(AttributeWithSelection.decode(r) for _ in range(r.count(10)))
        )
    raise DecodeError(f"get-request: unknown choice {choice}")


def _decode_get_response(choice: int, inv: int, r: Reader) -> GetResponse:
    if choice == 1:
        return GetResponseNormal(inv, _decode_get_result(r))
    if choice == 2:
        return GetResponseWithDataBlock(inv, DataBlockG.decode(r))
    if choice == 3:
        return GetResponseWithList(inv, decode_get_results(r))
    raise DecodeError(f"get-response: unknown choice {choice}")


def _decode_set_request(choice: int, inv: int, r: Reader) -> SetRequest:
    if choice == 1:
        return SetRequestNormal(inv, AttributeWithSelection.decode(r), decode_data(r))
    if choice == 2:
        return SetRequestWithFirstDataBlock(
            inv, AttributeWithSelection.decode(r), DataBlockSA.decode(r)
        )
    if choice == 3:
        return SetRequestWithDataBlock(inv, DataBlockSA.decode(r))
    if choice == 4:
        attrs = tuple(AttributeWithSelection.decode(r) for _ in range(r.count(10)))
        values = tuple(decode_data(r) for _ in range(r.count(1)))
        return SetRequestWithList(inv, attrs, values)
    if choice == 5:
        attrs = tuple(AttributeWithSelection.decode(r) for _ in range(r.count(10)))
        return SetRequestWithListAndFirstDataBlock(inv, attrs, DataBlockSA.decode(r))
    raise DecodeError(f"set-request: unknown choice {choice}")


def _decode_set_response(choice: int, inv: int, r: Reader) -> SetResponse:
    if choice == 1:
        return SetResponseNormal(
            inv, DataAccessResult(_enum_of(DataAccessResult, r.u8(), "result"))
        )
    if choice == 2:
        return SetResponseDataBlock(inv, r.u32())
    if choice == 3:
        res = DataAccessResult(_enum_of(DataAccessResult, r.u8(), "result"))
        return SetResponseLastDataBlock(inv, res, r.u32())
    if choice == 4:
        return SetResponseLastDataBlockWithList(inv, _decode_results(r), r.u32())
    if choice == 5:
        return SetResponseWithList(inv, _decode_results(r))
    raise DecodeError(f"set-response: unknown choice {choice}")


def _decode_action_request(choice: int, inv: int, r: Reader) -> ActionRequest:
    if choice == 1:
        return ActionRequestNormal(inv, MethodDescriptor.decode(r), _decode_optional_data(r))
    if choice == 2:
        return ActionRequestNextPblock(inv, r.u32())
    if choice == 3:
        methods = tuple(MethodDescriptor.decode(r) for _ in range(r.count(9)))
        params = tuple(decode_data(r) for _ in range(r.count(1)))
        return ActionRequestWithList(inv, methods, params)
    if choice == 4:
        return ActionRequestWithFirstPblock(inv, MethodDescriptor.decode(r), DataBlockSA.decode(r))
    if choice == 5:
        methods = tuple(MethodDescriptor.decode(r) for _ in range(r.count(9)))
        return ActionRequestWithListAndFirstPblock(inv, methods, DataBlockSA.decode(r))
    if choice == 6:
        return ActionRequestWithPblock(inv, DataBlockSA.decode(r))
    raise DecodeError(f"action-request: unknown choice {choice}")


def _decode_action_response(choice: int, inv: int, r: Reader) -> ActionResponse:
    if choice == 1:
        return ActionResponseNormal(inv, ActionReturn.decode(r))
    if choice == 2:
        return ActionResponseWithPblock(inv, DataBlockSA.decode(r))
    if choice == 3:
        return ActionResponseWithList(inv, tuple(ActionReturn.decode(r) for _ in range(r.count(2))))
    if choice == 4:
        return ActionResponseNextPblock(inv, r.u32())
    raise DecodeError(f"action-response: unknown choice {choice}")


_SERVICE_DECODERS = {
    0xC0: _decode_get_request,
    0xC4: _decode_get_response,
    0xC1: _decode_set_request,
    0xC5: _decode_set_response,
    0xC3: _decode_action_request,
    0xC7: _decode_action_response,
}

XDLMS_TAGS = frozenset({0x01, 0x08, 0x0E, 0xD8, 0x0F, 0xC2, *_SERVICE_DECODERS})


def decode_xdlms(data: bytes) -> XdlmsApdu:
    """Decode one plain xDLMS APDU; the whole input must be consumed.

    Raises:
        DecodeError: unknown tag, malformed or truncated input, trailing bytes.
    """
    r = Reader(data)
    tag = r.u8()
    apdu: XdlmsApdu
    service = _SERVICE_DECODERS.get(tag)
    if service is not None:
        choice = r.u8()
        inv = r.u8()
        apdu = service(choice, inv, r)
    elif tag == InitiateRequest.TAG:
        apdu = InitiateRequest.decode(r)
    elif tag == InitiateResponse.TAG:
        apdu = InitiateResponse.decode(r)
    elif tag == ConfirmedServiceError.TAG:
        apdu = ConfirmedServiceError.decode(r)
    elif tag == ExceptionResponse.TAG:
        apdu = ExceptionResponse.decode(r)
    elif tag == DataNotification.TAG:
        apdu = DataNotification.decode(r)
    elif tag == EventNotification.TAG:
        apdu = EventNotification.decode(r)
    else:
        raise DecodeError(f"unknown xDLMS APDU tag 0x{tag:02X}")
    r.expect_end(type(apdu).__name__)
    return apdu
