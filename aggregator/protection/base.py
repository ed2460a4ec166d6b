"""The one interface behind which a protection mode (plaintext, masking, HE) lives.

A mode has two sides, both chosen once from the plan (`aggregator.protection.choose`):
- `Protection`, the round side the round machine calls under its lock: open an attempt,
  accept a submission, say who survived, compute the next globals, say what a task carries;
- `ProtectionEdge`, the wire side the servicer delegates to: what a task message carries,
  how an update is read off the wire and how globals go back, and the mode's own RPCs
  (SecAgg+ steps, HE keys and spot checks), which every other mode refuses.
Adding a mode means one new module implementing both; the machine and the servicer never
ask which mode they run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from cryptography import x509

from aggregator.protection.grouping import Grouping
from aggregator.rounds.round_table import RoundState
from aggregator.store import FederationStore, Submission, TaskRecord
from privacy.re_release import release_binding
from protos import codec
from protos.errors import FailedPrecondition, InvalidInput
from protos.v1 import federation_pb2 as pb

if TYPE_CHECKING:
    from aggregator.rounds.round_machine import RoundMachine


@dataclass(frozen=True)
class Aggregation:
    """What closing `state`'s attempt aggregates: its accepted submissions by adapter, and the
    rule: FedAvg in warm-up and FedBis, aggregate-on-model (1/N_cluster, at least
    `min_members` contributions) afterwards. `current(k)` is adapter k's plaintext globals
    (manifest, flat vector) the round started from; the result is `next_round`'s."""

    state: RoundState
    by_adapter: Mapping[int, list[Submission]]
    warmup: bool
    cluster_sizes: Mapping[int, int]
    min_members: int
    current: Callable[[int], tuple[codec.Manifest, np.ndarray]]
    next_round: int


@dataclass(frozen=True)
class NewAttempt:
    """A training attempt that starts in `state`: `members` are the sampled silos of each
    adapter, `length(k)` the values in adapter k's flat vector."""

    state: RoundState
    members: Mapping[int, tuple[str, ...]]
    length: Callable[[int], int]


@dataclass(frozen=True)
class IncomingUpload:
    """An upload whose header the servicer checked (federation, plan, digest, ledger, task):
    the verified caller, the header, the task it targets and the parts still to read."""

    silo_id: str
    cert: x509.Certificate
    header: pb.UpdateHeader
    task: TaskRecord
    parts: Iterator[pb.UploadPart]


class Protection:
    """The round side of a mode. Not thread-safe: the round machine calls it under its lock."""

    holds_plaintext: ClassVar[bool] = True
    """Whether the aggregator holds the plaintext globals (and so can export selectors)."""

    def __init__(self, store: FederationStore) -> None:
        self._store = store
        self._plan = store.plan
        self.grouping: Grouping = Grouping(store)
        """How FedBiscuit groupings form clusters (visible membership unless a mode says)."""

    def excluded(self) -> frozenset[str]:
        """Joined silos this mode cannot sample now (besides budget): none by default."""
        return frozenset()

    def open_attempt(self, attempt: NewAttempt) -> None:
        """A training attempt starts (nothing to prepare by default)."""

    def step(self, state: RoundState, now_s: float) -> bool:
        """Let the clock move the mode's own protocol; True if anything changed."""
        return False

    def survivors(
        self, state: RoundState, uploaded: frozenset[str]
    ) -> tuple[frozenset[str], bool | None]:
        """(silos whose update counts, whether the mode's own protocol is still running, None
        for a mode without one: the attempt then closes by uploads and deadline), given the
        silos with an accepted submission in `state`'s attempt."""
        return uploaded, None

    def globals_digest(self, round_: int, adapter: int) -> str:
        """What a task names as its starting globals (the SHA-256 of the plaintext vector)."""
        return self._store.globals_record(round_, adapter).sha256

    def release_binding(self, task: TaskRecord) -> str:
        """The binding a DP-SGD release of TRAIN `task` must carry (privacy.re_release): its
        round, adapter and the digest of the globals it trains from."""
        return release_binding(
            self._plan.federation_id,
            self._plan.sha256(),
            task.round,
            task.adapter_index,
            self.globals_digest(task.round, task.adapter_index),
        )

    def task_carries(self, state: RoundState, task: TaskRecord) -> object | None:
        """What a TRAIN task carries for this mode (the edge puts it on the wire)."""
        return None

    def digest(self, payload: Any) -> str:
        """The digest identifying an upload (an identical re-upload has the same)."""
        return codec.sha256_of(payload)

    def check(self, state: RoundState, task: TaskRecord, payload: Any) -> None:
        """Refuse a payload that does not fit `task` (before its release is checked)."""

    def accept(self, task: TaskRecord, payload: Any) -> np.ndarray | None:
        """Take a checked submission in; returns the vector the store keeps (None: none)."""
        return payload

    def next_globals(self, agg: Aggregation) -> list[dict[str, np.ndarray]]:
        """Store the globals `agg.next_round` starts from and return them (plaintext modes)."""
        raise NotImplementedError


