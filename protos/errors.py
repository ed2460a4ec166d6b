"""Errors a user can act on: plain exceptions, free of any transport.

Every package raises these (or subclasses) with a message naming the thing at fault (file
and line, field, silo id, round) and what to do. The CLI prints them without a traceback;
each gRPC edge translates them into a status code (the aggregator's in
`aggregator/rpc/error_status.py`), and anything else into INTERNAL with a generic message.
"""

from __future__ import annotations


class FedbiscuitError(Exception):
    """Base of all errors a user or operator can act on."""


class InvalidInput(FedbiscuitError):
    """A file, message, config or flag is malformed; the message says where."""


class NotAuthenticated(FedbiscuitError):
    """No verifiable identity (missing, foreign or revoked certificate)."""


class PermissionDenied(FedbiscuitError):
    """An authenticated party asked for something it may not do."""


class FailedPrecondition(FedbiscuitError):
    """The request is valid but not now: wrong round, phase, plan or task."""


class ResourceExhausted(FedbiscuitError):
    """A size limit would be exceeded."""


class BudgetExceeded(FedbiscuitError):
    """A privacy release would push a silo's epsilon past its budget; it was not made."""


class PolicyViolation(FedbiscuitError):
    """A plan asks a silo for something its local policy does not allow."""
