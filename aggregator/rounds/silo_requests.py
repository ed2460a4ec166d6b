"""What silos send and ask for that must be checked against the round in progress: tasks,
uploads, loss reports, declines, and the lock-held helpers the protection modes' RPCs use.

A base of `RoundMachine` (which holds the state, the lock and the store these read); apart
only so that each module stays readable in one sitting. Every method takes the machine's
lock and fires whatever its change allows before returning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aggregator.protection.base import Protection
from aggregator.rounds.round_table import Phase, RoundState
from aggregator.store import Decline, FederationStore, LossReport, Submission, TaskRecord
from protos.errors import FailedPrecondition, InvalidInput, PermissionDenied
from protos.plan import Plan

log = logging.getLogger(__name__)

BUDGET_EXHAUSTED = "budget_exhausted"
T = TypeVar("T")


class SiloRequests:
    """The request side of the round machine (see `RoundMachine`)."""

    _store: FederationStore
    _plan: Plan
    _clock: Callable[[], float]
    _cond: threading.Condition
    _state: RoundState
    _protection: Protection

    def _advance(self) -> None:
        raise NotImplementedError

    def current_task(self, silo_id: str, task_id: str) -> TaskRecord:
        """The caller's task if it belongs to the attempt in progress (replays are refused)."""
        with self._cond:
            task = self.owned_task(silo_id, task_id)
            self._advance()
            self._require_current(task)
            return task

    def accept_loss_report(
        self,
        silo_id: str,
        task_id: str,
        losses: tuple[float, ...],
        ledger_seq: int,
        sealed: Mapping[str, bytes] | None = None,
    ) -> bool:
        """Store a grouping's loss report durably; False if it was an identical resend.

        `ledger_seq` is the silo's (already stored) ledger entry for this release. With hidden
        membership `losses` is empty and `sealed` holds the report sealed to each other
        candidate: the grouping relays the blobs and the store keeps only that (and when) the
        silo reported."""
        with self._cond:
            task = self.owned_task(silo_id, task_id)
            previous = self._store.loss_report(task_id)
            if previous is not None:
                if previous.losses != losses:
                    raise FailedPrecondition(
                        f"task {task_id!r} already has a different loss report; a release "
                        "cannot be replaced"
                    )
                return False
            self._advance()
            self._require_open(task)
            if task.kind != "evaluate":
                raise FailedPrecondition(f"task {task_id!r} is a {task.kind} task, not evaluate")
            self._protection.grouping.take_report(task, losses, sealed or {})
            report = LossReport(
                task_id, silo_id, task.round, task.attempt, losses, self._clock(), ledger_seq
            )
            self._store.add_loss_report(report)
            log.info(
                "federation=%s round=%d attempt=%d silo=%s loss report accepted",
                self._plan.federation_id,
                task.round,
                task.attempt,
                silo_id,
            )
            self._advance()
            return True

    def upload_target(self, silo_id: str, task_id: str, sha256: str) -> TaskRecord:
        """Check an upload may proceed before its payload is read (a re-upload of the same
        accepted payload may; a different payload for an accepted task may not)."""
        with self._cond:
            task = self.owned_task(silo_id, task_id)
            accepted = self._store.submission(task_id)
            if accepted is not None:
                if accepted.sha256 != sha256:
                    raise FailedPrecondition(
                        f"task {task_id!r} already has an accepted update with a different "
                        "payload; an accepted update cannot be replaced"
                    )
                return task
            self._advance()
            self._require_open(task)
            return task

    def accept_upload(
        self,
        silo_id: str,
        task_id: str,
        payload: Any,
        num_examples: int,
        ledger_seq: int,
        *,
        digest: str | None = None,
    ) -> bool:
        """Store a verified update durably; False if it was an identical re-upload.

        What `payload` is and what the store keeps of it is the protection mode's: a float32
        delta (kept), masked ring words (into the secure sum, only the record is kept) or
        ciphertexts with a signed commitment (kept as such). `ledger_seq` is the silo's
        (already stored) ledger entry for this release: each accepted update needs its own,
        later than those of the silo's earlier updates. `digest` is the payload's digest if
        the caller already checked the payload against it (hashing a large update again
        costs as much as receiving it), else the protection mode computes it."""
        sha256 = digest if digest is not None else self._protection.digest(payload)
        with self._cond:
            task = self.upload_target(silo_id, task_id, sha256)
            if self._store.submission(task_id) is not None:
                return False
            self._protection.check(self._state, task, payload)
            self._check_fresh_release(silo_id, ledger_seq)
            now = self._clock()
            submission = Submission(
                task_id, silo_id, task.round, task.attempt, sha256, num_examples, now,
                ledger_seq=ledger_seq,
            )  # fmt: skip
            kept = self._protection.accept(task, payload)
            self._store.add_submission(submission, kept)
            log.info(
                "federation=%s round=%d attempt=%d silo=%s update accepted",
                self._plan.federation_id,
                task.round,
                task.attempt,
                silo_id,
            )
            self._advance()
            return True

    def _check_fresh_release(self, silo_id: str, ledger_seq: int) -> None:
        used = [s.ledger_seq for s in self._store.submissions(silo_id=silo_id)]
        if used and ledger_seq <= max(used):
            raise FailedPrecondition(
                f"ledger entry seq {ledger_seq} of silo {silo_id!r} already covers an earlier "
                f"update (the last covered seq is {max(used)}); each release needs its own "
                "entry"
            )

    def decline(
        self, silo_id: str, task_id: str, reason_code: str, message: str, epsilon_spent: float
    ) -> None:
        """Record a refusal; `budget_exhausted` takes the silo out of all future samples."""
        with self._cond:
            task = self.owned_task(silo_id, task_id)
            if self._store.decline(task_id) is not None:
                return
            self._advance()
            self._require_open(task)
            decline = Decline(
                task_id,
                silo_id,
                task.round,
                task.attempt,
                reason_code,
                message,
                epsilon_spent,
                self._clock(),
            )
            exhausted = reason_code == BUDGET_EXHAUSTED
            self._store.add_decline(decline, mark_exhausted=exhausted)
            log.info(
                "federation=%s round=%d attempt=%d silo=%s declined reason=%s",
                self._plan.federation_id,
                task.round,
                task.attempt,
                silo_id,
                reason_code,
            )
            self._advance()

    # -- for the protection modes' RPCs (aggregator.protection) --------------------------------

    def under_lock(self, action: Callable[[], T], *, advance: bool = False) -> T:
        """Run `action` under the machine's lock (then fire what it allows, if `advance`)."""
        with self._cond:
            result = action()
            if advance:
                self._advance()
            return result

    def with_current_task(self, silo_id: str, task_id: str, action: Callable[[TaskRecord], T]) -> T:
        """Run `action` on the caller's task of the attempt in progress, then fire whatever
        that completes."""
        with self._cond:
            result = action(self.current_task(silo_id, task_id))
            self._advance()
            return result

    def long_poll(self, probe: Callable[[bool], T | None], wait_s: float, slice_s: float) -> T:
        """Under the lock, call `probe(last)` until it answers, waking on every change (and at
        least every `slice_s`); `last` is True on the call after `wait_s` (real time)."""
        give_up = time.monotonic() + max(0.0, wait_s)
        with self._cond:
            while True:
                remaining = give_up - time.monotonic()
                result = probe(remaining <= 0)
                if result is not None:
                    return result
                self._cond.wait(min(remaining, slice_s))

    def joined_silos(self) -> set[str]:
        return {r.silo_id for r in self._store.silos()}

    def download_round(self, silo_id: str, task_id: str | None, adapter: int) -> int:
        """The round whose globals of `adapter` the caller's current task starts from, or with
        no task, the final round of a finished federation."""
        if not 0 <= adapter < self._plan.adapters:
            raise InvalidInput(
                f"adapter_index {adapter} does not exist: the plan has {self._plan.adapters}"
            )
        with self._cond:
            if task_id is None:
                if self._state.phase != Phase.DONE:
                    raise FailedPrecondition(
                        f"federation {self._plan.federation_id!r} has not finished "
                        f"({self._state.phase}); final globals do not exist yet"
                    )
                return self._plan.rounds
            task = self.current_task(silo_id, task_id)
            if task.kind == "train" and adapter != task.adapter_index:
                raise InvalidInput(
                    f"task {task_id!r} trains adapter {task.adapter_index}, not {adapter}"
                )
            return task.round

    def owned_task(self, silo_id: str, task_id: str) -> TaskRecord:
        task = self._store.task(task_id)
        if task is None:
            raise FailedPrecondition(f"task {task_id!r} was never issued by this aggregator")
        if task.silo_id != silo_id:
            raise PermissionDenied(f"task {task_id!r} was not issued to silo {silo_id!r}")
        return task

    def _require_current(self, task: TaskRecord) -> None:
        s = self._state
        phase = Phase.GROUPING if task.kind == "evaluate" else Phase.TRAINING
        if s.phase != phase or (task.round, task.attempt) != (s.round, s.attempt):
            raise FailedPrecondition(
                f"task {task.task_id!r} is for round {task.round} attempt {task.attempt}, but the "
                f"federation is {s.phase} at round {s.round} attempt {s.attempt}"
            )

    def _require_open(self, task: TaskRecord) -> None:
        self._require_current(task)
        if self._store.submission(task.task_id) is not None:
            raise FailedPrecondition(f"task {task.task_id!r} already has an accepted update")
        if self._store.loss_report(task.task_id) is not None:
            raise FailedPrecondition(f"task {task.task_id!r} already has a loss report")
        if self._store.decline(task.task_id) is not None:
            raise FailedPrecondition(f"task {task.task_id!r} was declined")
