"""Plan protection "he": CKKS-encrypted contributions and globals (DESIGN.md §6).

The keys are :mod:`silo.upload.he_keys`' (the custodian seals the secret context to silos
that joined since, before every pull); the checked download and the signed contribution are
:mod:`silo.upload.he_exchange`'s. The aggregator never sees a plaintext update or global.
"""

from __future__ import annotations

import numpy as np

from privacy.he import preset_for_plan
from protos import codec
from protos.errors import InvalidInput, PolicyViolation
from protos.plan import Plan
from protos.v1 import federation_pb2 as pb
from silo.policy import SiloPolicy
from silo.upload.base import TrainUpload, UploadContext, Uploader
from silo.upload.he_exchange import HeExchange
from silo.upload.he_keys import HeKeyring


class HeUploader(Uploader):
    protection = "he"

    @classmethod
    def admit(cls, policy: SiloPolicy, plan: Plan) -> None:
        super().admit(policy, plan)
        try:
            preset_for_plan(plan)
        except InvalidInput as exc:
            raise PolicyViolation(str(exc)) from None

    def __init__(self, context: UploadContext) -> None:
        super().__init__(context)
        c = context
        self._keyring = HeKeyring(c.config, c.identity, c.client, c.plan)
        self._exchange = HeExchange(c.config, c.identity, c.client, c.plan, self._keyring)

    def serve(self) -> None:
        self._keyring.serve()

    def globals_for(
        self, task: pb.Task, adapter_index: int | None = None
    ) -> tuple[codec.Manifest, np.ndarray]:
        """Checked (statement, signatures, spot checks), then decrypted."""
        if adapter_index is None:
            adapter, expected = task.adapter_index, task.globals_sha256
        else:
            adapter, expected = adapter_index, task.adapter_sha256[adapter_index]
        manifest, vector, _ = self._exchange.globals_for(task, adapter, expected)
        return manifest, vector

    def begin(self, task: pb.Task) -> TrainUpload:
        return _HeUpload(self._exchange, task)


class _HeUpload(TrainUpload):
    def __init__(self, exchange: HeExchange, task: pb.Task) -> None:
        self._exchange = exchange
        self._task = task

    def send(
        self, manifest: codec.Manifest, update: np.ndarray, ledger_entries: list[bytes]
    ) -> pb.Ack:
        """Encrypt 1/N times `update` (its layout is the public initial model's)."""
        return self._exchange.contribute(self._task, update, ledger_entries)
