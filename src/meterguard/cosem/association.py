"""The association state machine for both roles, as explicit transition tables (h11 style).

One table holds the association life cycle — AARQ/AARE, the HLS 4-pass
authentication, release — and a second the long-transfer (block) sub-state
that only exists inside an established association. Each row reads "in state
S, when T happens, go to state S'". Anything not in a table is illegal: when
*we* try it, :class:`~meterguard.errors.LocalProtocolError`; when the *peer*
causes it, :class:`~meterguard.errors.RemoteProtocolError`.

Rules the tables encode (Green Book §9.3, DM-3…DM-5, DH-2/DH-3):

* Without HLS, an accepted AARE establishes the association at once.
* With HLS (mechanisms 2-7) an AARE "accepted, authentication-required" leaves it
  *pending*: the only service allowed is the reply_to_HLS_authentication ACTION.
* A failed HLS leaves the association FAILED: every later request is refused
  until it is released or a new AARQ succeeds (DM-5).
* A release (RLRQ/RLRE) always returns to IDLE; so does an abort (transport lost).

This module holds no keys and does no IO; :mod:`meterguard.cosem.connection`
drives it.
"""

from __future__ import annotations

import enum

from meterguard.cosem.xdlms import (
    ActionResponseNextPblock,
    ActionResponseNormal,
    GetResponseNormal,
    GetResponseWithDataBlock,
    GetResponseWithList,
    SetResponseDataBlock,
    SetResponseLastDataBlock,
    SetResponseNormal,
)
from meterguard.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "ANSWERS",
    "ASSOCIATION_TRANSITIONS",
    "TRANSFER_TRANSITIONS",
    "Answer",
    "AssociationMachine",
    "AssociationState",
    "Request",
    "Role",
    "TransferState",
    "Trigger",
]


class Role(enum.Enum):
    """Which side of the association this machine tracks."""

    CLIENT = "client"
    SERVER = "server"


class AssociationState(enum.Enum):
    """Association life cycle."""

    IDLE = "idle"
    AWAITING_AARE = "awaiting-aare"
    HLS_PENDING = "hls-pending"
    AWAITING_HLS_RESULT = "awaiting-hls-result"
    ASSOCIATED = "associated"
    FAILED = "failed"
    AWAITING_RLRE = "awaiting-rlre"


class TransferState(enum.Enum):
    """Long (block) transfer in progress inside an established association."""

    NONE = "none"
    LONG_GET = "long-get"
    LONG_SET = "long-set"
    LONG_ACTION = "long-action"


class Trigger(enum.Enum):
    """What happened."""

    AARQ_SENT = "aarq-sent"
    AARE_ACCEPTED = "aare-accepted"
    AARE_HLS_REQUIRED = "aare-hls-required"
    AARE_REJECTED = "aare-rejected"
    HLS_REPLY_SENT = "hls-reply-sent"
    HLS_SUCCEEDED = "hls-succeeded"
    HLS_FAILED = "hls-failed"
    RLRQ_SENT = "rlrq-sent"
    RELEASED = "released"
    ABORTED = "aborted"
    # long transfers
    BLOCK_GET_STARTED = "block-get-started"
    BLOCK_SET_STARTED = "block-set-started"
    BLOCK_ACTION_STARTED = "block-action-started"
    BLOCK_NEXT = "block-next"
    BLOCK_LAST = "block-last"
    BLOCK_ABORTED = "block-aborted"


class Request(enum.Enum):
    """What the client is waiting for an answer to."""

    AARQ = "aarq"
    HLS = "hls"
    RELEASE = "release"
    GET = "get"
    GET_LIST = "get-list"
    SET = "set"
    SET_BLOCK = "set-block"
    ACTION = "action"
    ACTION_BLOCK = "action-block"


class Answer(enum.Enum):
    """What a response means for the pending request."""

    GET_DONE = "get-done"
    GET_LIST_DONE = "get-list-done"
    GET_BLOCK = "get-block"
    SET_DONE = "set-done"
    WRITE_BLOCK_ACKNOWLEDGED = "write-block-acknowledged"
    ACTION_DONE = "action-done"


ANSWERS: dict[tuple[Request, type], Answer] = {
    # "while waiting for R, a response of type X means A"; anything else does not answer R.
    (Request.GET, GetResponseNormal): Answer.GET_DONE,
    (Request.GET, GetResponseWithDataBlock): Answer.GET_BLOCK,
    (Request.GET_LIST, GetResponseWithList): Answer.GET_LIST_DONE,
    (Request.GET_LIST, GetResponseWithDataBlock): Answer.GET_BLOCK,
    (Request.SET, SetResponseNormal): Answer.SET_DONE,
    (Request.SET_BLOCK, SetResponseDataBlock): Answer.WRITE_BLOCK_ACKNOWLEDGED,
    (Request.SET_BLOCK, SetResponseLastDataBlock): Answer.SET_DONE,
    (Request.ACTION, ActionResponseNormal): Answer.ACTION_DONE,
    (Request.ACTION_BLOCK, ActionResponseNextPblock): Answer.WRITE_BLOCK_ACKNOWLEDGED,
    (Request.ACTION_BLOCK, ActionResponseNormal): Answer.ACTION_DONE,
}
"""The client's table of which response answers which pending request (DH-5, DM-11)."""

