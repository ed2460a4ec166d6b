"""Masking with hidden membership (`fedbiscuit.membership: hidden`, DESIGN.md §3).

Warm-up rounds are masked rounds as in `aggregator.protection.masked`. Groupings run through
`aggregator.protection.hidden_grouping` (the aggregator relays sealed reports and
confirmations, the silos agree). Every later round opens ONE secure sum over all sampled
silos, bound to the agreed grouping's digest, of K-slot vectors
(:class:`~privacy.membership.KSlotLayout`): the aggregator decodes per-cluster sums, counts
and the agreed sizes and applies the masked rule per cluster; it never learns who is where.
Its TRAIN tasks name no adapter: they carry every adapter's globals hash, silos download all
K, and each DP-SGD release binds to all K globals (privacy.re_release.hidden_release_binding).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from aggregator.federation_trust import FederationTrust
from aggregator.protection.base import Aggregation, NewAttempt
from aggregator.protection.cluster_sizes import ClusterSizes, record_cluster_sizes
from aggregator.protection.he_rpcs import cert_pem
from aggregator.protection.hidden_grouping import HiddenGrouping
from aggregator.protection.masked import RETRY_AFTER_MS, MaskedEdge, MaskedProtection
from aggregator.protection.masked_session import MaskedAttempt, open_sessions
from aggregator.rounds.fedavg import add_summed_deltas
from aggregator.rounds.round_table import RoundState
from aggregator.store import FederationStore, TaskRecord
from privacy.membership import CandidateRoster, ClusterSums, Confirmation, KSlotLayout
from privacy.re_release import hidden_release_binding
from privacy.secagg import RoundContext, for_plan
from privacy.secagg import wire as secagg_wire
from protos import codec
from protos.errors import FailedPrecondition, InvalidInput
from protos.v1 import federation_pb2 as pb

log = logging.getLogger(__name__)

K_SLOTS_TENSOR = "k_slots"


@dataclass(frozen=True)
class HiddenTrain:
    """What a hidden round's TRAIN task carries: its secure sum and every adapter's hash."""

    context: RoundContext
    adapter_sha256: tuple[str, ...]


class HiddenProtection(MaskedProtection):
    """Masked protection whose post-warm-up rounds sum K-slot vectors of all sampled silos."""

    def __init__(self, store: FederationStore, trust: FederationTrust) -> None:
        super().__init__(store, trust)
        if self._plan.fedbiscuit is None or self._plan.fedbiscuit.membership != "hidden":
            raise InvalidInput("hidden membership needs a FedBiscuit plan with membership hidden")
        self.grouping: HiddenGrouping = HiddenGrouping(store, trust)

    def excluded(self) -> frozenset[str]:
        """Joined silos without a usable certificate: no grouping could name them."""
        joined = [record.silo_id for record in self._store.silos()]
        return self.grouping.without_certificate(joined)

    def hidden_round(self, round_: int) -> bool:
        """Whether `round_` trains under a grouping (every round after warm-up)."""
        return self._plan.warmup_adapter(round_) is None

    def layout(self, round_: int) -> KSlotLayout:
        """Round `round_`'s K-slot layout (every adapter has the same tensors)."""
        dim = sum(spec.size for spec in self._store.globals_record(round_, 0).layout)
        return KSlotLayout.for_encoding(dim, self._plan.adapters, for_plan(self._plan).encoding)

    def all_globals_sha256(self, round_: int) -> tuple[str, ...]:
        return tuple(self.globals_digest(round_, k) for k in range(self._plan.adapters))

    def open_attempt(self, attempt: NewAttempt) -> None:
        state = attempt.state
        if not self.hidden_round(state.round):
            super().open_attempt(attempt)
            return
        plan = self._plan
        sessions = open_sessions(
            for_plan(plan),
            plan.federation_id,
            state.round,
            plan.sha256(),
            {0: state.sampled},
            {0: self.layout(state.round).length},
            self._trust,
            now_s=state.started_at_s,
            phase_timeout_s=plan.secagg.phase_timeout_s,
            masked_deadline_s=state.started_at_s + plan.round_deadline_s,
            grouping_digest=bytes.fromhex(state.grouping_digest),
        )
        self._previous, self._masked = (
            self._masked,
            MaskedAttempt(state.round, state.attempt, sessions),
        )

    def step(self, state: RoundState, now_s: float) -> bool:
        changed = super().step(state, now_s)
        return self.grouping.step(state, now_s) or changed

    def task_carries(self, state: RoundState, task: TaskRecord) -> RoundContext | HiddenTrain:
        context = super().task_carries(state, task)
        if not self.hidden_round(task.round):
            return context
        return HiddenTrain(context, self.all_globals_sha256(task.round))

    def release_binding(self, task: TaskRecord) -> str:
        if not self.hidden_round(task.round):
            return super().release_binding(task)
        return hidden_release_binding(
            self._plan.federation_id,
            self._plan.sha256(),
            task.round,
            self.all_globals_sha256(task.round),
        )

    def next_globals(self, agg: Aggregation) -> list[dict[str, np.ndarray]]:
        """Per cluster k: unchanged below min_cluster_silos participants, else the masked
        rule over the decoded cluster sum (1 / max(agreed size, participants))."""
        if not self.hidden_round(agg.state.round):
            return super().next_globals(agg)
        decoded = self._decoded(agg.state)
        finals = []
        for k in range(self._plan.adapters):
            manifest, vector = agg.current(k)
            if decoded is not None and decoded.counts[k] >= agg.min_members:
                divisor = max(decoded.sizes[k], decoded.counts[k])
                vector = add_summed_deltas(vector, decoded.sums[k], divisor)
            tensors = codec.unflatten(manifest, vector)
            self._store.put_globals(agg.next_round, tensors, k)
            finals.append(tensors)
        return finals

    def _decoded(self, state: RoundState) -> ClusterSums | None:
        masked = self.current(state)
        session = masked.session(0) if masked is not None else None
        if session is None or session.result is None:
            return None
        try:
            decoded = self.layout(state.round).decode(session.result.total)
        except InvalidInput as error:  # a tampered upload or a silo outside the grouping
            log.error(
                "federation=%s round=%d: the K-slot sum is refused, no cluster changes: %s",
                self._plan.federation_id,
                state.round,
                error,
            )
            return None
        record_cluster_sizes(self._store, ClusterSizes(state.round, decoded.sizes, decoded.counts))
        log.info(
            "federation=%s round=%d attempt=%d cluster sizes=%s participants=%s",
            self._plan.federation_id,
            state.round,
            state.attempt,
            ",".join(map(str, decoded.sizes)),
            ",".join(map(str, decoded.counts)),
        )
        return decoded


