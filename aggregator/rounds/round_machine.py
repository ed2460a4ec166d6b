"""The round machine's driver: applies the phase table through the store, thread-safe.

`aggregator.rounds.round_table` says *what* happens (the table, pure); this module does it: it
reads the facts from the store, fires rows, aggregates, persists every state it enters before
returning, and answers the servicer's questions (what a pulling silo should do, whether an
upload or decline may proceed). Handlers ask it; they keep no flags of their own. What
differs by protection mode (who survived an attempt, how the next globals are computed, what
a task carries) it asks its `Protection`, and how a FedBiscuit grouping forms clusters its
`Protection.grouping`; it never asks which mode it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from aggregator.protection.base import Aggregation, NewAttempt, Protection
from aggregator.protection.plain import PlainProtection
from aggregator.rounds.budget_schedule import BudgetSchedule
from aggregator.rounds.round_table import (
    Action,
    Facts,
    Phase,
    RoundState,
    Transition,
    next_transition,
    reports_needed,
    task_id_for,
    trainable,
)
from aggregator.rounds.silo_requests import SiloRequests
from aggregator.store import (
    ClosedAttempt,
    FederationStore,
    Submission,
    TaskRecord,
)
from protos import codec
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import Plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StateChange:
    """`after` replaced `before` (durably); `closing` is the attempt it closed, if any;
    `elapsed_s` the wall time the transition took (aggregating, for an aggregation)."""

    before: RoundState
    after: RoundState
    closing: ClosedAttempt | None
    elapsed_s: float


class TransitionListener(Protocol):
    """Told of every state the machine commits after the first (e.g. to keep metrics)."""

    def committed(self, change: StateChange) -> None: ...


@dataclass(frozen=True)
class Assignment:
    """What a pulling silo is told to do now (EVALUATE: a FedBiscuit grouping task, with
    the hash of every adapter's globals in `adapter_sha256`)."""

    kind: str  # "WAIT", "TRAIN", "EVALUATE" or "DONE"
    task: TaskRecord | None = None
    globals_sha256: str = ""
    deadline_s: float = 0.0
    message: str = ""
    adapter_sha256: tuple[str, ...] = ()
    carries: object | None = None  # TRAIN tasks: what the protection mode adds to the task


Export = Callable[[list[dict[str, np.ndarray]], Mapping[str, int]], None]
"""Receives the final globals of every adapter and the final cluster assignment (empty for
FedBis) before DONE is persisted."""


class RoundMachine(SiloRequests):
    """Applies the table through a store. All methods are thread-safe (one condition).

    `clock` drives deadlines (seconds since the epoch); `export` receives the final globals
    (one dict per adapter) and cluster assignment before DONE is persisted, so DONE always
    means "exported". `protection` is the plan's mode, chosen once by
    `aggregator.protection.choose` (plaintext when omitted); `listener` hears every state the
    machine commits (metrics).
    """

    def __init__(
        self,
        store: FederationStore,
        clock: Callable[[], float],
        export: Export | None = None,
        protection: Protection | None = None,
        listener: TransitionListener | None = None,
    ):
        self._store = store
        self._plan = store.plan
        self._clock = clock
        self._export = export
        self._protection = protection if protection is not None else PlainProtection(store)
        self._grouping = self._protection.grouping
        self._listener = listener
        self._schedule = BudgetSchedule(self._plan)
        self._cond = threading.Condition(threading.RLock())
        self._globals_cache: dict[tuple[int, int], tuple[codec.Manifest, np.ndarray]] = {}
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
    def plan(self) -> Plan:
        return self._plan

    @property
    def protection(self) -> Protection:
        """The plan's protection mode (round side)."""
        return self._protection

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

    def globals_layout(self, round_: int, adapter: int = 0) -> tuple[codec.TensorSpec, ...]:
        record = self._store.globals_record(round_, adapter)
        if record is None:
            raise FailedPrecondition(f"no globals for round {round_} adapter {adapter}")
        return record.layout

    def globals_vector(self, round_: int, adapter: int = 0) -> tuple[codec.Manifest, np.ndarray]:
        """One adapter's globals at the start of `round_` (cached for the latest round)."""
        if not 0 <= adapter < self._plan.adapters:
            raise InvalidInput(
                f"adapter_index {adapter} does not exist: the plan has {self._plan.adapters}"
            )
        with self._cond:
            key = (round_, adapter)
            if key not in self._globals_cache:
                if any(cached[0] != round_ for cached in self._globals_cache):
                    self._globals_cache.clear()
                self._globals_cache[key] = codec.flatten(self._store.load_globals(round_, adapter))
            return self._globals_cache[key]

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
                    adapter = self._grouping.adapter_of(s, silo_id)
                    task = TaskRecord(
                        task_id, silo_id, s.round, s.attempt, self._clock(), "train", adapter
                    )
                    self._store.add_task(task)
                return Assignment(
                    "TRAIN",
                    task,
                    self._protection.globals_digest(s.round, task.adapter_index),
                    s.started_at_s + self._plan.round_deadline_s,
                    carries=self._protection.task_carries(s, task),
                )
        if s.phase == Phase.GROUPING and silo_id in s.sampled:
            task_id = task_id_for(s.round, s.attempt, silo_id, "evaluate")
            if self._store.loss_report(task_id) is None and self._store.decline(task_id) is None:
                task = self._store.task(task_id)
                if task is None:
                    task = TaskRecord(
                        task_id, silo_id, s.round, s.attempt, self._clock(), "evaluate"
                    )
                    self._store.add_task(task)
                hashes = tuple(
                    self._protection.globals_digest(s.round, k) for k in range(self._plan.adapters)
                )
                return Assignment(
                    "EVALUATE",
                    task,
                    deadline_s=s.started_at_s + self._plan.round_deadline_s,
                    adapter_sha256=hashes,
                    carries=self._grouping.evaluate_carries(s, task),
                )
        silo = next(r for r in self._store.silos() if r.silo_id == silo_id)
        if silo.exhausted or silo_id in self._schedule.unaffordable(self._store):
            return Assignment("WAIT", message="this silo's privacy budget is exhausted")
        return Assignment("WAIT", message=f"{s.phase} round {s.round}: no task for this silo")

    def _facts(self) -> Facts:
        s = self._state
        uploads = self._store.submissions(round_=s.round, attempt=s.attempt)
        declines = self._store.declines(round_=s.round, attempt=s.attempt)
        reports = self._store.loss_reports(round_=s.round, attempt=s.attempt)
        # A silo whose verified ledger cannot afford another round is out, like an exhausted one.
        out = self._schedule.unaffordable(self._store) | self._protection.excluded()
        uploaded, protocol_running = self._protection.survivors(
            s, frozenset(u.silo_id for u in uploads)
        )
        reported, grouping_running = self._grouping.outcome(
            s, frozenset(r.silo_id for r in reports)
        )
        return Facts(
            self._clock(),
            tuple(
                r.silo_id for r in self._store.silos() if not r.exhausted and r.silo_id not in out
            ),
            uploaded,
            frozenset(d.silo_id for d in declines),
            reported,
            protocol_running,
            grouping_running,
        )

    def _advance(self) -> None:
        changed = self._protection.step(self._state, self._clock())
        while (row := next_transition(self._state, self._facts(), self._plan)) is not None:
            self._apply(row)
            changed = True
        if changed:
            self._cond.notify_all()

    def _apply(self, row: Transition) -> None:
        s, plan, now = self._state, self._plan, self._clock()
        started = time.perf_counter()
        fields = f"federation={plan.federation_id} round={s.round} attempt={s.attempt}"
        closing = ClosedAttempt(s.round, s.attempt, aggregated=row.action != Action.RETRY)
        grouping = s.grouping_fields()  # what every later state carries over
        if row.action == Action.START_ATTEMPT:
            sample = self._grouping.sample(s, trainable(s, self._facts(), plan))
            new, closing = replace(s, phase=row.target, started_at_s=now, sampled=sample), None
            members: dict[int, list[str]] = {}
            for silo in new.sampled:
                members.setdefault(self._grouping.adapter_of(new, silo), []).append(silo)
            self._protection.open_attempt(
                NewAttempt(
                    new,
                    {k: tuple(silos) for k, silos in members.items()},
                    lambda k: self.globals_vector(new.round, k)[1].size,
                )
            )
            log.info("%s round started silos=%s", fields, ",".join(sample))
        elif row.action == Action.START_GROUPING:
            everyone = self._facts().eligible
            new = replace(s, phase=row.target, started_at_s=now, sampled=everyone)
            closing = None
            self._grouping.open(new)
            log.info("%s grouping started silos=%s", fields, ",".join(everyone))
        elif row.action == Action.ASSIGN:
            grouped, described = self._grouping.assign(s)
            grouped["grouped_round"] = s.round
            new = RoundState(row.target, s.round, s.attempt + 1, now, **{**grouping, **grouped})
            log.info("%s grouped %s", fields, described)
        elif row.action == Action.RETRY_GROUPING:
            new = RoundState(row.target, s.round, s.attempt + 1, now, **grouping)
            log.warning("%s grouping did not complete: grouping again", fields)
        elif row.action == Action.FAIL:
            eligible = self._facts().eligible
            reason = (
                f"round {s.round} cannot run: only {len(eligible)} silo(s) are still eligible "
                f"(the others exhausted their privacy budget or have no cluster yet), "
                f"min_silos is {plan.min_silos}"
            )
            if row.guard == "grouping_lost":
                reason = (
                    f"round {s.round} cannot be grouped: only {len(eligible)} silo(s) are still "
                    f"eligible, and {reports_needed(plan)} loss reports are needed "
                    "(clusters × min_cluster_silos)"
                )
            new, closing = replace(s, phase=row.target, reason=reason), None
            log.error("%s federation failed: %s", fields, reason)
        elif row.action == Action.AGGREGATE:
            self._aggregate(s.round + 1)
            new = RoundState(row.target, s.round + 1, 0, now, **grouping)
            log.info("%s round aggregated", fields)
        elif row.action == Action.FINISH:
            final = self._aggregate(plan.rounds)
            if self._export is not None and self._protection.holds_plaintext:
                self._export(final, s.clusters)
            new = RoundState(row.target, plan.rounds, 0, now, **grouping)
            log.info("%s federation done", fields)
        else:
            new = RoundState(row.target, s.round, s.attempt + 1, now, **grouping)
            log.warning(
                "%s too few uploads (min_silos=%d): re-running the round with a fresh sample",
                fields,
                plan.min_silos,
            )
        self._store.save_state(new.to_dict(), closing)
        self._state = new
        if self._listener is not None:
            self._listener.committed(StateChange(s, new, closing, time.perf_counter() - started))

    def _aggregate(self, next_round: int) -> list[dict[str, np.ndarray]]:
        """This attempt's uploads into the globals of every adapter that `next_round` starts
        from: FedAvg in FedBis and warm-up, aggregate-on-model per cluster afterwards; an
        adapter nobody trained is carried over unchanged."""
        s, plan = self._state, self._plan
        submissions = self._store.submissions(round_=s.round, attempt=s.attempt)
        by_adapter: dict[int, list[Submission]] = {}
        for sub in submissions:
            adapter = self._store.task(sub.task_id).adapter_index
            by_adapter.setdefault(adapter, []).append(sub)
        return self._protection.next_globals(
            Aggregation(
                state=s,
                by_adapter=by_adapter,
                warmup=plan.warmup_adapter(s.round) is not None,
                cluster_sizes=self._grouping.cluster_sizes(s),
                min_members=plan.fedbiscuit.min_cluster_silos if plan.fedbiscuit else 1,
                current=lambda k: self.globals_vector(s.round, k),
                next_round=next_round,
            )
        )
