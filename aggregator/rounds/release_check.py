"""The aggregator's check that an upload's release is bound to its task, and that a
re-release repeats a release the silo already paid for (privacy.re_release).

Why: a re-release carries no new ε, so the aggregator must not let a silo pass off anything
else as one: it must repeat, within its cap, a DP-SGD release of this silo with the same
binding (federation, plan, round, adapter, and the digest of the global this task trains
from, as the aggregator itself computes it).
"""

from __future__ import annotations

from collections.abc import Sequence

from privacy.ledger import RE_RELEASE, LedgerEntry
from privacy.re_release import re_release_problem
from protos.errors import FailedPrecondition


def check_release_binding(
    entry: LedgerEntry, expected_binding: str, earlier: Sequence[LedgerEntry]
) -> None:
    """Raise FailedPrecondition unless `entry` (the upload's release) is bound to
    `expected_binding` (a DP-SGD release may omit its binding; a re-release may not) and, if
    a re-release, validly repeats one of `earlier` (the silo's entries before it)."""
    at = f"ledger entry seq {entry.seq}"
    if entry.mechanism == RE_RELEASE and entry.release_binding is None:
        raise FailedPrecondition(f"{at}: a re-release must carry its release binding")
    if entry.release_binding is not None and entry.release_binding != expected_binding:
        raise FailedPrecondition(
            f"{at} is bound to another round, adapter or global than this task's; a changed "
            "global needs a new release"
        )
    problem = re_release_problem(entry, earlier)
    if problem:
        raise FailedPrecondition(f"{at}: {problem}")
