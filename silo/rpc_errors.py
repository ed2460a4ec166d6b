"""The silo's gRPC edge for errors: an aggregator's status code back into our exceptions.

Only the client sees `grpc.RpcError`; everything above it handles domain errors. One
distinction matters to the task loop: a task-scoped call the aggregator answers with
FAILED_PRECONDITION means the aggregator moved on (the round closed, was re-run or is no
longer current), which is :class:`SupersededByAggregator`; a refusal this silo makes itself
(a task naming no secure aggregation round, a key epoch it does not hold) stays a plain
:class:`~protos.errors.FailedPrecondition` and is never mistaken for the aggregator's.
"""

from __future__ import annotations

import grpc

from protos.errors import (
    FailedPrecondition,
    FedbiscuitError,
    InvalidInput,
    NotAuthenticated,
    PermissionDenied,
    ResourceExhausted,
)

# Transient: the aggregator restarting, a dropped connection. The client retries these.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_ERRORS: dict[grpc.StatusCode, type[FedbiscuitError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.UNAUTHENTICATED: NotAuthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
}


class AggregatorUnavailable(FedbiscuitError):
    """The aggregator could not be reached even after retrying."""


class SupersededByAggregator(FailedPrecondition):
    """The aggregator no longer takes this task: its round closed, was re-run or moved on.

    Whatever the silo spent on the task stays spent; the silo carries on with the next task.
    """


def from_rpc_error(
    rpc: str, address: str, code: grpc.StatusCode, details: str, *, task_scoped: bool
) -> FedbiscuitError:
    """The domain error for a non-retryable status the aggregator at `address` returned for
    `rpc`; `task_scoped`: the call was about one task (FAILED_PRECONDITION then means the
    aggregator superseded it)."""
    message = f"aggregator {address} refused {rpc}: {details} ({code.name})"
    if task_scoped and code == grpc.StatusCode.FAILED_PRECONDITION:
        return SupersededByAggregator(message)
    return _ERRORS.get(code, FedbiscuitError)(message)


def unreachable(
    rpc: str,
    address: str,
    attempts: int,
    code: grpc.StatusCode,
    details: str,
    waited_s: float | None = None,
) -> AggregatorUnavailable:
    """The error once `attempts` tries of `rpc` all failed transiently (over `waited_s`
    seconds of backoff, when given)."""
    over = "" if waited_s is None else f" over {waited_s:.0f}s"
    return AggregatorUnavailable(
        f"aggregator {address} unreachable for {rpc} after {attempts} attempts{over}: "
        f"{details} ({code.name})"
    )
