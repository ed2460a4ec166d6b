"""The round machine's driver: applies the phase table through the store, thread-safe.

`aggregator.round_machine` says *what* happens (the table, pure); this module does it: it
reads the facts from the store, fires rows, aggregates, persists every state it enters before
returning, and answers the servicer's questions (what a pulling silo should do, whether an
upload or decline may proceed). Handlers ask it; they keep no flags of their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from aggregator.fedavg import fedavg
from aggregator.round_machine import (
    Action,
    Facts,
    Phase,
    RoundState,
    Transition,
    next_transition,
    sample_silos,
    task_id_for,
)
from aggregator.store import (
    ClosedAttempt,
    Decline,
    FederationStore,
    Submission,
    TaskRecord,
)
from protos import codec
from protos.errors import FailedPrecondition, PermissionDenied

log = logging.getLogger(__name__)

BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True)
class Assignment:
    """What a pulling silo is told to do now."""

    kind: str  # "WAIT", "TRAIN" or "DONE"
    task: TaskRecord | None = None
    globals_sha256: str = ""
    deadline_s: float = 0.0
    message: str = ""


class RoundMachine:
    """Applies the table through a store. All methods are thread-safe (one condition).

    `clock` drives deadlines (seconds since the epoch); `export` receives the final globals
    before DONE is persisted, so DONE always means "exported".
    """

    def __init__(
        self,
        store: FederationStore,
        clock: Callable[[], float],
        export: Callable[[Mapping[str, np.ndarray]], None] | None = None,
    ):
        self._store = store
        self._plan = store.plan
        self._clock = clock
        self._export = export
        self._cond = threading.Condition(threading.RLock())
        self._globals_cache: tuple[int, codec.Manifest, np.ndarray] | None = None
        # Silos that have been told the federation finished (in memory: after a restart they
        # simply ask again); the server keeps serving until all know, so none is cut off.
        self._told_finished: set[str] = set()
        with self._cond:
            saved = store.load_state()
            if saved is None:
                state = RoundState(Phase.WAITING_FOR_SILOS, 0, 0, clock())
                store.save_state(state.to_dict())
            else:
                state = RoundState.from_dict(saved)
            self._state = state
            log.info(
                "federation=%s state phase=%s round=%d attempt=%d",
                self._plan.federation_id,
                state.phase,
                state.round,
                state.attempt,
            )
            self._advance()

    @property
    def state(self) -> RoundState:
        with self._cond:
            return self._state

    def tick(self) -> RoundState:
        """Fire whatever the clock now allows (deadlines); the server calls this periodically."""
        with self._cond:
            self._advance()
            return self._state

    def join(self, silo_id: str) -> None:
        with self._cond:
            self._store.join_silo(silo_id, self._clock())
            log.info("federation=%s silo=%s joined", self._plan.federation_id, silo_id)
            self._advance()

    def pull(self, silo_id: str, wait_s: float) -> Assignment:
        """Long-poll up to `wait_s` (real time) for something other than WAIT."""
        give_up = time.monotonic() + max(0.0, wait_s)
        with self._cond:
            if self._store.see_silo(silo_id, self._clock()) is None:
                raise FailedPrecondition(
                    f"silo {silo_id!r} has not joined federation {self._plan.federation_id!r}; "
                    "call Join first"
                )
            while True:
                self._advance()
                if self._state.phase in (Phase.DONE, Phase.FAILED):
                    self._told_finished.add(silo_id)
                    self._cond.notify_all()
                assignment = self._assignment_for(silo_id)
                remaining = give_up - time.monotonic()
                if assignment.kind != "WAIT" or remaining <= 0:
                    return assignment
                self._cond.wait(remaining)

    def current_task(self, silo_id: str, task_id: str) -> TaskRecord:
        """The caller's task if it belongs to the attempt in progress (replays are refused)."""
        with self._cond:
            task = self._owned_task(silo_id, task_id)
            self._advance()
            self._require_current(task)
            return task

    def globals_layout(self, round_: int) -> tuple[codec.TensorSpec, ...]:
        record = self._store.globals_record(round_)
        if record is None:
            raise FailedPrecondition(f"no globals for round {round_}")
        return record.layout

    def globals_vector(self, round_: int) -> tuple[codec.Manifest, np.ndarray]:
        with self._cond:
            if self._globals_cache is None or self._globals_cache[0] != round_:
                manifest, vector = codec.flatten(self._store.load_globals(round_))
                self._globals_cache = (round_, manifest, vector)
            return self._globals_cache[1], self._globals_cache[2]

    def upload_target(self, silo_id: str, task_id: str, sha256: str) -> TaskRecord:
        """Check an upload may proceed before its payload is read (a re-upload of the same
        accepted payload may; a different payload for an accepted task may not)."""
        with self._cond:
            task = self._owned_task(silo_id, task_id)
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
        update: np.ndarray,
        num_examples: int,
        ledger_seq: int,
    ) -> bool:
        """Store a verified update durably; False if it was an identical re-upload.

        `ledger_seq` is the silo's (already stored) ledger entry for this release: each
        accepted update needs its own, later than those of the silo's earlier updates."""
        sha256 = codec.sha256_of(update)
        with self._cond:
            task = self.upload_target(silo_id, task_id, sha256)
            if self._store.submission(task_id) is not None:
                return False
            used = [s.ledger_seq for s in self._store.submissions(silo_id=silo_id)]
            if used and ledger_seq <= max(used):
                raise FailedPrecondition(
                    f"ledger entry seq {ledger_seq} of silo {silo_id!r} already covers an earlier "
                    f"update (the last covered seq is {max(used)}); each release needs its own "
                    "entry"
                )
            now = self._clock()
            submission = Submission(
                task_id, silo_id, task.round, task.attempt, sha256, num_examples, now,
                ledger_seq=ledger_seq,
            )  # fmt: skip
            self._store.add_submission(submission, update)
            log.info(
                "federation=%s round=%d attempt=%d silo=%s update accepted",
                self._plan.federation_id,
                task.round,
                task.attempt,
                silo_id,
            )
            self._advance()
            return True

    def decline(
        self, silo_id: str, task_id: str, reason_code: str, message: str, epsilon_spent: float
    ) -> None:
        """Record a refusal; `budget_exhausted` takes the silo out of all future samples."""
        with self._cond:
            task = self._owned_task(silo_id, task_id)
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

    def wait_until_finished(self, timeout_s: float | None) -> Phase:
        """Block (real time) until DONE or FAILED or the timeout; returns the phase then."""
        give_up = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._state.phase not in (Phase.DONE, Phase.FAILED):
                remaining = None if give_up is None else give_up - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._state.phase

    def wait_until_all_told_finished(self, timeout_s: float) -> bool:
        """Block (real time) until every joined silo has pulled since the federation finished;
        False if some had not by the timeout (e.g. a silo that crashed)."""
        give_up = time.monotonic() + timeout_s
        with self._cond:
            while True:
                joined = {record.silo_id for record in self._store.silos()}
                if joined <= self._told_finished:
                    return True
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def _owned_task(self, silo_id: str, task_id: str) -> TaskRecord:
        task = self._store.task(task_id)
        if task is None:
            raise FailedPrecondition(f"task {task_id!r} was never issued by this aggregator")
        if task.silo_id != silo_id:
            raise PermissionDenied(f"task {task_id!r} was not issued to silo {silo_id!r}")
        return task

    def _require_current(self, task: TaskRecord) -> None:
        s = self._state
        if s.phase != Phase.TRAINING or (task.round, task.attempt) != (s.round, s.attempt):
            raise FailedPrecondition(
                f"task {task.task_id!r} is for round {task.round} attempt {task.attempt}, but the "
                f"federation is {s.phase} at round {s.round} attempt {s.attempt}"
            )

    def _require_open(self, task: TaskRecord) -> None:
        self._require_current(task)
        if self._store.submission(task.task_id) is not None:
            raise FailedPrecondition(f"task {task.task_id!r} already has an accepted update")
        if self._store.decline(task.task_id) is not None:
            raise FailedPrecondition(f"task {task.task_id!r} was declined")

    def _assignment_for(self, silo_id: str) -> Assignment:
        s = self._state
        if s.phase == Phase.DONE:
            return Assignment("DONE", message=f"federation finished after {s.round} rounds")
        if s.phase == Phase.FAILED:
            raise FailedPrecondition(f"federation {self._plan.federation_id!r} failed: {s.reason}")
        if s.phase == Phase.TRAINING and silo_id in s.sampled:
            task_id = task_id_for(s.round, s.attempt, silo_id)
            if self._store.submission(task_id) is None and self._store.decline(task_id) is None:
                task = self._store.task(task_id)
                if task is None:
                    task = TaskRecord(task_id, silo_id, s.round, s.attempt, self._clock())
                    self._store.add_task(task)
                return Assignment(
                    "TRAIN",
                    task,
                    self._store.globals_record(s.round).sha256,
                    s.started_at_s + self._plan.round_deadline_s,
                )
        silo = next(r for r in self._store.silos() if r.silo_id == silo_id)
        if silo.exhausted:
            return Assignment("WAIT", message="this silo's privacy budget is exhausted")
        return Assignment("WAIT", message=f"{s.phase} round {s.round}: no task for this silo")

    def _facts(self) -> Facts:
        s = self._state
        uploads = self._store.submissions(round_=s.round, attempt=s.attempt)
        declines = self._store.declines(round_=s.round, attempt=s.attempt)
        return Facts(
            self._clock(),
            tuple(r.silo_id for r in self._store.silos() if not r.exhausted),
            frozenset(u.silo_id for u in uploads),
            frozenset(d.silo_id for d in declines),
        )

    def _advance(self) -> None:
        changed = False
        while (row := next_transition(self._state, self._facts(), self._plan)) is not None:
            self._apply(row)
            changed = True
        if changed:
            self._cond.notify_all()

    def _apply(self, row: Transition) -> None:
        s, plan, now = self._state, self._plan, self._clock()
        fields = f"federation={plan.federation_id} round={s.round} attempt={s.attempt}"
        closing = ClosedAttempt(s.round, s.attempt, aggregated=row.action != Action.RETRY)
        if row.action == Action.START_ATTEMPT:
            eligible = self._facts().eligible
            sample = sample_silos(plan, s.round, s.attempt, eligible)
            new, closing = replace(s, phase=row.target, started_at_s=now, sampled=sample), None
            log.info("%s round started silos=%s", fields, ",".join(sample))
        elif row.action == Action.FAIL:
            eligible = self._facts().eligible
            reason = (
                f"round {s.round} cannot run: only {len(eligible)} silo(s) are still eligible "
                f"(the others exhausted their privacy budget), min_silos is {plan.min_silos}"
            )
            new, closing = replace(s, phase=row.target, reason=reason), None
            log.error("%s federation failed: %s", fields, reason)
        elif row.action == Action.AGGREGATE:
            self._aggregate(s.round + 1)
            new = RoundState(row.target, s.round + 1, 0, now)
            log.info("%s round aggregated", fields)
        elif row.action == Action.FINISH:
            final = self._aggregate(plan.rounds)
            if self._export is not None:
                self._export(final)
            new = RoundState(row.target, plan.rounds, 0, now)
            log.info("%s federation done", fields)
        else:
            new = RoundState(row.target, s.round, s.attempt + 1, now)
            log.warning(
                "%s too few uploads (min_silos=%d): re-running the round with a fresh sample",
                fields,
                plan.min_silos,
            )
        self._store.save_state(new.to_dict(), closing)
        self._state = new

    def _aggregate(self, next_round: int) -> dict[str, np.ndarray]:
        """FedAvg this attempt's uploads into the globals `next_round` starts from."""
        s = self._state
        submissions = self._store.submissions(round_=s.round, attempt=s.attempt)
        manifest, globals_vec = self.globals_vector(s.round)
        deltas = [self._store.load_update(sub.task_id) for sub in submissions]
        if self._plan.weighting == "num_examples":
            weights = [float(sub.num_examples) for sub in submissions]
        else:
            weights = [1.0] * len(submissions)
        tensors = codec.unflatten(manifest, fedavg(globals_vec, deltas, weights))
        self._store.put_globals(next_round, tensors)
        return tensors
