"""An in-memory store: the contract without a disk, for tests and short-lived tools.

What it keeps lives in a `MemoryMedium` the caller owns; opening a new store on the same
medium sees everything committed before, as a SQLite store re-opened on the same state dir
does (what a restart of the process would lose is not "durable" here, so never use it for a
federation that must survive one). Records are copied in and out, so a caller can never
change a stored value by mutating what it passed or got back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np

from aggregator.store import records
from aggregator.store.base import ARTIFACT_KEY, FederationStore, check_plan_change
from protos import codec
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import Plan

R = TypeVar("R", records.Submission, records.LossReport, records.Decline)


@dataclass
class MemoryMedium:
    """Everything one federation's in-memory stores share (the analogue of a state dir)."""

    name: str = "memory"
    plan: Plan | None = None
    state: dict | None = None
    globals: dict[tuple[int, int], tuple[records.GlobalsRecord, dict[str, np.ndarray]]] = field(
        default_factory=dict
    )
    silos: dict[str, records.SiloRecord] = field(default_factory=dict)
    tasks: dict[str, records.TaskRecord] = field(default_factory=dict)
    submissions: dict[str, records.Submission] = field(default_factory=dict)
    updates: dict[str, np.ndarray] = field(default_factory=dict)
    loss_reports: dict[str, records.LossReport] = field(default_factory=dict)
    declines: dict[str, records.Decline] = field(default_factory=dict)
    ledger: dict[tuple[str, int], records.LedgerEntryRecord] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


