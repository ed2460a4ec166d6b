"""The seam the store contract suite runs through: one opener per backend.

An opener opens (or re-opens, as after a restart) its backend on one durable location per
test, for `plan`, and honours the two creation options every backend must support:
`allow_plan_change` and `fault_hook(point)` (called after a payload is written and before its
row commits, at "upload_written" and "globals_written"). To run the contract suite against a
new backend, add its opener to BACKENDS.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest

from aggregator.store import (
    FederationStore,
    LedgerEntryRecord,
    MemoryMedium,
    MemoryStore,
    SqliteStore,
    Submission,
)
from protos import codec
from protos.plan import Plan

PLAN = Plan(
    federation_id="fed-test",
    rounds=2,
    silos_per_round=2,
    min_silos=1,
    protection="insecure_plaintext",
)


class StoreOpener(Protocol):
    def __call__(
        self,
        plan: Plan = PLAN,
        *,
        allow_plan_change: bool = False,
        fault_hook: Callable[[str], None] | None = None,
    ) -> FederationStore: ...


def _sqlite(location: Path) -> StoreOpener:
    def opener(
        plan: Plan = PLAN,
        *,
        allow_plan_change: bool = False,
        fault_hook: Callable[[str], None] | None = None,
    ) -> FederationStore:
        return SqliteStore.create(
            location, plan, allow_plan_change=allow_plan_change, fault_hook=fault_hook
        )

    return opener


def _memory(location: Path) -> StoreOpener:
    medium = MemoryMedium(str(location))  # one medium per test: what a reopen sees

    def opener(
        plan: Plan = PLAN,
        *,
        allow_plan_change: bool = False,
        fault_hook: Callable[[str], None] | None = None,
    ) -> FederationStore:
        return MemoryStore(medium, plan, allow_plan_change=allow_plan_change, fault_hook=fault_hook)

    return opener


# Backend name -> opener factory, given the test's durable location (a fresh directory).
BACKENDS: dict[str, Callable[[Path], StoreOpener]] = {"sqlite": _sqlite, "memory": _memory}


@pytest.fixture(params=sorted(BACKENDS))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreOpener:
    return BACKENDS[request.param](tmp_path / "state")


class Crash(Exception):
    """Raised by a fault hook to simulate the process dying at that point."""


def ledger_entry(silo: str, seq: int, round_: int = 0) -> LedgerEntryRecord:
    """A stored ledger row (the store keeps entries verbatim; verifying is the intake's job)."""
    return LedgerEntryRecord(silo, seq, round_, f"{seq:064x}", 0.7, 4.0, b'{"seq": %d}' % seq, 10.0)


def update(value: float = 0.0) -> np.ndarray:
    return np.arange(4, dtype=np.float32) + np.float32(value)


def submission(
    silo: str = "silo-1", round_: int = 0, attempt: int = 0, value: float = 0.0
) -> Submission:
    task_id = f"r{round_}.a{attempt}.{silo}"
    return Submission(task_id, silo, round_, attempt, codec.sha256_of(update(value)), 0, 10.0)
