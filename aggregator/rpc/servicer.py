"""The gRPC edge: validates every field a silo sends, asks the round machine, maps errors.

Identity comes only from `authenticated_silo(context)` (the verified certificate). What
differs by protection mode (what a task carries, how an update is read, how globals go back,
the SecAgg+ and HE RPCs) is the `ProtectionEdge`'s, chosen once from the plan. Errors are
translated by `aggregator.rpc.error_status`: ours become their status code and message,
anything else INTERNAL "internal error" with the details in the server log only.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from aggregator.protection.base import ProtectionEdge
from aggregator.rounds.ledger_intake import LedgerIntake
from aggregator.rounds.release_check import check_release_binding
from aggregator.rounds.round_machine import RoundMachine
from aggregator.rounds.round_table import Phase
from aggregator.rpc.auth import authenticated_cert, authenticated_silo
from aggregator.rpc.error_status import abort_with
from aggregator.store import TaskRecord
from privacy.ledger import RE_RELEASE, LedgerEntry
from protos.errors import BudgetExceeded, FailedPrecondition, InvalidInput
from protos.plan import Plan
from protos.v1 import federation_pb2 as pb
from protos.v1 import federation_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

RETRY_AFTER_MS = 1_000
DECLINE_REASONS = frozenset({"budget_exhausted", "policy_violation", "data_error"})
MAX_DECLINE_MESSAGE_CHARS = 500
_MIB = 1 << 20


def _unary(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def handler(self: FederationServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            abort_with(context, method.__name__, exc)

    return handler


def _streaming(method: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    @functools.wraps(method)
    def handler(
        self: FederationServicer, request: Any, context: grpc.ServicerContext
    ) -> Iterator[Any]:
        try:
            yield from method(self, request, context)
        except Exception as exc:
            abort_with(context, method.__name__, exc)

    return handler


class FederationServicer(pb_grpc.FederationServicer):
    def __init__(
        self,
        machine: RoundMachine,
        plan: Plan,
        max_long_poll_s: float,
        ledger: LedgerIntake,
        edge: ProtectionEdge,
    ):
        self._edge = edge
        self._machine = machine
        self._ledger = ledger
        self._plan = plan
        self._plan_sha256 = plan.sha256()
        self._max_long_poll_s = max_long_poll_s

    def _wait_s(self, wait_ms: int) -> float:
        """How long a long-poll may hold the call: what the silo asked for, within the cap."""
        return min(wait_ms / 1000, self._max_long_poll_s)

    @_unary
    def Join(self, request: pb.JoinRequest, context: grpc.ServicerContext) -> pb.JoinReply:
        silo_id = self._caller(context, request.federation_id)
        # The certificate first: a grouping the join starts names it to every candidate.
        self._edge.joined(silo_id, authenticated_cert(context))
        self._machine.join(silo_id)
        next_seq, last_hash = self._ledger.position(silo_id)
        return pb.JoinReply(
            federation_id=self._plan.federation_id,
            silo_id=silo_id,
            plan_json=self._plan.canonical_json(),
            plan_sha256=self._plan_sha256,
            ledger_next_seq=next_seq,
            ledger_last_hash=last_hash,
        )

    @_unary
    def PullTask(self, request: pb.PullTaskRequest, context: grpc.ServicerContext) -> pb.Task:
        silo_id = self._caller(context, request.federation_id)
        self._check_plan(request.plan_sha256)
        assignment = self._machine.pull(silo_id, self._wait_s(request.wait_ms))
        common = {"federation_id": self._plan.federation_id, "plan_sha256": self._plan_sha256}
        if assignment.kind == "DONE":
            return pb.Task(kind=pb.TASK_KIND_DONE, message=assignment.message, **common)
        if assignment.kind == "WAIT":
            return pb.Task(
                kind=pb.TASK_KIND_WAIT,
                retry_after_ms=RETRY_AFTER_MS,
                message=assignment.message,
                **common,
            )
        task = assignment.task
        if assignment.kind == "EVALUATE":
            return pb.Task(
                kind=pb.TASK_KIND_EVALUATE,
                task_id=task.task_id,
                round=task.round,
                phase=Phase.GROUPING.value,
                adapter_sha256=assignment.adapter_sha256,
                deadline_unix_s=assignment.deadline_s,
                **self._edge.evaluate_fields(assignment.carries),
                **common,
            )
        fields = {
            "kind": pb.TASK_KIND_TRAIN,
            "task_id": task.task_id,
            "round": task.round,
            "phase": Phase.TRAINING.value,
            "adapter_index": task.adapter_index,
            "globals_sha256": assignment.globals_sha256,
            "local_steps": self._plan.training.local_steps,
            "deadline_unix_s": assignment.deadline_s,
            **common,
        }
        return pb.Task(**{**fields, **self._edge.task_fields(assignment.carries)})

    @_streaming
    def DownloadGlobals(
        self, request: pb.DownloadRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.TensorChunk]:
        silo_id = self._caller(context, request.federation_id)
        yield from self._edge.download(silo_id, request)

    @_unary
    def UploadUpdate(
        self, request_iterator: Iterator[pb.UploadPart], context: grpc.ServicerContext
    ) -> pb.Ack:
        silo_id = authenticated_silo(context)
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidInput("the first message of an upload must be its UpdateHeader")
        header = first.header
        self._check_federation(header.federation_id)
        self._check_plan(header.plan_sha256)
        digest = self._edge.upload_digest(header)
        # The spend is verified and on disk before anything else about the upload is judged.
        cert = authenticated_cert(context)
        entries = self._ledger.accept(silo_id, cert, header.ledger_entries)
        task = self._machine.upload_target(silo_id, header.task_id, digest)
        self._check_header_matches(header, task)
        release = self._check_release(task, entries)
        num_examples = self._num_examples(header)
        payload = self._edge.read_upload(silo_id, cert, header, task, request_iterator)
        new = self._machine.accept_upload(  # read_upload checked the payload against `digest`
            silo_id, task.task_id, payload, num_examples, release.seq, digest=digest
        )
        return self._accepted(silo_id, "update accepted" if new else "already accepted")

    @_unary
    def HeKeys(self, request: pb.HeKeysRequest, context: grpc.ServicerContext) -> pb.HeKeysReply:
        silo_id = self._caller(context, request.federation_id)
        return self._edge.he_keys(silo_id, request)

    @_unary
    def HeProvideKeys(self, request: pb.HeKeyUpload, context: grpc.ServicerContext) -> pb.Ack:
        silo_id = self._caller(context, request.federation_id)
        return self._edge.he_provide_keys(silo_id, request)

    @_unary
    def HeSpotCheck(
        self, request: pb.HeSpotCheckRequest, context: grpc.ServicerContext
    ) -> pb.HeSpotCheckReply:
        silo_id = self._caller(context, request.federation_id)
        return self._edge.he_spot_check(silo_id, request)

    @_unary
    def SecAggSubmit(self, request: pb.SecAggSubmission, context: grpc.ServicerContext) -> pb.Ack:
        silo_id = self._caller(context, request.federation_id)
        return self._edge.secagg_submit(silo_id, request)

    @_unary
    def SecAggFetch(
        self, request: pb.SecAggFetchRequest, context: grpc.ServicerContext
    ) -> pb.SecAggBroadcast:
        silo_id = self._caller(context, request.federation_id)
        return self._edge.secagg_fetch(silo_id, request, self._wait_s(request.wait_ms))

    @_unary
    def GroupingFetch(
        self, request: pb.GroupingFetchRequest, context: grpc.ServicerContext
    ) -> pb.GroupingBroadcast:
        silo_id = self._caller(context, request.federation_id)
        return self._edge.grouping_fetch(silo_id, request, self._wait_s(request.wait_ms))

    @_unary
    def GroupingConfirm(
        self, request: pb.GroupingConfirmation, context: grpc.ServicerContext
    ) -> pb.Ack:
        silo_id = self._caller(context, request.federation_id)
        return self._edge.grouping_confirm(silo_id, request)

    def _accepted(self, silo_id: str, message: str) -> pb.Ack:
        """An acceptance that also tells the silo how much of its ledger we now hold."""
        return pb.Ack(
            accepted=True, message=message, ledger_next_seq=self._ledger.position(silo_id)[0]
        )

    @_unary
    def ReportLosses(self, request: pb.LossReport, context: grpc.ServicerContext) -> pb.Ack:
        silo_id = self._caller(context, request.federation_id)
        self._check_plan(request.plan_sha256)
        losses = tuple(request.losses)
        if not all(math.isfinite(value) for value in losses):
            raise InvalidInput("loss report values must be finite numbers")
        # The release is verified and on disk before anything else about the report is judged.
        entries = self._ledger.accept(silo_id, authenticated_cert(context), request.ledger_entries)
        task = self._machine.current_task(silo_id, request.task_id)
        if task.kind != "evaluate":
            raise FailedPrecondition(f"task {task.task_id!r} is a {task.kind} task, not evaluate")
        if request.round != task.round:
            raise FailedPrecondition(
                f"loss report names round {request.round} but task {task.task_id!r} is for "
                f"round {task.round}"
            )
        release = self._check_loss_release(task, entries)
        new = self._machine.accept_loss_report(
            silo_id, task.task_id, losses, release.seq, dict(request.sealed)
        )
        return self._accepted(silo_id, "loss report accepted" if new else "already accepted")

    @_unary
    def Decline(self, request: pb.DeclineRequest, context: grpc.ServicerContext) -> pb.Ack:
        silo_id = self._caller(context, request.federation_id)
        if request.reason_code not in DECLINE_REASONS:
            raise InvalidInput(
                f"decline reason_code {request.reason_code!r} is not one of "
                f"{sorted(DECLINE_REASONS)}"
            )
        if not (math.isfinite(request.epsilon_spent) and request.epsilon_spent >= 0):
            raise InvalidInput("decline epsilon_spent must be a finite non-negative number")
        self._ledger.accept(silo_id, authenticated_cert(context), request.ledger_entries)
        task = self._machine.current_task(silo_id, request.task_id)
        if request.round != task.round:
            raise FailedPrecondition(
                f"decline names round {request.round} but task {task.task_id!r} is for round "
                f"{task.round}"
            )
        message = request.message[:MAX_DECLINE_MESSAGE_CHARS]
        self._machine.decline(
            silo_id, task.task_id, request.reason_code, message, request.epsilon_spent
        )
        return self._accepted(silo_id, "decline recorded")

    def _caller(self, context: grpc.ServicerContext, federation_id: str) -> str:
        """The calling silo (from its verified certificate), once the call names this
        federation."""
        silo_id = authenticated_silo(context)
        self._check_federation(federation_id)
        return silo_id

    def _check_federation(self, federation_id: str) -> None:
        if federation_id != self._plan.federation_id:
            raise FailedPrecondition(
                f"this aggregator serves federation {self._plan.federation_id!r}, "
                f"not {federation_id!r}"
            )

    def _check_plan(self, plan_sha256: str) -> None:
        if plan_sha256 != self._plan_sha256:
            raise FailedPrecondition(
                f"plan {plan_sha256[:12]!r} is not the federation's current plan "
                f"{self._plan_sha256[:12]!r}; join again to fetch and check the current plan"
            )

    def _check_header_matches(self, header: pb.UpdateHeader, task: TaskRecord) -> None:
        if header.round != task.round:
            raise FailedPrecondition(
                f"upload names round {header.round} but task {task.task_id!r} is for round "
                f"{task.round}"
            )
        if task.kind != "train":
            raise FailedPrecondition(f"task {task.task_id!r} is an {task.kind} task: no upload")
        if header.phase != Phase.TRAINING.value:
            raise FailedPrecondition(
                f"upload names phase {header.phase!r}; task {task.task_id!r} is a "
                f"{Phase.TRAINING.value} task"
            )
        if header.adapter_index != task.adapter_index:
            raise InvalidInput(
                f"upload names adapter {header.adapter_index} but task {task.task_id!r} trains "
                f"adapter {task.adapter_index}"
            )

    def _num_examples(self, header: pb.UpdateHeader) -> int:
        if self._plan.weighting == "num_examples":
            if header.num_examples < 1:
                raise InvalidInput("the plan weights by num_examples; the upload must give it")
            return header.num_examples
        if header.num_examples != 0:
            raise InvalidInput("the plan weights uniformly; num_examples must not be sent")
        return 0

    def _check_release(self, task: TaskRecord, entries: list[LedgerEntry]) -> LedgerEntry:
        """The last ledger entry sent is this update's release; refused unless it is a
        plausible release of this task under this plan."""
        if not entries:
            raise InvalidInput("the upload carries no signed ledger entry for its release")
        entry, dp = entries[-1], self._plan.dp
        at = f"ledger entry seq {entry.seq}"
        if entry.round != task.round or entry.mechanism not in ("dp_sgd", RE_RELEASE):
            raise FailedPrecondition(
                f"{at} is a {entry.mechanism} release of round {entry.round}, not the DP-SGD "
                f"release (or re-release) of task {task.task_id!r} (round {task.round})"
            )
        binding = self._machine.protection.release_binding(task)
        check_release_binding(entry, binding, self._ledger.entries_before(task.silo_id, entry.seq))
        p = entry.params
        if dp.noise_multiplier is not None and p.noise_multiplier != dp.noise_multiplier:
            raise FailedPrecondition(
                f"{at}: noise_multiplier {p.noise_multiplier} differs from the plan's "
                f"{dp.noise_multiplier}"
            )
        if p.clip_norm != dp.clip_norm:
            raise FailedPrecondition(
                f"{at}: clip_norm {p.clip_norm} differs from the plan's {dp.clip_norm}"
            )
        if p.delta != self._plan.delta:
            raise FailedPrecondition(
                f"{at}: delta {p.delta} differs from the plan's {self._plan.delta}"
            )
        if p.steps != self._plan.training.local_steps:
            raise FailedPrecondition(
                f"{at}: {p.steps} steps, but the plan's tasks have "
                f"{self._plan.training.local_steps} local steps"
            )
        if dp.sample_rate is not None and p.sample_rate != dp.sample_rate:
            raise FailedPrecondition(
                f"{at}: sample rate {p.sample_rate!r} is not the plan's {dp.sample_rate!r}"
            )
        if dp.sample_rate is None and not _poisson_rate_of(dp.expected_batch_size, p.sample_rate):
            raise FailedPrecondition(
                f"{at}: sample rate {p.sample_rate!r} is not the plan's expected batch size "
                f"{dp.expected_batch_size} over a whole number of examples (at least that many)"
            )
        if entry.epsilon_after > entry.budget_epsilon:
            raise BudgetExceeded(
                f"{at}: epsilon_after {entry.epsilon_after} exceeds the silo's budget "
                f"{entry.budget_epsilon}; the update is refused"
            )
        if not entry.secure_rng and not dp.allow_insecure_rng:
            raise FailedPrecondition(f"{at}: the plan requires DP noise from a secure RNG")
        return entry

    def _check_loss_release(self, task: TaskRecord, entries: list[LedgerEntry]) -> LedgerEntry:
        """The last ledger entry sent is this report's release: the plan's Gaussian loss report
        (one step per adapter, clip C, noise multiplier sigma), within the silo's budget."""
        if not entries:
            raise InvalidInput("the loss report carries no signed ledger entry for its release")
        entry, spec = entries[-1], self._plan.fedbiscuit.loss_report
        at = f"ledger entry seq {entry.seq}"
        p = entry.params
        expected = ("gaussian", task.round, spec.noise_multiplier, 1.0, self._plan.adapters)
        found = (entry.mechanism, entry.round, p.noise_multiplier, p.sample_rate, p.steps)
        if found != expected:
            raise FailedPrecondition(
                f"{at} records (mechanism, round, noise_multiplier, sample_rate, steps) = "
                f"{found}, not the loss report of task {task.task_id!r} {expected}"
            )
        if p.sample_size != spec.sample_size:
            raise FailedPrecondition(
                f"{at}: the report averages over {p.sample_size} examples, not the plan's "
                f"loss_report.sample_size {spec.sample_size} (its sensitivity would be "
                "another than the accounted clip / m)"
            )
        if (p.clip_norm, p.delta) != (spec.clip, self._plan.delta):
            raise FailedPrecondition(
                f"{at}: clip {p.clip_norm} and delta {p.delta} differ from the plan's loss "
                f"report clip {spec.clip} and delta {self._plan.delta}"
            )
        if entry.epsilon_after > entry.budget_epsilon:
            raise BudgetExceeded(
                f"{at}: epsilon_after {entry.epsilon_after} exceeds the silo's budget "
                f"{entry.budget_epsilon}; the report is refused"
            )
        if not entry.secure_rng and not self._plan.dp.allow_insecure_rng:
            raise FailedPrecondition(f"{at}: the plan requires DP noise from a secure RNG")
        return entry


def _poisson_rate_of(expected_batch_size: int, sample_rate: float) -> bool:
    """True iff `sample_rate` is expected_batch_size / N for a dataset of N >= that many
    examples, computed as the silo's trainer does (so exact float equality holds)."""
    examples = round(expected_batch_size / sample_rate)
    return examples >= expected_batch_size and expected_batch_size / examples == sample_rate
