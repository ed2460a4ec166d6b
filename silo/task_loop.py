"""The silo's task loop: join, check the plan, then pull tasks until the federation is done.

The order inside a TRAIN task is the privacy contract (DESIGN.md §7): the budget guard
decides first (a refused release is declined, nothing trains); the ledger entry is fsync'd
and the accountant updated *before* the update leaves, so a crash or failed upload can only
over-count. Logs carry federation, round, silo and phase, never data, losses or updates.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

import numpy as np

from privacy.accounting import DpEvent
from privacy.budget_guard import BudgetGuard
from privacy.ledger import LedgerEntry
from privacy.loss_report import loss_report_event, noised_mean_losses
from privacy.membership import GroupingAborted
from privacy.re_release import MAX_RE_RELEASES
from privacy.secagg import SecAggAborted
from protos import codec
from protos.errors import BudgetExceeded, FailedPrecondition, InvalidInput, PolicyViolation
from protos.plan import Plan
from protos.v1 import federation_pb2 as pb
from silo.client import SiloClient
from silo.config import SiloConfig
from silo.grouping_store import PaidLosses
from silo.identity import SiloIdentity
from silo.joining import accept_plan
from silo.policy import check_local_steps, check_plan, check_round_epsilon
from silo.privacy_state import PrivacyState
from silo.release_store import ReleaseStore, StoredRelease
from silo.rpc_errors import SupersededByAggregator
from silo.training_setup import TrainingSetup, build_training
from silo.upload import UploadContext, Uploader, admit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopOutcome:
    """How a run ended: `finished` is True when the aggregator said DONE.

    `tasks` counts TRAIN and EVALUATE tasks by what became of them: "uploaded", "reported"
    (a grouping loss report sent), "declined" (refused before any release), "aborted" (its
    secure aggregation round aborted; any spend stays spent), "stale" (the aggregator had
    moved on; any spend stays spent) or "refused" (this silo refused what the aggregator
    sent for the task, e.g. a masked task naming no secure aggregation round; any spend
    stays spent).
    """

    finished: bool
    tasks: dict[str, int]


class TaskLoop:
    """One silo's participation in one federation, from Join to DONE."""

    def __init__(
        self,
        config: SiloConfig,
        identity: SiloIdentity,
        client: SiloClient,
        privacy: PrivacyState,
        *,
        stop: threading.Event | None = None,
        wait_ms: int = 10_000,
    ):
        self._config = config
        self._identity = identity
        self._client = client
        self._privacy = privacy
        self._stop = stop or threading.Event()
        self._wait_ms = wait_ms
        self._releases = ReleaseStore(config.state_dir)

    def run(self) -> LoopOutcome:
        plan, plan_sha256 = self._join()
        mode = admit(self._config.policy, plan)
        check_plan(self._config.policy, plan, self._config.budget)
        self._privacy.check_budget_pinned(self._config.budget.epsilon)
        training = build_training(self._config, plan, self._privacy.accountant.events)
        self._log("setup", plan_sha256=plan_sha256[:12], noise_multiplier=training.sigma)
        self._uploader: Uploader = mode(
            UploadContext(
                self._config, self._identity, self._client, plan, plan_sha256, self._stop,
                self._wait_ms, training.num_examples,
            )
        )  # fmt: skip
        tasks: Counter[str] = Counter()
        while not self._stop.is_set():
            self._uploader.serve()
            task = self._client.pull_task(plan_sha256, self._wait_ms)
            if task.kind == pb.TASK_KIND_WAIT:
                self._stop.wait(task.retry_after_ms / 1000)
            elif task.kind == pb.TASK_KIND_DONE:
                self._log("done", message=repr(task.message), **tasks)
                return LoopOutcome(True, dict(tasks))
            elif task.kind in (pb.TASK_KIND_TRAIN, pb.TASK_KIND_EVALUATE):
                self._validate(plan, plan_sha256, task)
                work = self._train if task.kind == pb.TASK_KIND_TRAIN else self._evaluate
                try:
                    tasks[work(plan, training, task)] += 1
                except (SecAggAborted, GroupingAborted) as exc:
                    # Nothing this silo sent can be unmasked (or opened) by the aggregator;
                    # the round (or grouping) is re-run.
                    self._log("aborted", task.round, message=repr(str(exc)))
                    tasks["aborted"] += 1
                except SupersededByAggregator as exc:
                    # The round closed or was re-run meanwhile; what was spent stays spent.
                    self._log("stale", task.round, message=repr(str(exc)))
                    tasks["stale"] += 1
                except FailedPrecondition as exc:
                    # This silo refused what the aggregator sent for the task.
                    self._log("refused", task.round, message=repr(str(exc)))
                    tasks["refused"] += 1
            else:
                raise InvalidInput(f"aggregator sent a task of unknown kind {task.kind}")
        self._log("stopped", **tasks)
        return LoopOutcome(False, dict(tasks))

    def _join(self) -> tuple[Plan, str]:
        """Join and accept only a plan for our federation whose bytes match its hash."""
        reply = self._client.join()
        plan = accept_plan(self._config, reply)
        self._privacy.sync_with_aggregator(reply.ledger_next_seq, reply.ledger_last_hash)
        self._log("joined", plan_sha256=reply.plan_sha256[:12], rounds=plan.rounds)
        return plan, reply.plan_sha256

    def _afford_or_decline(self, plan: Plan, task: pb.Task, event: DpEvent) -> float | None:
        """Epsilon after `event` if the budget guard and policy allow it; otherwise decline the
        task (telling the aggregator why, with any ledger entries it lacks) and return None."""
        privacy, budget = self._privacy, self._config.budget
        before = privacy.accountant.epsilon(plan.delta)
        try:
            after = BudgetGuard(privacy.accountant, budget.epsilon, plan.delta).check(event)
            check_round_epsilon(self._config.policy, before, after)
        except (BudgetExceeded, PolicyViolation) as exc:
            reason = "budget_exhausted" if isinstance(exc, BudgetExceeded) else "policy_violation"
            self._decline(plan, task, reason, str(exc))
            return None
        return after

    def _decline(self, plan: Plan, task: pb.Task, reason: str, message: str) -> str:
        """Tell the aggregator this silo refuses `task` (nothing released), with any ledger
        entries it lacks; "declined"."""
        privacy = self._privacy
        before = privacy.accountant.epsilon(plan.delta)
        ack = self._client.decline(task, reason, message, before, privacy.undelivered())
        privacy.delivered(ack.ledger_next_seq)
        self._log("declined", task.round, reason=reason, epsilon_spent=round(before, 4))
        return "declined"

    def _train(self, plan: Plan, training: TrainingSetup, task: pb.Task) -> str:
        """Handle one validated TRAIN task: "uploaded", or "declined" (nothing released).

        A re-run attempt of a round this silo already released for (same binding, and the same
        roster of the upload, e.g. the SecAgg+ keys) re-sends that release, unpaid."""
        privacy, budget = self._privacy, self._config.budget
        refusal = self._uploader.refusal(task)
        if refusal is not None:
            return self._decline(plan, task, "policy_violation", refusal)
        event = training.trainer.dp_event(task.local_steps)
        binding = self._uploader.release_binding(task)
        stored = self._re_releasable(binding, task.round)
        after = None
        if stored is None:
            after = self._afford_or_decline(plan, task, event)
            if after is None:
                return "declined"
        upload = self._uploader.begin(task)
        # E.g. SecAgg+ keys: a round too small to hide this silo aborts before anything is spent.
        upload.before_training()
        if stored is not None and stored.roster != upload.roster:
            stored = None  # another roster: sums could be differenced; a new release
            after = self._afford_or_decline(plan, task, event)
            if after is None:
                return "declined"
        if stored is not None:
            entry = privacy.record_re_release(stored.seq, budget.epsilon)
            self._log("re_release", task.round, seq=entry.seq, of_seq=stored.seq)
            update_manifest, update = stored.manifest, stored.vector
        else:
            manifest, vector = self._uploader.globals_for(task)
            entry = self._record_release(
                plan, training, task, event, after, release_binding=binding
            )
            self._log("train", task.round, seq=entry.seq, epsilon_after=round(after, 4))
            delta_state = training.trainer.train_round(
                codec.unflatten(manifest, vector), task.local_steps, release=entry.seq
            )
            update_manifest, update = codec.flatten(delta_state)
            release = StoredRelease(entry.seq, upload.roster, update_manifest, update)
            self._releases.save(binding, task.round, release)
        ack = upload.send(update_manifest, update, privacy.undelivered())
        privacy.delivered(ack.ledger_next_seq)
        upload.after_send()
        sizes = {"bytes": upload.sent_bytes} if upload.sent_bytes else {}
        self._log(
            "uploaded", task.round, accepted=ack.accepted, protection=plan.protection, **sizes
        )
        return "uploaded"

    def _re_releasable(self, binding: str, round_: int) -> StoredRelease | None:
        """The paid-for release under `binding`, if it may still be sent again."""
        stored = self._releases.load(binding, round_)
        if stored is None:
            return None
        repeats = sum(1 for e in self._privacy.ledger.entries if e.re_release_of == stored.seq)
        return stored if repeats < MAX_RE_RELEASES else None

    def _record_release(
        self,
        plan: Plan,
        training: TrainingSetup,
        task: pb.Task,
        event: DpEvent,
        epsilon_after: float,
        **params: int | float | str,
    ) -> LedgerEntry:
        """Append the signed ledger entry of a paid release (DP-SGD or loss report) before
        anything of it leaves; `params` are the mechanism's extra recorded fields."""
        return self._privacy.record(
            task.round,
            event,
            plan,
            secure_rng=training.secure_rng,
            epsilon_after=epsilon_after,
            budget_epsilon=self._config.budget.epsilon,
            **params,
        )

    def _evaluate(self, plan: Plan, training: TrainingSetup, task: pb.Task) -> str:
        """Handle one EVALUATE task (a FedBiscuit grouping): "reported" or "declined".

        The same contract as a TRAIN task: the guard decides first, the signed ledger entry
        is on disk before the noised loss vector leaves; nothing but that vector leaves.
        """
        if plan.fedbiscuit is None:
            raise FailedPrecondition(f"task {task.task_id!r}: a FedBis plan has no groupings")
        refusal = self._uploader.refusal(task)
        if refusal is not None:
            return self._decline(plan, task, "policy_violation", refusal)
        privacy = self._privacy
        paid = self._uploader.reusable_losses(task, privacy.ledger.entries)
        if paid is None:
            paid = self._release_losses(plan, training, task)
            if paid is None:
                return "declined"
            entries = privacy.undelivered()
        else:  # a retried attempt of the same grouping: the same values again, unpaid
            entries = privacy.undelivered() or [privacy.ledger.entries[-1].to_line()]
            self._log("re_reported", task.round, seq=paid.seq)
        ack = self._uploader.report_losses(task, paid, entries)
        privacy.delivered(ack.ledger_next_seq)
        epsilon = privacy.accountant.epsilon(plan.delta)
        self._log("reported", task.round, seq=paid.seq, epsilon_after=round(epsilon, 4))
        self._uploader.after_report(task)
        return "reported"

    def _release_losses(
        self, plan: Plan, training: TrainingSetup, task: pb.Task
    ) -> PaidLosses | None:
        """The guard decides, the signed entry is on disk, then the noised loss vector is
        computed (None: declined, nothing released)."""
        assert plan.fedbiscuit is not None
        spec = plan.fedbiscuit.loss_report
        event = loss_report_event(plan.adapters, spec.noise_multiplier)
        after = self._afford_or_decline(plan, task, event)
        if after is None:
            return None
        losses = []
        for k in range(plan.adapters):
            manifest, vector = self._uploader.globals_for(task, k)
            state = codec.unflatten(manifest, vector)
            losses.append(training.trainer.example_losses(state, training.evaluation_rows))
        entry = self._record_release(
            plan,
            training,
            task,
            event,
            after,
            clip_norm=spec.clip,
            sample_size=len(training.evaluation_rows),
        )
        stream = training.trainer.noise.stream(entry.seq, "loss_report")
        noised = noised_mean_losses(np.stack(losses), spec.clip, spec.noise_multiplier, stream)
        return PaidLosses(
            task.plan_sha256,
            task.round,
            tuple(task.adapter_sha256),
            entry.seq,
            tuple(float(v) for v in noised),
        )

    def _validate(self, plan: Plan, plan_sha256: str, task: pb.Task) -> None:
        """A task for another federation, plan or an impossible round stops the agent."""
        where = f"task {task.task_id!r} round {task.round}"
        if task.federation_id != self._config.federation_id:
            raise FailedPrecondition(f"{where} is for federation {task.federation_id!r}")
        if task.plan_sha256 != plan_sha256:
            raise FailedPrecondition(f"{where} is for another plan than the one this silo accepted")
        if task.round >= plan.rounds:
            raise FailedPrecondition(f"{where} is beyond the plan's {plan.rounds} rounds")
        if task.kind == pb.TASK_KIND_EVALUATE:
            if len(task.adapter_sha256) != plan.adapters:
                raise FailedPrecondition(
                    f"{where} lists {len(task.adapter_sha256)} adapters; the plan has "
                    f"{plan.adapters}"
                )
            return
        if task.adapter_index >= plan.adapters:
            raise FailedPrecondition(f"{where} trains adapter {task.adapter_index}, not in plan")
        if task.local_steps < 1:
            raise FailedPrecondition(f"{where} asks for {task.local_steps} local steps")
        check_local_steps(self._config.policy, task.local_steps, "task.local_steps")

    def _log(self, phase: str, round_index: int | None = None, **fields: object) -> None:
        parts = [
            f"federation={self._config.federation_id}",
            f"silo={self._config.silo_id}",
            f"phase={phase}",
        ]
        if round_index is not None:
            parts.append(f"round={round_index}")
        parts.extend(f"{key}={value}" for key, value in fields.items())
        log.info(" ".join(parts))
