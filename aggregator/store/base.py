"""The storage contract the round machine relies on, independent of any backend.

Every backend must pass the contract suite in tests/aggregator/store/test_contract.py (add
the backend to its BACKENDS table); backend-specific behaviour (files on disk, read-only
views) is tested next to the backend.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np

from aggregator.store import records
from protos.errors import FailedPrecondition
from protos.plan import Plan

ARTIFACT_KEY = re.compile(r"[a-z0-9][a-z0-9._/-]{0,199}")
"""What an artifact key must match in every backend (a relative, lower-case path)."""


def check_plan_change(where: str, stored: Plan, plan: Plan, allow_plan_change: bool) -> None:
    """Refuse to open state of `stored` for another `plan`, unless the operator allowed the
    change and it keeps what the stored globals and assignment depend on."""
    if stored.sha256() == plan.sha256():
        return
    if not allow_plan_change:
        raise FailedPrecondition(
            f"{where} belongs to plan {stored.sha256()[:12]} of federation "
            f"{stored.federation_id!r}, not plan {plan.sha256()[:12]}; use a fresh "
            "state_dir, or allow the plan change explicitly"
        )
    kept = ("federation_id", "selector", "algorithm", "fedbiscuit")
    if any(getattr(stored, name) != getattr(plan, name) for name in kept):
        raise FailedPrecondition(
            f"{where}: a plan change may not alter federation_id, selector, "
            "algorithm or fedbiscuit (the stored globals and assignment would not "
            "fit); use a fresh state_dir"
        )


class FederationStore(ABC):
    """What the round machine persists; every method is atomic and durable on return."""

    plan: Plan

    @abstractmethod
    def load_state(self) -> dict | None:
        """The round machine's state as it saved it (a JSON-able dict), or None when new."""

    @abstractmethod
    def save_state(self, state: dict, closing: records.ClosedAttempt | None = None) -> None:
        """Persist the machine state, closing an attempt (dropping its uploads) atomically."""

    @abstractmethod
    def put_globals(
        self, round_: int, tensors: Mapping[str, np.ndarray], adapter: int = 0
    ) -> records.GlobalsRecord:
        """Store the globals of `adapter` a round starts from (idempotent: same bytes)."""

    @abstractmethod
    def globals_record(self, round_: int, adapter: int = 0) -> records.GlobalsRecord | None: ...

    @abstractmethod
    def load_globals(self, round_: int, adapter: int = 0) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def join_silo(self, silo_id: str, now_s: float) -> records.SiloRecord: ...

    @abstractmethod
    def see_silo(self, silo_id: str, now_s: float) -> records.SiloRecord | None: ...

    @abstractmethod
    def silos(self) -> list[records.SiloRecord]: ...

    @abstractmethod
    def add_task(self, task: records.TaskRecord) -> None:
        """Record an issued task; re-issuing the same task id is a no-op."""

    @abstractmethod
    def task(self, task_id: str) -> records.TaskRecord | None: ...

    @abstractmethod
    def add_submission(self, submission: records.Submission, update: np.ndarray | None) -> None:
        """Durably store an upload; only then may it be acknowledged. A masked upload is
        recorded without its vector (`update` None): nobody may keep an individual one."""

    @abstractmethod
    def submission(self, task_id: str) -> records.Submission | None: ...

    @abstractmethod
    def submissions(
        self, *, round_: int | None = None, attempt: int | None = None, silo_id: str | None = None
    ) -> list[records.Submission]: ...

    @abstractmethod
    def load_update(self, task_id: str) -> np.ndarray: ...

    @abstractmethod
    def add_loss_report(self, report: records.LossReport) -> None:
        """Durably store a grouping's loss report; only then may it be acknowledged."""

    @abstractmethod
    def loss_report(self, task_id: str) -> records.LossReport | None: ...

    @abstractmethod
    def loss_reports(
        self, *, round_: int | None = None, attempt: int | None = None, silo_id: str | None = None
    ) -> list[records.LossReport]: ...

    @abstractmethod
    def add_decline(self, decline: records.Decline, *, mark_exhausted: bool) -> None:
        """Record a refusal and, in the same transaction, whether the silo is out of budget."""

    @abstractmethod
    def decline(self, task_id: str) -> records.Decline | None: ...

    @abstractmethod
    def declines(
        self, *, round_: int | None = None, attempt: int | None = None, silo_id: str | None = None
    ) -> list[records.Decline]: ...

    @abstractmethod
    def add_ledger_entries(self, entries: Sequence[records.LedgerEntryRecord]) -> None:
        """Durably append verified ledger entries, all or none; a (silo, seq) already stored
        raises FailedPrecondition (the caller sends only new ones)."""

    @abstractmethod
    def ledger_entries(self, silo_id: str | None = None) -> list[records.LedgerEntryRecord]:
        """Stored ledger entries in (silo_id, seq) order."""

    @abstractmethod
    def put_artifact(self, key: str, data: bytes) -> None:
        """Durably store opaque bytes under `key` (replacing any earlier value). Homomorphic
        mode keeps its ciphertexts, statements and key material for silos here: nothing
        stored this way may be plaintext model data or a secret key."""

    @abstractmethod
    def artifact(self, key: str) -> bytes | None:
        """The bytes stored under `key`, or None."""

    @abstractmethod
    def artifact_keys(self, prefix: str) -> list[str]:
        """Stored keys starting with `prefix`, sorted."""

    @abstractmethod
    def close(self) -> None: ...
