"""A silo's part in one masked TRAIN task (plan protection "masking", DESIGN.md §5).

Drives a :class:`~privacy.secagg.SecAggClient` over the gRPC client in the task loop's
order: keys are advertised and shared *before* training, so a round that cannot gather the
plan's minimum number of silos aborts before this silo spends any budget; the update is
masked only once the silos that shared are known; the survivors' view is signed and the
unmask request answered after the upload. Every check of what the aggregator says is the
SecAgg+ client's (certificates, signatures, roster size, consistency, one share per peer);
any failure aborts this silo's part for good (:class:`~privacy.secagg.SecAggAborted`).
"""

from __future__ import annotations

import os

import numpy as np

from privacy.secagg import SecAggAborted, SecAggClient, ShareDelivery, for_plan
from privacy.secagg import wire as secagg_wire
from protos import codec
from protos.errors import FailedPrecondition
from protos.v1 import federation_pb2 as pb
from silo.upload.base import TrainUpload, UploadContext, Uploader


class MaskedUploader(Uploader):
    """Plan protection "masking": every TRAIN task is one SecAgg+ round."""

    protection = "masking"

    def begin(self, task: pb.Task) -> TrainUpload:
        return MaskedUpload(self._context, task)


class MaskedUpload(TrainUpload):
    """One silo's SecAgg+ round for one TRAIN task: keys are shared before training, the
    masked update is sent, then the survivors are signed and the unmasking answered."""

    def __init__(self, ctx: UploadContext, task: pb.Task) -> None:
        """Raises FailedPrecondition (a local refusal) for a task whose secure aggregation
        round is missing or names another federation, round or plan."""
        if not task.HasField("secagg"):
            raise FailedPrecondition(
                f"task {task.task_id!r} of a masking plan names no secure aggregation round"
            )
        context = secagg_wire.context_from_proto(task.secagg)
        expected = (ctx.config.federation_id, task.round, ctx.plan_sha256)
        if (context.federation_id, context.round, context.plan_hash) != expected:
            raise FailedPrecondition(
                f"task {task.task_id!r}: its secure aggregation round names federation "
                f"{context.federation_id!r} round {context.round}, not this task's"
            )
        identity = ctx.identity
        self._client = ctx.client
        self._task = task
        self._stop = ctx.stop
        self._wait_ms = ctx.wait_ms
        self._context = context
        self._delivery: ShareDelivery | None = None
        self.roster: tuple[str, ...] = ()
        self._secagg = SecAggClient(
            for_plan(ctx.plan),
            context,
            identity.silo_id,
            identity.cert_pem,
            identity.key,
            identity.ca_cert,
            identity.now(),
            random_bytes=os.urandom,
        )

    def before_training(self) -> None:
        """Advertise keys, check the roster, share key shares, receive neighbours' shares."""
        advert = self._secagg.advertise()
        self._client.secagg_submit(
            self._task, "advertisement", secagg_wire.advertisement_to_proto(advert)
        )
        roster = secagg_wire.roster_from_proto(
            self._fetch(pb.SEC_AGG_STAGE_ROSTER).roster, self._context
        )
        self.roster = tuple(sorted(roster.silo_ids))  # who advertised keys: a re-release's bound
        shares = self._secagg.share_keys(roster)
        self._client.secagg_submit(
            self._task, "shares", pb.SecAggEncryptedShares(ciphertexts=dict(shares.ciphertexts))
        )
        delivery = self._fetch(pb.SEC_AGG_STAGE_SHARES).delivery
        self._delivery = secagg_wire.delivery_from_proto(
            delivery, self._context, self._secagg.silo_id
        )

    def send(
        self, manifest: codec.Manifest, update: np.ndarray, ledger_entries: list[bytes]
    ) -> pb.Ack:
        """Mask `update` (laid out as `manifest`) and stream it with the ledger entries."""
        if self._delivery is None:
            raise SecAggAborted("the update cannot be masked before the keys are shared")
        layout, vector = self._protected(manifest, update)
        words = self._secagg.mask(self._delivery, vector).vector
        self.sent_bytes = words.nbytes
        return self._client.upload_update(
            self._task,
            codec.ring_manifest(layout, words),
            words,
            protection=MaskedUploader.protection,
            ledger_entries=ledger_entries,
            num_examples=None,
        )

    def _protected(
        self, manifest: codec.Manifest, update: np.ndarray
    ) -> tuple[tuple[codec.TensorSpec, ...], np.ndarray]:
        """What is masked and its layout: here the update as is, laid out as `manifest`."""
        return manifest.layout(), update

    def after_send(self) -> None:
        """Sign the survivors this silo was shown, then reveal the shares unmasking needs."""
        consistency = secagg_wire.consistency_from_proto(
            self._fetch(pb.SEC_AGG_STAGE_SURVIVORS).consistency, self._context
        )
        self._check_survivors(consistency.survivors)
        signature = self._secagg.sign_survivors(consistency)
        self._client.secagg_submit(
            self._task,
            "survivor_signature",
            pb.SecAggSurvivorSignature(signature=signature.signature),
        )
        request = self._fetch(pb.SEC_AGG_STAGE_UNMASK).unmask_request
        response = self._secagg.unmask(
            secagg_wire.unmask_request_from_proto(request, self._context)
        )
        self._client.secagg_submit(
            self._task, "unmask_response", secagg_wire.unmask_response_to_proto(response)
        )

    def _check_survivors(self, survivors: tuple[str, ...]) -> None:
        """A mode's own check of the survivors before this silo signs them (none here)."""

    def _fetch(self, stage: int) -> pb.SecAggBroadcast:
        """Poll until the aggregator broadcasts `stage`; its abort ends this silo's part."""
        while not self._stop.is_set():
            reply = self._client.secagg_fetch(self._task, stage, self._wait_ms)
            if reply.aborted:
                raise SecAggAborted(f"the aggregator aborted the round: {reply.message}")
            if secagg_wire.context_from_proto(reply.context) != self._context:
                raise SecAggAborted("the aggregator answered for another round (replayed?)")
            if reply.WhichOneof("step") is not None:
                return reply
            self._stop.wait(min(reply.retry_after_ms, 1_000) / 1000)
        raise SecAggAborted("the silo agent is stopping")
