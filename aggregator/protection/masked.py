"""Protection "masking": silos upload SecAgg+-masked ring words; the aggregator sees only sums.

Each training attempt opens one secure sum per adapter it trains (`masked_session`); only
silos inside a completed sum count as uploaded, and the next globals come from the sums
alone (no individual update is stored). The sums live in memory only: an attempt that a
restart interrupted finds none and is re-run with fresh keys and seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from aggregator.federation_trust import FederationTrust
from aggregator.protection.base import Aggregation, NewAttempt, Protection
from aggregator.protection.masked_session import MaskedAttempt, MaskedSession, Stage, open_sessions
from aggregator.protection.plain import PlainEdge
from aggregator.rounds.fedavg import add_summed_deltas
from aggregator.rounds.round_table import Phase, RoundState
from aggregator.store import FederationStore, TaskRecord
from privacy.secagg import MaskedInput, RoundContext, for_plan
from privacy.secagg import wire as secagg_wire
from protos import codec
from protos.errors import FailedPrecondition, InvalidInput
from protos.v1 import federation_pb2 as pb

RETRY_AFTER_MS = 1_000


class MaskedProtection(Protection):
    """The secure sums of the attempt in progress (and of the one before it, so silos of an
    aborted sum learn why even after the machine moved on to a fresh attempt)."""

    def __init__(self, store: FederationStore, trust: FederationTrust) -> None:
        super().__init__(store)
        if self._plan.secagg is None:
            raise InvalidInput("masking needs a plan with a secagg section")
        self._trust = trust
        self._masked: MaskedAttempt | None = None
        self._previous: MaskedAttempt | None = None

    def open_attempt(self, attempt: NewAttempt) -> None:
        """Fresh secure sums for a new attempt: one per adapter its sampled silos train."""
        plan, state, members = self._plan, attempt.state, attempt.members
        sessions = open_sessions(
            for_plan(plan),
            plan.federation_id,
            state.round,
            plan.sha256(),
            members,
            {k: attempt.length(k) for k in members},
            self._trust,
            now_s=state.started_at_s,
            phase_timeout_s=plan.secagg.phase_timeout_s,
            masked_deadline_s=state.started_at_s + plan.round_deadline_s,
        )
        self._previous, self._masked = (
            self._masked,
            MaskedAttempt(state.round, state.attempt, sessions),
        )

    def current(self, state: RoundState) -> MaskedAttempt | None:
        """The secure sums of the attempt in progress; None if a restart lost them."""
        masked = self._masked
        live = state.phase == Phase.TRAINING and masked is not None
        return masked if live and masked.covers(state.round, state.attempt) else None

    def step(self, state: RoundState, now_s: float) -> bool:
        masked = self.current(state)
        if masked is None:
            return False
        declines = self._store.declines(round_=state.round, attempt=state.attempt)
        return masked.step(now_s, {d.silo_id for d in declines})

    def survivors(
        self, state: RoundState, uploaded: frozenset[str]
    ) -> tuple[frozenset[str], bool | None]:
        """Only silos inside a completed secure sum count; none if a restart lost the sums."""
        masked = self.current(state)
        if masked is None:
            return frozenset(), False
        return masked.survivors, masked.open

    def task_carries(self, state: RoundState, task: TaskRecord) -> RoundContext:
        return self.session_of(task).context

    def accept(self, task: TaskRecord, payload: Any) -> None:
        """The masked ring words go into the secure sum; the store keeps no vector."""
        session = self.session_of(task)
        session.masked_input(task.silo_id, MaskedInput(session.context, task.silo_id, payload))
        return None

    def next_globals(self, agg: Aggregation) -> list[dict[str, np.ndarray]]:
        """Each adapter's next globals from its secure sum alone (uniform FedAvg in warm-up
        and FedBis, aggregate-on-model afterwards); unchanged if it has none."""
        masked = self.current(agg.state)
        finals = []
        for adapter in range(self._plan.adapters):
            manifest, vector = agg.current(adapter)
            session = masked.session(adapter) if masked is not None else None
            result = session.result if session is not None else None
            count = 0 if result is None else len(result.silos)
            if count > 0 and (agg.warmup or count >= agg.min_members):
                divisor = count if agg.warmup else max(agg.cluster_sizes[adapter], count)
                vector = add_summed_deltas(vector, result.total, divisor)
            tensors = codec.unflatten(manifest, vector)
            self._store.put_globals(agg.next_round, tensors, adapter)
            finals.append(tensors)
        return finals

    def session_of(self, task: TaskRecord) -> MaskedSession:
        masked = self._masked
        session = None
        if masked is not None and masked.covers(task.round, task.attempt):
            session = masked.session(task.adapter_index)
        if task.kind != "train" or session is None or task.silo_id not in session.members:
            raise FailedPrecondition(
                f"task {task.task_id!r} has no secure aggregation session (not a masked "
                "training task of the attempt in progress)"
            )
        return session

    def aborted_session(self, task: TaskRecord) -> MaskedSession | None:
        for masked in (self._masked, self._previous):
            if masked is not None and masked.covers(task.round, task.attempt):
                session = masked.session(task.adapter_index)
                if session is not None and session.abort_reason:
                    return session
        return None


class MaskedEdge(PlainEdge):
    """Updates are ring words of the plan's encoding; SecAgg+ steps go to their session."""

    def __init__(self, machine: Any, plan: Any, protection: MaskedProtection) -> None:
        super().__init__(machine, plan)
        self._protection = protection
        self.update_dtype = for_plan(plan).encoding.dtype.name

    def task_fields(self, carries: object | None) -> dict[str, Any]:
        return {"secagg": secagg_wire.context_to_proto(carries)}

    def secagg_submit(self, silo_id: str, request: pb.SecAggSubmission) -> pb.Ack:
        if not request.HasField("context"):
            raise InvalidInput("a secure aggregation message must name its round context")
        round_context = secagg_wire.context_from_proto(request.context)
        step = request.WhichOneof("step")
        if step not in _SUBMISSIONS:
            raise InvalidInput("a secure aggregation message carries no protocol step")
        parse, receive = _SUBMISSIONS[step]
        message = parse(getattr(request, step), round_context, silo_id)
        self._machine.with_current_task(
            silo_id,
            request.task_id,
            lambda task: receive(self._protection.session_of(task), silo_id, message),
        )
        return pb.Ack(accepted=True, message=f"{step} accepted")

    def secagg_fetch(
        self, silo_id: str, request: pb.SecAggFetchRequest, wait_s: float
    ) -> pb.SecAggBroadcast:
        stage = _STAGES.get(request.stage)
        if stage is None:
            raise InvalidInput(f"unknown secure aggregation stage {request.stage}")
        round_context, broadcast, aborted = self._machine.long_poll(
            lambda final: self._fetch(silo_id, request.task_id, stage, final), wait_s, 1.0
        )
        reply = pb.SecAggBroadcast(context=secagg_wire.context_to_proto(round_context))
        if aborted:
            reply.aborted, reply.message = True, aborted
        elif broadcast is None:
            reply.retry_after_ms = 0 if wait_s > 0 else RETRY_AFTER_MS  # we already waited
        elif stage is Stage.ROSTER:
            reply.roster.CopyFrom(secagg_wire.roster_to_proto(broadcast))
        elif stage is Stage.SHARES:
            reply.delivery.CopyFrom(secagg_wire.delivery_to_proto(broadcast))
        elif stage is Stage.SURVIVORS:
            reply.consistency.survivors.extend(broadcast.survivors)
        else:
            reply.unmask_request.CopyFrom(secagg_wire.unmask_request_to_proto(broadcast))
        return reply

    def _fetch(
        self, silo_id: str, task_id: str, stage: Stage, final: bool
    ) -> tuple[RoundContext, object | None, str] | None:
        """(context, broadcast or None if not ready, abort reason or ""); None to keep
        waiting (under the machine's lock)."""
        aborted = self._protection.aborted_session(self._machine.owned_task(silo_id, task_id))
        if aborted is not None:
            return aborted.context, None, aborted.abort_reason
        session = self._protection.session_of(self._machine.current_task(silo_id, task_id))
        if stage in session.broadcasts:
            return session.context, _broadcast_for(session, stage, silo_id), ""
        return (session.context, None, "") if final else None


