"""A silo of a membership-hiding FedBiscuit plan (``fedbiscuit.membership: hidden``).

Why (DESIGN.md §3, privacy.membership): the aggregator must not learn which cluster a silo
is in. So at a grouping the silo seals its DP-noised loss vector to every other candidate
instead of sending it in the clear, opens the others' reports the aggregator relays,
computes the same balanced clusters as every other silo and confirms them; only with every
silo's confirmation of the same digest is the view kept (state dir) and trained under. In
a grouped round it downloads all K globals (one download would name its cluster), trains
its own cluster's adapter and uploads K slots under one SecAgg+ sum over all sampled silos,
so every upload has the same size. No cluster is ever summed over fewer than the plan's
``min_cluster_silos`` (checked on the round's roster before training and on the survivors
before signing them). Warm-up rounds are plain masked rounds (the aggregator picks the
adapter, nothing is hidden there).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from privacy.ledger import LedgerEntry
from privacy.membership import (
    CandidateRoster,
    Confirmation,
    GroupingAborted,
    GroupingContext,
    GroupingMember,
    GroupingView,
    KSlotLayout,
    MemberIdentity,
    check_cluster_quorum,
)
from privacy.re_release import hidden_release_binding
from privacy.secagg import for_plan
from protos import codec
from protos.errors import FailedPrecondition, FedbiscuitError, InvalidInput, PolicyViolation
from protos.plan import FedBiscuitSpec, Plan
from protos.v1 import federation_pb2 as pb
from silo.grouping_store import GroupingStore, PaidLosses
from silo.policy import SiloPolicy
from silo.upload.base import TrainUpload, UploadContext
from silo.upload.masked import MaskedUpload, MaskedUploader

log = logging.getLogger(__name__)

# The one tensor a K-slot upload is laid out as (both ends: the h16 wire contract).
K_SLOTS_TENSOR = "k_slots"


def _spec(plan: Plan) -> FedBiscuitSpec:
    if plan.fedbiscuit is None or plan.fedbiscuit.membership != "hidden":
        raise PolicyViolation("membership hiding needs a FedBiscuit plan with membership hidden")
    return plan.fedbiscuit


class HiddenUploader(MaskedUploader):
    """Plan protection "masking" with ``fedbiscuit.membership: hidden``."""

    membership = "hidden"

    def __init__(self, context: UploadContext) -> None:
        super().__init__(context)
        self._spec = _spec(context.plan)
        self._store = GroupingStore(context.config.state_dir)
        self._member: tuple[str, GroupingMember] | None = None
        try:
            self._view = self._own_view(self._store.load_view())
        except InvalidInput as error:  # damaged: never trained under; wait for a new grouping
            log.warning("silo=%s %s", context.identity.silo_id, error)
            self._view = None

    @classmethod
    def admit(cls, policy: SiloPolicy, plan: Plan) -> None:
        """Also refuses a plan whose secure-aggregation encoding cannot carry K slots."""
        super().admit(policy, plan)
        try:
            KSlotLayout.for_encoding(1, _spec(plan).clusters, for_plan(plan).encoding)
        except FedbiscuitError as error:
            raise PolicyViolation(f"fedbiscuit.membership 'hidden': {error}") from None

    @property
    def view(self) -> GroupingView | None:
        """The grouping this silo last confirmed (never sent anywhere)."""
        return self._view

    def _own_view(self, view: GroupingView | None) -> GroupingView | None:
        """`view` if it is a grouping of this federation and plan that holds this silo."""
        if view is None:
            return None
        ctx, own = view.roster.context, self._context
        same = (ctx.federation_id, ctx.plan_hash) == (own.config.federation_id, own.plan_sha256)
        return view if same and own.identity.silo_id in view.silo_ids else None

    def _grouped(self, task: pb.Task) -> bool:
        """Whether `task` is a round after warm-up, trained under a confirmed grouping."""
        return task.kind == pb.TASK_KIND_TRAIN and task.round >= self._spec.warmup_rounds

    def _me(self) -> MemberIdentity:
        identity = self._context.identity
        return MemberIdentity(
            identity.silo_id, identity.cert_pem, identity.key, identity.ca_cert, identity.now()
        )

    def _roster(self, task: pb.Task) -> CandidateRoster:
        """The candidate roster an EVALUATE task carries (GroupingAborted if malformed)."""
        if not task.HasField("grouping"):
            raise GroupingAborted(
                f"task {task.task_id!r} of a membership-hiding plan carries no grouping roster"
            )
        try:
            context = GroupingContext(
                self._context.config.federation_id,
                task.round,
                task.grouping.attempt,
                self._context.plan_sha256,
                self._spec.clusters,
            )
            return CandidateRoster(context, dict(task.grouping.candidate_certs))
        except FedbiscuitError as error:
            raise GroupingAborted(f"task {task.task_id!r}: {error}") from None

    # -- refusals and bindings ------------------------------------------------------------

    def refusal(self, task: pb.Task) -> str | None:
        """A grouping whose roster this silo cannot check, or a grouped round under another
        grouping than the one it confirmed, is refused before anything is spent."""
        if task.kind == pb.TASK_KIND_EVALUATE:
            try:
                self._roster(task).verified_keys(self._me())
            except GroupingAborted as error:
                return str(error)
            return None
        if not self._grouped(task):
            return None
        where = f"task {task.task_id!r} round {task.round}"
        if len(task.adapter_sha256) != self._spec.clusters:
            return f"{where} lists {len(task.adapter_sha256)} globals, not the plan's K"
        if self._view is None:
            return f"{where}: this silo holds no confirmed grouping to train under"
        if task.secagg.grouping_digest != self._view.digest:
            return (
                f"{where} names grouping digest {task.secagg.grouping_digest.hex()[:12]}…, not "
                f"the {self._view.digest.hex()[:12]}… every silo of its grouping confirmed"
            )
        return None

    def release_binding(self, task: pb.Task) -> str:
        """A grouped round's release binds all K globals and no adapter (privacy.re_release)."""
        if not self._grouped(task):
            return super().release_binding(task)
        return hidden_release_binding(
            self._context.config.federation_id,
            task.plan_sha256,
            task.round,
            list(task.adapter_sha256),
        )

    # -- grouping (EVALUATE) --------------------------------------------------------------

    def reusable_losses(self, task: pb.Task, ledger: Sequence[LedgerEntry]) -> PaidLosses | None:
        """The loss report paid for this round's globals, if it is still the silo's latest
        release: a retried grouping attempt re-sends it unpaid (post-processing)."""
        paid = self._store.load_losses()
        if paid is None or not ledger:
            return None
        latest = ledger[-1]
        same = (paid.plan_sha256, paid.round, paid.adapter_sha256) == (
            task.plan_sha256,
            task.round,
            tuple(task.adapter_sha256),
        )
        paid_is_latest = (latest.seq, latest.mechanism, latest.round) == (
            paid.seq,
            "gaussian",
            task.round,
        )
        return paid if same and paid_is_latest else None

    def report_losses(self, task: pb.Task, paid: PaidLosses, ledger_entries: list[bytes]) -> pb.Ack:
        """Keep the paid vector, then send it signed and sealed to every other candidate."""
        self._store.save_losses(paid)
        member = GroupingMember(
            self._me(), self._roster(task), self._spec.min_cluster_silos, self._spec.assignment
        )
        sealed = member.report(paid.losses)
        self._member = (task.task_id, member)
        return self._context.client.report_losses(task, [], ledger_entries, sealed=sealed)

    def after_report(self, task: pb.Task) -> None:
        """Open the relayed reports, confirm the clusters, and keep the view every silo of
        the final roster confirmed; any failed check aborts the grouping (no training)."""
        if self._member is None or self._member[0] != task.task_id:
            raise GroupingAborted(f"task {task.task_id!r}: no loss report of this silo to group")
        member, self._member = self._member[1], None
        inbox = self._fetch(task, pb.GROUPING_STAGE_INBOX)
        confirmation = member.open(tuple(inbox.final_roster), dict(inbox.inbox))
        self._context.client.grouping_confirm(task, confirmation.digest, confirmation.signature)
        reply = self._fetch(task, pb.GROUPING_STAGE_CONFIRMATIONS)
        confirmations = {
            silo_id: Confirmation(silo_id, bytes(entry.digest), bytes(entry.signature))
            for silo_id, entry in reply.confirmations.items()
        }
        view = member.check(confirmations)
        self._store.save_view(view, self._spec.assignment, self._spec.min_cluster_silos)
        self._view = view
        log.info(
            "federation=%s silo=%s phase=grouped round=%d attempt=%d silos=%d sizes=%s",
            self._context.config.federation_id,
            self._context.identity.silo_id,
            task.round,
            task.grouping.attempt,
            len(view.silo_ids),
            list(view.sizes),
        )

    def _fetch(self, task: pb.Task, stage: int) -> pb.GroupingBroadcast:
        """Poll until the aggregator broadcasts `stage` of the task's attempt (or aborts)."""
        ctx = self._context
        while not ctx.stop.is_set():
            reply = ctx.client.grouping_fetch(task, stage, ctx.wait_ms)
            if reply.aborted:
                raise GroupingAborted(f"the aggregator aborted the grouping: {reply.message}")
            if reply.attempt != task.grouping.attempt:
                raise GroupingAborted(
                    f"the aggregator answered for grouping attempt {reply.attempt}, not "
                    f"{task.grouping.attempt} (replayed?)"
                )
            ready = reply.final_roster if stage == pb.GROUPING_STAGE_INBOX else reply.confirmations
            if ready:
                return reply
            ctx.stop.wait(min(reply.retry_after_ms, 1_000) / 1000)
        raise GroupingAborted("the silo agent is stopping")

    # -- grouped rounds (TRAIN) -----------------------------------------------------------

    def globals_for(
        self, task: pb.Task, adapter_index: int | None = None
    ) -> tuple[codec.Manifest, np.ndarray]:
        """In a grouped round: all K globals are downloaded and checked, the own cluster's
        returned (downloading one would name the cluster)."""
        if adapter_index is not None or not self._grouped(task):
            return super().globals_for(task, adapter_index)
        view = self._checked_view(task)
        download = super().globals_for  # (a comprehension has no zero-argument super)
        every = [download(task, k) for k in range(self._spec.clusters)]
        return every[view.cluster_of(self._context.identity.silo_id)]

    def begin(self, task: pb.Task) -> TrainUpload:
        if not self._grouped(task):
            return super().begin(task)
        return HiddenUpload(self._context, task, self._checked_view(task), self._spec)

    def _checked_view(self, task: pb.Task) -> GroupingView:
        """The confirmed view a grouped `task` names (the task loop declined any other)."""
        view = self._view
        if view is None or task.secagg.grouping_digest != view.digest:
            raise FailedPrecondition(
                f"task {task.task_id!r} is not a round of this silo's confirmed grouping"
            )
        return view