class HiddenEdge(MaskedEdge):
    """Masked wire side, plus the grouping RPCs, all-K downloads and K-slot uploads."""

    def __init__(self, machine: Any, plan: Any, protection: HiddenProtection) -> None:
        super().__init__(machine, plan, protection)
        self._hidden = protection
        self._grouping = protection.grouping

    def joined(self, silo_id: str, cert: Any) -> None:
        pem = cert_pem(cert)
        self._machine.under_lock(lambda: self._grouping.remember_certificate(silo_id, pem))

    def task_fields(self, carries: object | None) -> dict[str, Any]:
        if not isinstance(carries, HiddenTrain):
            return super().task_fields(carries)
        return {
            "secagg": secagg_wire.context_to_proto(carries.context),
            "adapter_sha256": list(carries.adapter_sha256),
            "globals_sha256": "",
        }

    def evaluate_fields(self, carries: object | None) -> dict[str, Any]:
        if not isinstance(carries, CandidateRoster):
            raise FailedPrecondition("a hidden-membership EVALUATE task must carry its roster")
        grouping = pb.MembershipGrouping(
            attempt=carries.context.attempt, candidate_certs=dict(carries.certificates)
        )
        return {"grouping": grouping}

    def download(self, silo_id: str, request: pb.DownloadRequest) -> Iterator[pb.TensorChunk]:
        """A hidden round's TRAIN task may fetch every adapter (fetching one would name the
        silo's cluster)."""
        task = None
        if not request.final:
            task = self._machine.current_task(silo_id, request.task_id)
        if task is None or task.kind != "train" or not self._hidden.hidden_round(task.round):
            yield from super().download(silo_id, request)
        else:
            yield from self._chunks(task.round, request.adapter_index)

    def _layout(self, task: TaskRecord) -> tuple[codec.TensorSpec, ...]:
        if not self._hidden.hidden_round(task.round):
            return super()._layout(task)
        length = self._machine.under_lock(lambda: self._hidden.layout(task.round).length)
        return (codec.TensorSpec(K_SLOTS_TENSOR, (length,)),)

    def grouping_confirm(self, silo_id: str, request: pb.GroupingConfirmation) -> pb.Ack:
        confirmation = Confirmation(silo_id, bytes(request.digest), bytes(request.signature))

        def confirm(task: TaskRecord) -> None:
            self._check_attempt(task, request.attempt)
            self._grouping.confirm(task, confirmation)

        self._machine.with_current_task(silo_id, request.task_id, confirm)
        return pb.Ack(accepted=True, message="confirmation accepted")

    def grouping_fetch(
        self, silo_id: str, request: pb.GroupingFetchRequest, wait_s: float
    ) -> pb.GroupingBroadcast:
        if request.stage not in (pb.GROUPING_STAGE_INBOX, pb.GROUPING_STAGE_CONFIRMATIONS):
            raise InvalidInput(f"unknown grouping stage {request.stage}")
        reply = self._machine.long_poll(
            lambda final: self._grouping_reply(silo_id, request, final), wait_s, 1.0
        )
        reply.attempt = request.attempt
        return reply

    def _grouping_reply(
        self, silo_id: str, request: pb.GroupingFetchRequest, final: bool
    ) -> pb.GroupingBroadcast | None:
        """The stage's broadcast, an abort, or (on the last call) "poll again"; None to keep
        waiting (under the machine's lock)."""
        task = self._machine.owned_task(silo_id, request.task_id)
        attempt = self._grouping.attempt_of(task)
        self._check_attempt(task, request.attempt)
        if attempt is None:
            return pb.GroupingBroadcast(
                aborted=True, message=f"grouping attempt {task.attempt} is no longer running"
            )
        if attempt.aborted:
            return pb.GroupingBroadcast(aborted=True, message=attempt.abort_reason)
        if attempt.final_roster and silo_id not in attempt.final_roster:
            return pb.GroupingBroadcast(
                aborted=True,
                message=f"silo {silo_id!r} is not on the final roster of this grouping (its "
                "report did not arrive in time): it has no cluster until the next grouping",
            )
        reply = None
        relay = attempt.relay
        if request.stage == pb.GROUPING_STAGE_INBOX and attempt.final_roster and not attempt.agreed:
            reply = pb.GroupingBroadcast(
                final_roster=attempt.final_roster, inbox=relay.inbox(silo_id)
            )
        elif request.stage == pb.GROUPING_STAGE_CONFIRMATIONS and attempt.agreed:
            reply = pb.GroupingBroadcast()
            for sender, confirmation in attempt.confirmed.items():
                entry = reply.confirmations[sender]
                entry.digest, entry.signature = confirmation.digest, confirmation.signature
        if reply is None and final:
            reply = pb.GroupingBroadcast(retry_after_ms=RETRY_AFTER_MS)
        return reply

    @staticmethod
    def _check_attempt(task: TaskRecord, attempt: int) -> None:
        if attempt != task.attempt:
            raise FailedPrecondition(
                f"task {task.task_id!r} is grouping attempt {task.attempt}, not {attempt}"
            )
