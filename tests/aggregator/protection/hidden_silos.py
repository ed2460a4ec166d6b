"""In-process silos of a membership-hiding FedBiscuit plan, driven over mTLS against a real
aggregator: each builds its grouping side from privacy.membership (GroupingMember) and its
K-slot SecAgg+ side from privacy.secagg, message by message, the way the silo agent does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from privacy.ledger import ReleaseParams
from privacy.membership import (
    CandidateRoster,
    Confirmation,
    GroupingContext,
    GroupingMember,
    GroupingView,
    KSlotLayout,
    MemberIdentity,
)
from privacy.re_release import hidden_release_binding
from privacy.secagg import for_plan
from privacy.secagg import wire as secagg_wire
from protos import codec
from protos.v1 import federation_pb2 as pb

from ..conftest import TIMEOUT_S, Federation, Silo

K_SLOTS = "k_slots"


class HiddenSilo:
    """One silo: its connection (`silo`), its grouping member and the view it confirmed."""

    def __init__(self, federation: Federation, silo: Silo) -> None:
        self.federation, self.silo = federation, silo
        self.silo_id = silo.silo_id
        self.member: GroupingMember | None = None
        self.view: GroupingView | None = None
        self.task: pb.Task | None = None

    # -- grouping ----------------------------------------------------------------------------

    def roster(self, task: pb.Task) -> CandidateRoster:
        plan = self.federation.plan
        context = GroupingContext(
            plan.federation_id, task.round, task.grouping.attempt, plan.sha256(), plan.adapters
        )
        return CandidateRoster(context, dict(task.grouping.candidate_certs))

    def identity(self) -> MemberIdentity:
        pki = self.federation.pki
        key = serialization.load_pem_private_key(pki.silo_key(self.silo_id).read_bytes(), None)
        ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        pem = pki.silo_cert(self.silo_id).read_bytes()
        return MemberIdentity(self.silo_id, pem, key, ca, datetime.now(UTC))

    def loss_entry(self, round_: int) -> list[bytes]:
        """The signed Gaussian ledger entry of a loss report, appended to the ledger."""
        plan = self.federation.plan
        spec = plan.fedbiscuit.loss_report
        params = ReleaseParams(
            noise_multiplier=spec.noise_multiplier,
            sample_rate=1.0,
            steps=plan.adapters,
            clip_norm=spec.clip,
            delta=plan.delta,
            sample_size=spec.sample_size,
        )
        entry = self.silo.next_entry(round_, mechanism="gaussian", params=params)
        self.silo.entries.append(entry)
        return [e.to_line() for e in self.silo.entries]

    def report(self, values: Sequence[float], **overrides: object) -> pb.Ack:
        """Pull the EVALUATE task and send the sealed loss report (fields can be overridden)."""
        task = self.silo.pull()
        assert task.kind == pb.TASK_KIND_EVALUATE, task
        self.task = task
        plan = self.federation.plan
        self.member = GroupingMember(
            self.identity(),
            self.roster(task),
            plan.fedbiscuit.min_cluster_silos,
            plan.fedbiscuit.assignment,
        )
        fields = {
            "federation_id": plan.federation_id,
            "task_id": task.task_id,
            "round": task.round,
            "plan_sha256": plan.sha256(),
            "sealed": self.member.report(values),
            "ledger_entries": self.loss_entry(task.round),
        }
        request = pb.LossReport(**{**fields, **overrides})
        return self.silo.stub.ReportLosses(request, timeout=TIMEOUT_S)

    def fetch(self, stage: int) -> pb.GroupingBroadcast:
        request = pb.GroupingFetchRequest(
            federation_id=self.federation.plan.federation_id,
            task_id=self.task.task_id,
            attempt=self.task.grouping.attempt,
            stage=stage,
            wait_ms=0,
        )
        return self.silo.stub.GroupingFetch(request, timeout=TIMEOUT_S)

    def confirm(self, confirmation: Confirmation | None = None) -> pb.Ack:
        """Open the relayed reports and confirm the grouping (or send `confirmation`)."""
        reply = self.fetch(pb.GROUPING_STAGE_INBOX)
        assert not reply.aborted and reply.final_roster, reply
        mine = self.member.open(tuple(reply.final_roster), dict(reply.inbox))
        sent = confirmation or mine
        request = pb.GroupingConfirmation(
            federation_id=self.federation.plan.federation_id,
            task_id=self.task.task_id,
            attempt=self.task.grouping.attempt,
            digest=sent.digest,
            signature=sent.signature,
        )
        return self.silo.stub.GroupingConfirm(request, timeout=TIMEOUT_S)

    def check(self) -> GroupingView:
        reply = self.fetch(pb.GROUPING_STAGE_CONFIRMATIONS)
        assert not reply.aborted and reply.confirmations, reply
        confirmations = {
            s: Confirmation(s, c.digest, c.signature) for s, c in reply.confirmations.items()
        }
        self.view = self.member.check(confirmations)
        return self.view

    # -- a hidden training round ---------------------------------------------------------------

    def pull_train(self) -> pb.Task:
        task = self.silo.pull()
        assert task.kind == pb.TASK_KIND_TRAIN, task
        self.task = task
        self.secagg = self.federation.secagg_client(self.silo_id, task)
        return task

    def download_all(self) -> list[np.ndarray]:
        """Every adapter's globals (as a silo of a hidden round must fetch them), checked."""
        globals_ = []
        for k, expected in enumerate(self.task.adapter_sha256):
            request = pb.DownloadRequest(
                federation_id=self.task.federation_id, task_id=self.task.task_id, adapter_index=k
            )
            parts = list(self.silo.stub.DownloadGlobals(request, timeout=TIMEOUT_S))
            manifest = codec.manifest_from_proto(parts[0].manifest, max_bytes=1 << 30)
            assert manifest.sha256 == expected
            globals_.append(codec.assemble(manifest, [p.data for p in parts[1:]]))
        return globals_

    def submit(self, step: str, message: object) -> pb.Ack:
        request = pb.SecAggSubmission(
            federation_id=self.task.federation_id,
            task_id=self.task.task_id,
            context=self.task.secagg,
            **{step: message},
        )
        return self.silo.stub.SecAggSubmit(request, timeout=TIMEOUT_S)

    def secagg_fetch(self, stage: int) -> pb.SecAggBroadcast:
        request = pb.SecAggFetchRequest(
            federation_id=self.task.federation_id, task_id=self.task.task_id, stage=stage
        )
        reply = self.silo.stub.SecAggFetch(request, timeout=TIMEOUT_S)
        assert not reply.aborted, reply.message
        return reply

    def upload_k_slots(
        self, delivery: object, delta: np.ndarray, sizes: tuple[int, ...] | None = None
    ) -> pb.Ack:
        """Mask this silo's K-slot vector (its delta in its own cluster's slot, the agreed
        sizes unless `sizes` says otherwise) and upload it."""
        plan = self.federation.plan
        layout = KSlotLayout.for_encoding(delta.size, plan.adapters, for_plan(plan).encoding)
        cluster = self.view.cluster_of(self.silo_id)
        vector = layout.encode(delta, cluster, sizes or self.view.sizes)
        words = self.secagg.mask(delivery, vector).vector
        return self.upload_words((codec.TensorSpec(K_SLOTS, (layout.length,)),), words)

    def upload_words(
        self, layout: tuple[codec.TensorSpec, ...], words: np.ndarray, binding: str = ""
    ) -> pb.Ack:
        """Upload masked ring `words` laid out as `layout`, with a DP-SGD ledger entry bound
        to all K globals (as a hidden round's release must be) unless `binding` says."""
        plan = self.federation.plan
        binding = binding or hidden_release_binding(
            plan.federation_id, plan.sha256(), self.task.round, tuple(self.task.adapter_sha256)
        )
        self.silo.entries.append(self.silo.next_entry(self.task.round, release_binding=binding))
        manifest = codec.ring_manifest(layout, words)
        header = pb.UpdateHeader(
            federation_id=plan.federation_id,
            task_id=self.task.task_id,
            round=self.task.round,
            phase=self.task.phase,
            plan_sha256=plan.sha256(),
            adapter_index=self.task.adapter_index,
            protection=plan.protection,
            manifest=codec.manifest_to_proto(manifest),
            ledger_entries=[e.to_line() for e in self.silo.entries],
        )
        parts = [pb.UploadPart(header=header)]
        parts += [pb.UploadPart(data=chunk) for chunk in codec.vector_chunks(words)]
        return self.silo.stub.UploadUpdate(iter(parts), timeout=TIMEOUT_S)