class HiddenUpload(MaskedUpload):
    """One grouped round: one SecAgg+ sum over all sampled silos of K-slot uploads."""

    def __init__(
        self, ctx: UploadContext, task: pb.Task, view: GroupingView, spec: FedBiscuitSpec
    ) -> None:
        super().__init__(ctx, task)
        if self._context.grouping_digest != view.digest:
            raise FailedPrecondition(
                f"task {task.task_id!r}: its secure aggregation round binds another grouping"
            )
        self._view = view
        self._min = spec.min_cluster_silos
        self._cluster = view.cluster_of(ctx.identity.silo_id)
        self._encoding = for_plan(ctx.plan).encoding

    def before_training(self) -> None:
        """As masked, then: every cluster of the round's roster has its minimum."""
        super().before_training()
        check_cluster_quorum(self._view, self.roster, self._min)

    def _protected(
        self, manifest: codec.Manifest, update: np.ndarray
    ) -> tuple[tuple[codec.TensorSpec, ...], np.ndarray]:
        """The update in its cluster's slot, zeros in the others, the count and sizes."""
        clusters = self._view.roster.context.adapters
        layout = KSlotLayout.for_encoding(update.size, clusters, self._encoding)
        slots = layout.encode(np.asarray(update, dtype=np.float64), self._cluster, self._view.sizes)
        return (codec.TensorSpec(K_SLOTS_TENSOR, (layout.length,)),), slots

    def _check_survivors(self, survivors: tuple[str, ...]) -> None:
        """No cluster's sum may cover fewer than the minimum: refuse to sign otherwise."""
        check_cluster_quorum(self._view, survivors, self._min)