class ProtectionEdge:
    """The wire side of a mode; the servicer delegates everything mode-specific here."""

    def __init__(self, machine: RoundMachine, plan: Any) -> None:
        self._machine = machine
        self._plan = plan

    def joined(self, silo_id: str, cert: x509.Certificate) -> None:
        """A silo joined with this verified certificate."""

    def task_fields(self, carries: object | None) -> dict[str, Any]:
        """The fields of a TRAIN `pb.Task` that carry `Protection.task_carries` (they may
        replace the common ones)."""
        return {}

    def evaluate_fields(self, carries: object | None) -> dict[str, Any]:
        """The fields of an EVALUATE `pb.Task` that carry `Grouping.evaluate_carries`."""
        return {}

    def upload_digest(self, header: pb.UpdateHeader) -> str:
        """The digest an upload header of this mode declares (checked before any payload is
        read); refuses a header of another mode."""
        if header.protection != self._plan.protection:
            raise FailedPrecondition(
                f"upload protection {header.protection!r} does not match the plan's "
                f"{self._plan.protection!r}"
            )
        return self._digest(header)

    def _digest(self, header: pb.UpdateHeader) -> str:
        raise NotImplementedError

    def read_upload(
        self,
        silo_id: str,
        cert: x509.Certificate,
        header: pb.UpdateHeader,
        task: TaskRecord,
        parts: Iterator[pb.UploadPart],
    ) -> Any:
        """Read and check the rest of an upload into the payload `Protection.accept` takes."""
        return self._read(IncomingUpload(silo_id, cert, header, task, parts))

    def _read(self, upload: IncomingUpload) -> Any:
        raise NotImplementedError

    def download(self, silo_id: str, request: pb.DownloadRequest) -> Iterator[pb.TensorChunk]:
        """The globals a silo's current task starts from, as plaintext chunks."""
        if request.final:
            raise FailedPrecondition("only silos of an 'he' plan download the final globals")
        task = self._machine.current_task(silo_id, request.task_id)
        if task.kind == "train" and request.adapter_index != task.adapter_index:
            raise InvalidInput(
                f"task {task.task_id!r} trains adapter {task.adapter_index}, not "
                f"{request.adapter_index}"
            )
        yield from self._chunks(task.round, request.adapter_index)

    def _chunks(self, round_: int, adapter: int) -> Iterator[pb.TensorChunk]:
        manifest, vector = self._machine.globals_vector(round_, adapter)
        yield pb.TensorChunk(manifest=codec.manifest_to_proto(manifest))
        for chunk in codec.vector_chunks(vector):
            yield pb.TensorChunk(data=chunk)

    # -- the RPCs of one mode; every other mode refuses them ------------------------------------

    def secagg_submit(self, silo_id: str, request: pb.SecAggSubmission) -> pb.Ack:
        raise self._not_mine("secure aggregation")

    def secagg_fetch(
        self, silo_id: str, request: pb.SecAggFetchRequest, wait_s: float
    ) -> pb.SecAggBroadcast:
        """Long-poll up to `wait_s` for a SecAgg+ stage's broadcast to the caller."""
        raise self._not_mine("secure aggregation")

    def he_keys(self, silo_id: str, request: pb.HeKeysRequest) -> pb.HeKeysReply:
        raise self._not_mine("homomorphic mode")

    def he_provide_keys(self, silo_id: str, request: pb.HeKeyUpload) -> pb.Ack:
        raise self._not_mine("homomorphic mode")

    def he_spot_check(self, silo_id: str, request: pb.HeSpotCheckRequest) -> pb.HeSpotCheckReply:
        raise self._not_mine("homomorphic mode")

    def grouping_fetch(
        self, silo_id: str, request: pb.GroupingFetchRequest, wait_s: float
    ) -> pb.GroupingBroadcast:
        """Long-poll up to `wait_s` for a hidden grouping's stage (inbox or confirmations)."""
        raise self._not_mine("membership-hiding groupings")

    def grouping_confirm(self, silo_id: str, request: pb.GroupingConfirmation) -> pb.Ack:
        raise self._not_mine("membership-hiding groupings")

    def _not_mine(self, what: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"federation {self._plan.federation_id!r} does not use {what} "
            f"(protection {self._plan.protection!r})"
        )