def run_grouping(silos: Sequence[HiddenSilo], losses: Mapping[str, Sequence[float]]) -> None:
    """A whole grouping: every silo reports, confirms, and checks the others' confirmations."""
    for silo in silos:
        assert silo.report(losses[silo.silo_id]).accepted
    for silo in silos:
        assert silo.confirm().accepted
    for silo in silos:
        silo.check()
    assert len({silo.view.digest for silo in silos}) == 1


def run_hidden_round(
    silos: Sequence[HiddenSilo],
    deltas: Mapping[str, np.ndarray],
    sizes: Mapping[str, tuple[int, ...]] | None = None,
) -> None:
    """A whole post-warm-up round: one SecAgg+ sum over every silo's K-slot upload (`sizes`:
    what some silos claim as the cluster sizes instead of the agreed ones)."""
    for silo in silos:
        silo.pull_train()
        silo.download_all()
    for silo in silos:
        silo.submit("advertisement", secagg_wire.advertisement_to_proto(silo.secagg.advertise()))
    for silo in silos:
        context = secagg_wire.context_from_proto(silo.task.secagg)
        roster = secagg_wire.roster_from_proto(
            silo.secagg_fetch(pb.SEC_AGG_STAGE_ROSTER).roster, context
        )
        shares = silo.secagg.share_keys(roster)
        silo.submit("shares", pb.SecAggEncryptedShares(ciphertexts=dict(shares.ciphertexts)))
    for silo in silos:
        context = secagg_wire.context_from_proto(silo.task.secagg)
        delivery = secagg_wire.delivery_from_proto(
            silo.secagg_fetch(pb.SEC_AGG_STAGE_SHARES).delivery, context, silo.silo_id
        )
        claimed = (sizes or {}).get(silo.silo_id)
        assert silo.upload_k_slots(delivery, deltas[silo.silo_id], claimed).accepted
    for silo in silos:
        context = secagg_wire.context_from_proto(silo.task.secagg)
        consistency = secagg_wire.consistency_from_proto(
            silo.secagg_fetch(pb.SEC_AGG_STAGE_SURVIVORS).consistency, context
        )
        signature = silo.secagg.sign_survivors(consistency)
        silo.submit("survivor_signature", pb.SecAggSurvivorSignature(signature=signature.signature))
    for silo in silos:
        context = secagg_wire.context_from_proto(silo.task.secagg)
        request = secagg_wire.unmask_request_from_proto(
            silo.secagg_fetch(pb.SEC_AGG_STAGE_UNMASK).unmask_request, context
        )
        response = silo.secagg.unmask(request)
        silo.submit("unmask_response", secagg_wire.unmask_response_to_proto(response))