def _broadcast_for(session: MaskedSession, stage: Stage, silo_id: str) -> object:
    broadcast = session.broadcasts[stage]
    if stage is Stage.SHARES:
        if silo_id not in broadcast:
            raise FailedPrecondition(
                f"silo {silo_id!r} did not share its keys in time for round "
                f"{session.context.round}; it takes no further part"
            )
        return broadcast[silo_id]
    return broadcast


# Each protocol step a silo may submit: how to read it, and which session method takes it.
_SUBMISSIONS: dict[str, tuple[Callable[..., Any], Callable[..., None]]] = {
    "advertisement": (
        lambda msg, ctx, _silo: secagg_wire.advertisement_from_proto(msg, ctx),
        MaskedSession.advertise,
    ),
    "shares": (secagg_wire.shares_from_proto, MaskedSession.share),
    "survivor_signature": (secagg_wire.signature_from_proto, MaskedSession.sign),
    "unmask_response": (secagg_wire.unmask_response_from_proto, MaskedSession.unmask),
}
_STAGES = {
    pb.SEC_AGG_STAGE_ROSTER: Stage.ROSTER,
    pb.SEC_AGG_STAGE_SHARES: Stage.SHARES,
    pb.SEC_AGG_STAGE_SURVIVORS: Stage.SURVIVORS,
    pb.SEC_AGG_STAGE_UNMASK: Stage.UNMASK,
}