class MemoryStore(FederationStore):
    """A `FederationStore` over a `MemoryMedium`. `fault_hook(point)` is the same test seam
    as SqliteStore's (called after a payload is staged, before its record commits)."""

    def __init__(
        self,
        medium: MemoryMedium,
        plan: Plan,
        *,
        allow_plan_change: bool = False,
        fault_hook: Callable[[str], None] | None = None,
    ) -> None:
        self._m = medium
        self._fault_hook = fault_hook or (lambda _point: None)
        with medium.lock:
            if medium.plan is not None:
                check_plan_change(medium.name, medium.plan, plan, allow_plan_change)
            medium.plan = plan
        self.plan = plan

    def close(self) -> None:
        """Nothing to release: the medium keeps the data."""

    def load_state(self) -> dict | None:
        with self._m.lock:
            return None if self._m.state is None else dict(self._m.state)

    def save_state(self, state: dict, closing: records.ClosedAttempt | None = None) -> None:
        with self._m.lock:
            self._m.state = dict(state)
            if closing is None:
                return
            for task_id, sub in list(self._m.submissions.items()):
                if (sub.round, sub.attempt) == (closing.round, closing.attempt):
                    self._m.updates.pop(task_id, None)
                    self._m.submissions[task_id] = replace(sub, aggregated=closing.aggregated)

    def put_globals(
        self, round_: int, tensors: Mapping[str, np.ndarray], adapter: int = 0
    ) -> records.GlobalsRecord:
        manifest, _ = codec.flatten(tensors)
        arrays = {k: np.array(v, dtype=np.float32) for k, v in tensors.items()}
        self._fault_hook("globals_written")
        record = records.GlobalsRecord(round_, manifest.sha256, manifest.layout(), adapter)
        with self._m.lock:
            self._m.globals[(round_, adapter)] = (record, arrays)
        return record

    def globals_record(self, round_: int, adapter: int = 0) -> records.GlobalsRecord | None:
        with self._m.lock:
            found = self._m.globals.get((round_, adapter))
        return None if found is None else found[0]

    def load_globals(self, round_: int, adapter: int = 0) -> dict[str, np.ndarray]:
        with self._m.lock:
            found = self._m.globals.get((round_, adapter))
        if found is None:
            raise FailedPrecondition(f"no globals stored for round {round_} adapter {adapter}")
        return {k: v.copy() for k, v in found[1].items()}

    def join_silo(self, silo_id: str, now_s: float) -> records.SiloRecord:
        with self._m.lock:
            known = self._m.silos.get(silo_id)
            record = records.SiloRecord(silo_id, now_s, False, now_s) if known is None else known
            self._m.silos[silo_id] = replace(record, last_seen_s=now_s)
            return self._m.silos[silo_id]

    def see_silo(self, silo_id: str, now_s: float) -> records.SiloRecord | None:
        with self._m.lock:
            if silo_id not in self._m.silos:
                return None
            self._m.silos[silo_id] = replace(self._m.silos[silo_id], last_seen_s=now_s)
            return self._m.silos[silo_id]

    def silos(self) -> list[records.SiloRecord]:
        with self._m.lock:
            return [self._m.silos[s] for s in sorted(self._m.silos)]

    def add_task(self, task: records.TaskRecord) -> None:
        with self._m.lock:
            self._m.tasks.setdefault(task.task_id, task)

    def task(self, task_id: str) -> records.TaskRecord | None:
        with self._m.lock:
            return self._m.tasks.get(task_id)

    def add_submission(self, submission: records.Submission, update: np.ndarray | None) -> None:
        staged = None if update is None else np.array(update, dtype=np.float32)
        self._fault_hook("upload_written")
        with self._m.lock:
            _insert_once(self._m.submissions, submission, "already has a submission")
            if staged is not None:
                self._m.updates[submission.task_id] = staged

    def submission(self, task_id: str) -> records.Submission | None:
        with self._m.lock:
            return self._m.submissions.get(task_id)

    def submissions(
        self, *, round_: int | None = None, attempt: int | None = None, silo_id: str | None = None
    ) -> list[records.Submission]:
        return _matching(self._m, self._m.submissions, round_, attempt, silo_id)

    def load_update(self, task_id: str) -> np.ndarray:
        with self._m.lock:
            found = self._m.updates.get(task_id)
        if found is None:
            raise FailedPrecondition(f"no stored update for task {task_id!r}")
        return found.copy()

    def add_loss_report(self, report: records.LossReport) -> None:
        with self._m.lock:
            _insert_once(self._m.loss_reports, report, "already has a loss report")

    def loss_report(self, task_id: str) -> records.LossReport | None:
        with self._m.lock:
            return self._m.loss_reports.get(task_id)

    def loss_reports(
        self, *, round_: int | None = None, attempt: int | None = None, silo_id: str | None = None
    ) -> list[records.LossReport]:
        return _matching(self._m, self._m.loss_reports, round_, attempt, silo_id)

    def add_decline(self, decline: records.Decline, *, mark_exhausted: bool) -> None:
        with self._m.lock:
            _insert_once(self._m.declines, decline, "was already declined")
            silo = self._m.silos.get(decline.silo_id)
            if mark_exhausted and silo is not None:
                self._m.silos[decline.silo_id] = replace(silo, exhausted=True)

    def decline(self, task_id: str) -> records.Decline | None:
        with self._m.lock:
            return self._m.declines.get(task_id)

    def declines(
        self, *, round_: int | None = None, attempt: int | None = None, silo_id: str | None = None
    ) -> list[records.Decline]:
        return _matching(self._m, self._m.declines, round_, attempt, silo_id)

    def add_ledger_entries(self, entries: Sequence[records.LedgerEntryRecord]) -> None:
        with self._m.lock:
            keys = [(e.silo_id, e.seq) for e in entries]
            if len(set(keys)) != len(keys) or any(k in self._m.ledger for k in keys):
                raise FailedPrecondition("a ledger entry with that silo and seq is already stored")
            self._m.ledger.update(zip(keys, entries, strict=True))

    def ledger_entries(self, silo_id: str | None = None) -> list[records.LedgerEntryRecord]:
        with self._m.lock:
            return [
                self._m.ledger[k]
                for k in sorted(self._m.ledger)
                if silo_id is None or k[0] == silo_id
            ]

    def put_artifact(self, key: str, data: bytes) -> None:
        if not ARTIFACT_KEY.fullmatch(key):
            raise InvalidInput(f"artifact key {key!r} must match {ARTIFACT_KEY.pattern}")
        with self._m.lock:
            self._m.artifacts[key] = bytes(data)

    def artifact(self, key: str) -> bytes | None:
        with self._m.lock:
            return self._m.artifacts.get(key)

    def artifact_keys(self, prefix: str) -> list[str]:
        with self._m.lock:
            return sorted(k for k in self._m.artifacts if k.startswith(prefix))


def _insert_once(rows: dict[str, R], row: R, already: str) -> None:
    """Store `row` under its task id; a task has at most one (the caller holds the lock)."""
    if row.task_id in rows:
        raise FailedPrecondition(f"task {row.task_id!r} {already}")
    rows[row.task_id] = row


def _matching(
    medium: MemoryMedium,
    rows: Mapping[str, R],
    round_: int | None,
    attempt: int | None,
    silo_id: str | None,
) -> list[R]:
    """The rows matching the optional filters, in task id order (as SQLite's ORDER BY)."""
    with medium.lock:
        return [
            rows[task_id]
            for task_id in sorted(rows)
            if (round_ is None or rows[task_id].round == round_)
            and (attempt is None or rows[task_id].attempt == attempt)
            and (silo_id is None or rows[task_id].silo_id == silo_id)
        ]
