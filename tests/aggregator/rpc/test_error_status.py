"""The aggregator's error translator: each domain error class gets its status code."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from aggregator.rpc.error_status import status_of
from privacy.he import AggregateRejected
from privacy.secagg import SecAggAborted
from protos import errors
from protos.errors import (
    BudgetExceeded,
    FailedPrecondition,
    InvalidInput,
    NotAuthenticated,
    PermissionDenied,
    PolicyViolation,
    ResourceExhausted,
)

# The contract a silo sees, by status code: which domain errors (subclasses included) get it.
ERRORS_BY_CODE: dict[str, tuple[type[Exception], ...]] = {
    "UNAUTHENTICATED": (NotAuthenticated,),
    "PERMISSION_DENIED": (PermissionDenied, AggregateRejected),
    "INVALID_ARGUMENT": (InvalidInput,),
    "FAILED_PRECONDITION": (FailedPrecondition, BudgetExceeded, PolicyViolation, SecAggAborted),
    "RESOURCE_EXHAUSTED": (ResourceExhausted,),
}


@pytest.mark.parametrize(
    ("error", "code"), [(error, code) for code, errs in ERRORS_BY_CODE.items() for error in errs]
)
def test_each_domain_error_gets_its_status_and_message(error: type, code: str) -> None:
    expected = (grpc.StatusCode[code], "round 3 is over")
    assert status_of(error("round 3 is over")) == expected


def test_an_unexpected_error_is_internal_and_its_details_stay_in_the_log() -> None:
    assert status_of(KeyError("secret path /var/x")) == (grpc.StatusCode.INTERNAL, "internal error")


def test_protos_errors_do_not_import_grpc() -> None:
    source = Path(errors.__file__).read_text(encoding="utf-8")
    assert "grpc" not in source.replace("gRPC", "")
