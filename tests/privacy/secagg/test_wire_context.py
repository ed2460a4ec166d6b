"""A round context crosses the wire unchanged, its grouping digest included."""

from __future__ import annotations

import pytest

from privacy.secagg import RoundContext, transcript
from privacy.secagg import wire as secagg_wire
from protos.errors import InvalidInput
from tests.privacy.secagg.harness import PLAN_HASH


@pytest.mark.parametrize("grouping_digest", [b"", bytes(range(32))])
def test_a_context_round_trips_through_its_proto(grouping_digest: bytes) -> None:
    context = RoundContext("fed-a", 7, PLAN_HASH, b"s" * 32, grouping_digest=grouping_digest)
    assert secagg_wire.context_from_proto(secagg_wire.context_to_proto(context)) == context


def test_only_a_grouped_round_changes_the_context_digest() -> None:
    plain = RoundContext("fed-a", 7, PLAN_HASH, b"s" * 32)
    assert plain.digest == transcript.digest("context", "fed-a", 7, PLAN_HASH, b"s" * 32)
    grouped = RoundContext("fed-a", 7, PLAN_HASH, b"s" * 32, grouping_digest=b"g" * 32)
    assert grouped.digest != plain.digest
    with pytest.raises(InvalidInput, match="grouping digest"):
        RoundContext("fed-a", 7, PLAN_HASH, b"s" * 32, grouping_digest=b"short")
