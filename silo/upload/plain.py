"""Plan protection "insecure_plaintext": the aggregator sees each silo's DP update.

Development and demos only; the silo's policy must allow it (`allow_insecure_plaintext`),
and the silo says so loudly at setup and in every round it uploads.
"""

from __future__ import annotations

import logging

import numpy as np

from protos import codec
from protos.errors import PolicyViolation
from protos.plan import Plan
from protos.v1 import federation_pb2 as pb
from silo.policy import SiloPolicy
from silo.upload.base import TrainUpload, UploadContext, Uploader

log = logging.getLogger(__name__)


class PlainUploader(Uploader):
    protection = "insecure_plaintext"

    @classmethod
    def admit(cls, policy: SiloPolicy, plan: Plan) -> None:
        if not policy.allow_insecure_plaintext:
            raise PolicyViolation(
                "plan.protection is 'insecure_plaintext' but policy.allow_insecure_plaintext is "
                "false: the aggregator would see this silo's individual updates"
            )
        super().admit(policy, plan)
        warn_plaintext(plan)

    def begin(self, task: pb.Task) -> TrainUpload:
        warn_plaintext(self._context.plan, task.round)
        return _PlainUpload(self._context, task)


class _PlainUpload(TrainUpload):
    def __init__(self, context: UploadContext, task: pb.Task) -> None:
        self._context = context
        self._task = task

    def send(
        self, manifest: codec.Manifest, update: np.ndarray, ledger_entries: list[bytes]
    ) -> pb.Ack:
        plan = self._context.plan
        by_examples = plan.weighting == "num_examples"
        self.sent_bytes = codec.wire_view(update).nbytes
        return self._context.client.upload_update(
            self._task,
            manifest,
            update,
            protection=PlainUploader.protection,
            ledger_entries=ledger_entries,
            num_examples=self._context.num_examples if by_examples else None,
        )


def warn_plaintext(plan: Plan, round_index: int | None = None) -> None:
    """Say loudly, every time, that the aggregator sees this silo's individual updates."""
    where = f" round={round_index}" if round_index is not None else ""
    log.warning(
        "INSECURE federation=%s%s protection=insecure_plaintext: the aggregator sees this "
        "silo's individual DP updates unmasked (policy.allow_insecure_plaintext is true)",
        plan.federation_id,
        where,
    )
