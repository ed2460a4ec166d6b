"""The silo's gRPC edge tells "the aggregator moved on" apart from every other refusal."""

from __future__ import annotations

import grpc
import pytest

from protos.errors import FailedPrecondition, InvalidInput, NotAuthenticated
from silo.rpc_errors import SupersededByAggregator, from_rpc_error

ADDRESS = "localhost:50051"


def test_a_task_the_aggregator_no_longer_takes_is_superseded() -> None:
    error = from_rpc_error(
        "UploadUpdate",
        ADDRESS,
        grpc.StatusCode.FAILED_PRECONDITION,
        "round 3 is closed",
        task_scoped=True,
    )

    assert isinstance(error, SupersededByAggregator)
    assert str(error) == (
        f"aggregator {ADDRESS} refused UploadUpdate: round 3 is closed (FAILED_PRECONDITION)"
    )


def test_a_refused_join_is_not_mistaken_for_a_superseded_task() -> None:
    error = from_rpc_error(
        "Join", ADDRESS, grpc.StatusCode.FAILED_PRECONDITION, "other federation", task_scoped=False
    )

    assert type(error) is FailedPrecondition


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidInput),
        (grpc.StatusCode.UNAUTHENTICATED, NotAuthenticated),
    ],
)
def test_other_statuses_keep_their_domain_error_even_for_a_task(
    code: grpc.StatusCode, expected: type[Exception]
) -> None:
    error = from_rpc_error("UploadUpdate", ADDRESS, code, "no", task_scoped=True)

    assert type(error) is expected
    assert not isinstance(error, SupersededByAggregator)