_S = AssociationState
_T = Trigger
C, S = Role.CLIENT, Role.SERVER

ASSOCIATION_TRANSITIONS: dict[tuple[Role, AssociationState, Trigger], AssociationState] = {
    # client
    (C, _S.IDLE, _T.AARQ_SENT): _S.AWAITING_AARE,
    (C, _S.AWAITING_AARE, _T.AARE_ACCEPTED): _S.ASSOCIATED,
    (C, _S.AWAITING_AARE, _T.AARE_HLS_REQUIRED): _S.HLS_PENDING,
    (C, _S.AWAITING_AARE, _T.AARE_REJECTED): _S.IDLE,
    (C, _S.HLS_PENDING, _T.HLS_REPLY_SENT): _S.AWAITING_HLS_RESULT,
    (C, _S.AWAITING_HLS_RESULT, _T.HLS_SUCCEEDED): _S.ASSOCIATED,
    (C, _S.AWAITING_HLS_RESULT, _T.HLS_FAILED): _S.FAILED,
    (C, _S.ASSOCIATED, _T.RLRQ_SENT): _S.AWAITING_RLRE,
    (C, _S.FAILED, _T.RLRQ_SENT): _S.AWAITING_RLRE,
    (C, _S.AWAITING_RLRE, _T.RELEASED): _S.IDLE,
    # server
    (S, _S.IDLE, _T.AARE_ACCEPTED): _S.ASSOCIATED,
    (S, _S.IDLE, _T.AARE_HLS_REQUIRED): _S.HLS_PENDING,
    (S, _S.IDLE, _T.AARE_REJECTED): _S.IDLE,
    (S, _S.HLS_PENDING, _T.HLS_SUCCEEDED): _S.ASSOCIATED,
    (S, _S.HLS_PENDING, _T.HLS_FAILED): _S.FAILED,
    (S, _S.ASSOCIATED, _T.RELEASED): _S.IDLE,
    (S, _S.HLS_PENDING, _T.RELEASED): _S.IDLE,
    (S, _S.FAILED, _T.RELEASED): _S.IDLE,
    (S, _S.IDLE, _T.RELEASED): _S.IDLE,
}
# An abort (transport lost, fatal error) is legal from every state of both roles.
for _role in Role:
    for _state in AssociationState:
        ASSOCIATION_TRANSITIONS[(_role, _state, _T.ABORTED)] = _S.IDLE

_X = TransferState
TRANSFER_TRANSITIONS: dict[tuple[TransferState, Trigger], TransferState] = {
    (_X.NONE, _T.BLOCK_GET_STARTED): _X.LONG_GET,
    (_X.NONE, _T.BLOCK_SET_STARTED): _X.LONG_SET,
    (_X.NONE, _T.BLOCK_ACTION_STARTED): _X.LONG_ACTION,
    (_X.LONG_GET, _T.BLOCK_NEXT): _X.LONG_GET,
    (_X.LONG_SET, _T.BLOCK_NEXT): _X.LONG_SET,
    (_X.LONG_ACTION, _T.BLOCK_NEXT): _X.LONG_ACTION,
    (_X.LONG_GET, _T.BLOCK_LAST): _X.NONE,
    (_X.LONG_SET, _T.BLOCK_LAST): _X.NONE,
    (_X.LONG_ACTION, _T.BLOCK_LAST): _X.NONE,
}
for _xs in TransferState:
    TRANSFER_TRANSITIONS[(_xs, _T.BLOCK_ABORTED)] = _X.NONE


class AssociationMachine:
    """Tracks one association's state for one role and refuses illegal moves."""

    __slots__ = ("role", "state", "transfer")

    def __init__(self, role: Role) -> None:
        self.role = role
        self.state = AssociationState.IDLE
        self.transfer = TransferState.NONE

    def fire(self, trigger: Trigger, *, by_peer: bool) -> AssociationState:
        """Apply ``trigger`` and return the new association state.

        Raises:
            RemoteProtocolError: ``by_peer`` and the move is illegal.
            LocalProtocolError: we tried an illegal move.
        """
        if trigger.value.startswith("block-"):
            self._fire_transfer(trigger, by_peer=by_peer)
            return self.state
        new = ASSOCIATION_TRANSITIONS.get((self.role, self.state, trigger))
        if new is None:
            self._illegal(trigger, by_peer=by_peer)
        else:
            self.state = new
            if new is not AssociationState.ASSOCIATED:
                self.transfer = TransferState.NONE
        return self.state

    def _fire_transfer(self, trigger: Trigger, *, by_peer: bool) -> None:
        if self.state is not AssociationState.ASSOCIATED:
            self._illegal(trigger, by_peer=by_peer)
        new = TRANSFER_TRANSITIONS.get((self.transfer, trigger))
        if new is None:
            self._illegal(trigger, by_peer=by_peer)
        else:
            self.transfer = new

    def _illegal(self, trigger: Trigger, *, by_peer: bool) -> None:
        msg = (
            f"{self.role.value}: {trigger.value} is not allowed in state "
            f"{self.state.value}/{self.transfer.value}"
        )
        if by_peer:
            raise RemoteProtocolError(msg)
        raise LocalProtocolError(msg)

    def __repr__(self) -> str:
        return f"AssociationMachine({self.role.value}, {self.state.value}, {self.transfer.value})"
