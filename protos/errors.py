"""Errors a user can act on, and the gRPC status each maps to at the wire edge.

Every package raises these (or subclasses) with a message naming the thing at fault (file
and line, field, silo id, round) and what to do. The CLI prints them without a traceback;
the aggregator's servicer turns them into a status code and that message, and anything
else into INTERNAL with a generic message (the details go to the log, never to the peer).
"""

from __future__ import annotations

import grpc


class FedbiscuitError(Exception):
    """Base of all errors a user or operator can act on."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidInput(FedbiscuitError):
    """A file, message, config or flag is malformed; the message says where."""

    status = grpc.StatusCode.INVALID_ARGUMENT


class NotAuthenticated(FedbiscuitError):
    """No verifiable identity (missing, foreign or revoked certificate)."""

    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(FedbiscuitError):
    """An authenticated party asked for something it may not do."""

    status = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(FedbiscuitError):
    """The request is valid but not now: wrong round, phase, plan or task."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(FedbiscuitError):
    """A size limit would be exceeded."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class BudgetExceeded(FedbiscuitError):
    """A privacy release would push a silo's epsilon past its budget; it was not made."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class PolicyViolation(FedbiscuitError):
    """A plan asks a silo for something its local policy does not allow."""

    status = grpc.StatusCode.FAILED_PRECONDITION
