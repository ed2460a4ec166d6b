"""Protection "plaintext": the aggregator receives each silo's DP-SGD delta as float32 tensors.

The deltas are already differentially private (DP-SGD on the silo); this mode adds no
cryptography. The aggregator stores every accepted delta and computes the next globals
itself: FedAvg in FedBis and warm-up, aggregate-on-model per cluster afterwards.
"""

from __future__ import annotations

import numpy as np

from aggregator.protection.base import Aggregation, IncomingUpload, Protection, ProtectionEdge
from aggregator.rounds.fedavg import aggregate_on_model, fedavg
from aggregator.store import FederationStore, TaskRecord
from protos import codec
from protos.errors import InvalidInput
from protos.v1 import federation_pb2 as pb

_MIB = 1 << 20


class PlainProtection(Protection):
    """Stores each delta; aggregates them in the clear."""

    def __init__(self, store: FederationStore) -> None:
        super().__init__(store)
        if self._plan.protection != "insecure_plaintext":  # fail closed: never a silent downgrade
            raise InvalidInput(
                f"a {self._plan.protection!r} plan needs its own protection "
                "(aggregator.protection.choose), not insecure_plaintext"
            )

    def next_globals(self, agg: Aggregation) -> list[dict[str, np.ndarray]]:
        finals = []
        for adapter in range(self._plan.adapters):
            manifest, globals_vec = agg.current(adapter)
            subs = agg.by_adapter.get(adapter, [])
            deltas = [self._store.load_update(sub.task_id) for sub in subs]
            if not deltas or (not agg.warmup and len(deltas) < agg.min_members):
                vector = globals_vec
            elif agg.warmup:
                if self._plan.weighting == "num_examples":
                    weights = [float(sub.num_examples) for sub in subs]
                else:
                    weights = [1.0] * len(subs)
                vector = fedavg(globals_vec, deltas, weights)
            else:
                vector = aggregate_on_model(globals_vec, deltas, agg.cluster_sizes[adapter])
            tensors = codec.unflatten(manifest, vector)
            self._store.put_globals(agg.next_round, tensors, adapter)
            finals.append(tensors)
        return finals


class PlainEdge(ProtectionEdge):
    """Reads an update as chunks of a flat vector of `update_dtype` (float32 here)."""

    update_dtype: str = codec.DTYPE

    def _digest(self, header: pb.UpdateHeader) -> str:
        if not header.HasField("manifest"):
            raise InvalidInput("upload header lacks its tensor manifest")
        max_bytes = int(self._plan.max_update_mib * _MIB)
        return codec.manifest_from_proto(header.manifest, max_bytes, self.update_dtype).sha256

    def _read(self, upload: IncomingUpload) -> np.ndarray:
        max_bytes = int(self._plan.max_update_mib * _MIB)
        manifest = codec.manifest_from_proto(upload.header.manifest, max_bytes, self.update_dtype)
        assembler = codec.ChunkAssembler(manifest, self._layout(upload.task))
        for part in upload.parts:
            if part.WhichOneof("part") != "data":
                raise InvalidInput("only data chunks may follow the upload header")
            assembler.add(part.data)
        return assembler.finish()

    def _layout(self, task: TaskRecord) -> tuple[codec.TensorSpec, ...]:
        """The tensors an update of `task` must hold: its adapter's."""
        return self._machine.globals_layout(task.round, task.adapter_index)
