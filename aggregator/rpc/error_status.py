"""The aggregator's gRPC edge for errors: a domain error becomes a status code and its message.

Domain errors (`protos.errors`) are plain exceptions; only here do they meet gRPC. A subclass
takes its base's code; `BudgetExceeded` and `PolicyViolation` are refusals "not now", like
any failed precondition.
Anything that is not ours becomes INTERNAL "internal error": the details go to the server log,
never to the peer.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc

from protos.errors import (
    BudgetExceeded,
    FailedPrecondition,
    FedbiscuitError,
    InvalidInput,
    NotAuthenticated,
    PermissionDenied,
    PolicyViolation,
    ResourceExhausted,
)

log = logging.getLogger(__name__)


class ClientCancelled(FedbiscuitError):
    """The caller cancelled or disconnected mid-stream, or stalled past a stream deadline and
    was cancelled (aggregator.rpc.admission): routine, logged at INFO there, never INTERNAL."""


# Checked in order; every subclass (BudgetExceeded, PolicyViolation, SecAggAborted,
# AggregateRejected, ...) takes its base's code.
STATUS_OF: tuple[tuple[type[FedbiscuitError], grpc.StatusCode], ...] = (
    (NotAuthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (BudgetExceeded, grpc.StatusCode.FAILED_PRECONDITION),
    (PolicyViolation, grpc.StatusCode.FAILED_PRECONDITION),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ClientCancelled, grpc.StatusCode.CANCELLED),
)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a peer gets for `exc` (INTERNAL for anything else)."""
    for error_type, code in STATUS_OF:
        if isinstance(exc, error_type):
            return code, str(exc)
    return grpc.StatusCode.INTERNAL, "internal error"


def abort_with(context: grpc.ServicerContext, method: str, exc: Exception) -> NoReturn:
    """End the call with `exc`'s status; log what the peer is not told."""
    code, message = status_of(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("internal error in %s", method, exc_info=exc)
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # pragma: no cover - grpc always raises
