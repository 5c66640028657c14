"""Plain xDLMS APDUs (Green Book §9.5, A-XDR): initiate, GET, SET, ACTION, notifications, errors.

Every APDU is a frozen dataclass with ``to_bytes()``; :func:`decode_xdlms` turns
bytes into the right class and raises only
:class:`~meterguard.errors.DecodeError`. Ciphered wrappers (glo/ded/general)
live in :mod:`meterguard.cosem.security`; :mod:`meterguard.cosem.apdu`
dispatches over both.

Service variants: GET normal/next/with-list and responses normal/with-datablock/
with-list; SET normal/with-first-datablock/with-datablock/with-list/
with-list-and-first-datablock and every response; ACTION normal/next-pblock/
with-list/with-first-pblock/with-list-and-first-pblock/with-pblock and every
response; DataNotification, EventNotification, ExceptionResponse,
ConfirmedServiceError; range and entry selective-access descriptors.

This module does not decide what a request means; the association and the
object model do.
"""

from __future__ import annotations

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
)
from meterguard.cosem.xdlms.basics import (
    ActionResult,
    ConfirmedServiceError,
    Conformance,
    DataAccessResult,
    ExceptionResponse,
    InitiateRequest,
    InitiateResponse,
    invoke_id_and_priority,
)
from meterguard.cosem.xdlms.decoding import XDLMS_TAGS, decode_xdlms
from meterguard.cosem.xdlms.descriptors import (
    AttributeDescriptor,
    AttributeWithSelection,
    CaptureObject,
    DataBlockG,
    DataBlockSA,
    EntryDescriptor,
    GetResult,
    MethodDescriptor,
    RangeDescriptor,
    SelectiveAccess,
    decode_get_results,
    encode_get_results,
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
)

__all__ = [
    "XDLMS_TAGS",
    "ActionRequest",
    "ActionRequestNextPblock",
    "ActionRequestNormal",
    "ActionRequestWithFirstPblock",
    "ActionRequestWithList",
    "ActionRequestWithListAndFirstPblock",
    "ActionRequestWithPblock",
    "ActionResponse",
    "ActionResponseNextPblock",
    "ActionResponseNormal",
    "ActionResponseWithList",
    "ActionResponseWithPblock",
    "ActionResult",
    "ActionReturn",
    "AttributeDescriptor",
    "AttributeWithSelection",
    "CaptureObject",
    "ConfirmedServiceError",
    "Conformance",
    "DataAccessResult",
    "DataBlockG",
    "DataBlockSA",
    "DataNotification",
    "EntryDescriptor",
    "EventNotification",
    "ExceptionResponse",
    "GetRequest",
    "GetRequestNext",
    "GetRequestNormal",
    "GetRequestWithList",
    "GetResponse",
    "GetResponseNormal",
    "GetResponseWithDataBlock",
    "GetResponseWithList",
    "GetResult",
    "InitiateRequest",
    "InitiateResponse",
    "MethodDescriptor",
    "RangeDescriptor",
    "SelectiveAccess",
    "SetRequest",
    "SetRequestNormal",
    "SetRequestWithDataBlock",
    "SetRequestWithFirstDataBlock",
    "SetRequestWithList",
    "SetRequestWithListAndFirstDataBlock",
    "SetResponse",
    "SetResponseDataBlock",
    "SetResponseLastDataBlock",
    "SetResponseLastDataBlockWithList",
    "SetResponseNormal",
    "SetResponseWithList",
    "XdlmsApdu",
    "decode_get_results",
    "decode_xdlms",
    "encode_get_results",
    "invoke_id_and_priority",
]
