"""The silo's gRPC client: the only code in a silo that talks to the aggregator.

The silo dials out over mutual TLS (DESIGN.md §4). Transient failures (the aggregator
restarting, a dropped connection) are retried with capped exponential backoff and jitter,
by default until the aggregator answers (silo.reconnect); a TLS handshake the aggregator
refuses is diagnosed and reported at once (silo.handshake); every other status becomes one
of our errors carrying the aggregator's message, so the agent stops with something an
operator can act on. Downloads are verified (size limit, hash, layout) before they are used;
uploads stream in chunks of at most 1 MiB.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import numpy as np

from protos import codec
from protos.errors import InvalidInput
from protos.retry_hint import is_busy
from protos.v1 import federation_pb2 as pb
from protos.v1 import federation_pb2_grpc as pb_grpc
from silo.config import SiloConfig
from silo.handshake import HandshakeRefused, diagnose_handshake, looks_like_tls_failure
from silo.identity import SiloIdentity
from silo.reconnect import Outage, RetryPolicy
from silo.rpc_errors import RETRYABLE, AggregatorUnavailable, from_rpc_error, unreachable

T = TypeVar("T")

# What the agent reports in Join: the wire protocol it speaks (silo/ cannot import the CLI's
# package version, and the protocol is what the aggregator needs to know).
AGENT_VERSION = "fedbiscuit-silo/v1"
# Control messages are tiny and payloads stream in 1 MiB chunks; anything bigger is hostile.
MAX_MESSAGE_BYTES = 2 << 20

__all__ = ["AggregatorUnavailable", "RetryPolicy", "RpcTimeouts", "SiloClient"]


@dataclass(frozen=True)
class RpcTimeouts:
    """Seconds each call may take, beyond any long-poll wait the silo asks for."""

    control_s: float = 30.0
    transfer_s: float = 300.0


class SiloClient:
    """One mTLS channel to the aggregator; close it (or use `with`) when done."""

    def __init__(
        self,
        config: SiloConfig,
        identity: SiloIdentity,
        *,
        retry: RetryPolicy | None = None,
        timeouts: RpcTimeouts = RpcTimeouts(),
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._address = config.aggregator_address
        self._federation_id = config.federation_id
        self._retry = retry or RetryPolicy(give_up_after_s=config.aggregator_wait_s)
        self._pki, self._server_name = config.pki, config.aggregator_server_name
        self._timeouts = timeouts
        self._rng = rng or random.Random()
        self._sleep = sleep
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
        if config.aggregator_server_name:
            options.append(("grpc.ssl_target_name_override", config.aggregator_server_name))
        credentials = identity.channel_credentials()
        self._channel = grpc.secure_channel(self._address, credentials, options=options)
        self._stub = pb_grpc.FederationStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SiloClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def join(self) -> pb.JoinReply:
        """Register with the aggregator; the reply's plan is NOT yet verified (the caller does)."""
        request = pb.JoinRequest(federation_id=self._federation_id, agent_version=AGENT_VERSION)
        return self._call(
            "Join",
            lambda: self._stub.Join(request, timeout=self._timeouts.control_s),
            task_scoped=False,
        )

    def pull_task(self, plan_sha256: str, wait_ms: int) -> pb.Task:
        """Long-poll for the next task; the aggregator may hold the call up to `wait_ms`."""
        request = pb.PullTaskRequest(
            federation_id=self._federation_id, plan_sha256=plan_sha256, wait_ms=wait_ms
        )
        timeout = self._timeouts.control_s + wait_ms / 1000
        return self._call(
            "PullTask", lambda: self._stub.PullTask(request, timeout=timeout), task_scoped=False
        )

    def download_globals(
        self, task: pb.Task, max_bytes: int, adapter_index: int | None = None
    ) -> tuple[codec.Manifest, np.ndarray]:
        """Fetch the globals `task` starts from (a TRAIN task's adapter), or adapter
        `adapter_index` of an EVALUATE task, checked against the size limit and hash."""
        if adapter_index is None:
            adapter_index, expected = task.adapter_index, task.globals_sha256
        else:
            if not 0 <= adapter_index < len(task.adapter_sha256):
                raise InvalidInput(f"task {task.task_id!r} has no adapter {adapter_index}")
            expected = task.adapter_sha256[adapter_index]
        request = pb.DownloadRequest(
            federation_id=task.federation_id, task_id=task.task_id, adapter_index=adapter_index
        )

        def download() -> tuple[codec.Manifest, np.ndarray]:
            chunks = self._stub.DownloadGlobals(request, timeout=self._timeouts.transfer_s)
            return _assemble_globals(chunks, expected, max_bytes)

        return self._call("DownloadGlobals", download)

    def upload_update(
        self,
        task: pb.Task,
        manifest: codec.Manifest,
        vector: np.ndarray,
        *,
        protection: str,
        ledger_entries: list[bytes],
        num_examples: int | None,
    ) -> pb.Ack:
        """Stream one update: the header (task, manifest, the signed ledger entries the
        aggregator lacks, ending with this release's) then ≤1 MiB chunks.

        `num_examples` is sent only when the plan weights by example count (it reveals size).
        Retrying is safe: the aggregator treats a repeated submission for a task as one.
        """
        header = _update_header(
            task,
            protection,
            manifest=codec.manifest_to_proto(manifest),
            ledger_entries=ledger_entries,
            num_examples=num_examples or 0,
        )

        def parts() -> Iterator[pb.UploadPart]:
            yield pb.UploadPart(header=header)
            for chunk in codec.vector_chunks(vector):
                yield pb.UploadPart(data=chunk)

        return self._call(
            "UploadUpdate",
            lambda: self._stub.UploadUpdate(parts(), timeout=self._timeouts.transfer_s),
        )

    def report_losses(
        self,
        task: pb.Task,
        losses: list[float],
        ledger_entries: list[bytes],
        sealed: dict[str, bytes] | None = None,
    ) -> pb.Ack:
        """Send a grouping's DP-noised loss vector with the ledger entries the aggregator
        lacks (the last one records this release). Membership-hiding plans send `losses`
        empty and the signed vector `sealed` to each other candidate (recipient -> blob).
        Retrying is safe (idempotent)."""
        request = pb.LossReport(
            federation_id=task.federation_id,
            task_id=task.task_id,
            round=task.round,
            plan_sha256=task.plan_sha256,
            losses=losses,
            ledger_entries=ledger_entries,
            sealed=sealed or {},
        )
        return self._call(
            "ReportLosses",
            lambda: self._stub.ReportLosses(request, timeout=self._timeouts.control_s),
        )

    def decline(
        self,
        task: pb.Task,
        reason_code: str,
        message: str,
        epsilon_spent: float,
        ledger_entries: list[bytes] | None = None,
    ) -> pb.Ack:
        """Tell the aggregator this silo refuses `task` and why (so it can stop scheduling it)."""
        request = pb.DeclineRequest(
            federation_id=task.federation_id,
            task_id=task.task_id,
            round=task.round,
            reason_code=reason_code,
            message=message,
            epsilon_spent=epsilon_spent,
            ledger_entries=ledger_entries or [],
        )
        return self._call(
            "Decline", lambda: self._stub.Decline(request, timeout=self._timeouts.control_s)
        )

    def secagg_submit(self, task: pb.Task, step: str, message: object) -> pb.Ack:
        """Send one SecAgg+ message (`step` names its field in SecAggSubmission) of a masked
        TRAIN task. Retrying is safe: the aggregator accepts an identical resend once."""
        request = pb.SecAggSubmission(
            federation_id=task.federation_id, task_id=task.task_id, context=task.secagg
        )
        getattr(request, step).CopyFrom(message)
        return self._call(
            "SecAggSubmit",
            lambda: self._stub.SecAggSubmit(request, timeout=self._timeouts.control_s),
        )

    def secagg_fetch(self, task: pb.Task, stage: int, wait_ms: int) -> pb.SecAggBroadcast:
        """Long-poll for a SecAgg+ stage's broadcast (`stage`: a pb.SecAggStage value)."""
        request = pb.SecAggFetchRequest(
            federation_id=task.federation_id, task_id=task.task_id, stage=stage, wait_ms=wait_ms
        )
        timeout = self._timeouts.control_s + wait_ms / 1000
        return self._call("SecAggFetch", lambda: self._stub.SecAggFetch(request, timeout=timeout))

    def grouping_fetch(self, task: pb.Task, stage: int, wait_ms: int) -> pb.GroupingBroadcast:
        """Long-poll for a membership-hiding grouping's broadcast of `stage` (a
        pb.GroupingStage value) for the EVALUATE `task`'s attempt."""
        request = pb.GroupingFetchRequest(
            federation_id=task.federation_id,
            task_id=task.task_id,
            attempt=task.grouping.attempt,
            stage=stage,
            wait_ms=wait_ms,
        )
        timeout = self._timeouts.control_s + wait_ms / 1000
        return self._call(
            "GroupingFetch", lambda: self._stub.GroupingFetch(request, timeout=timeout)
        )

    def grouping_confirm(self, task: pb.Task, digest: bytes, signature: bytes) -> pb.Ack:
        """Send this silo's signed confirmation of the grouping digest it computed for the
        EVALUATE `task`'s attempt. Retrying is safe: an identical resend is accepted once."""
        request = pb.GroupingConfirmation(
            federation_id=task.federation_id,
            task_id=task.task_id,
            attempt=task.grouping.attempt,
            digest=digest,
            signature=signature,
        )
        return self._call(
            "GroupingConfirm",
            lambda: self._stub.GroupingConfirm(request, timeout=self._timeouts.control_s),
        )

    def he_keys(self, key_epoch: int) -> pb.HeKeysReply:
        """The federation's public CKKS context and this silo's sealed secret context (the
        caller checks both); the custodian also gets the silos still waiting for a key."""
        request = pb.HeKeysRequest(federation_id=self._federation_id, key_epoch=key_epoch)
        return self._call(
            "HeKeys",
            lambda: self._stub.HeKeys(request, timeout=self._timeouts.control_s),
            task_scoped=False,
        )

    def he_provide_keys(
        self, key_epoch: int, public_context: bytes, sealed: dict[str, bytes]
    ) -> pb.Ack:
        """Custodian: hand over the public context and secret contexts sealed to silos."""
        request = pb.HeKeyUpload(
            federation_id=self._federation_id,
            key_epoch=key_epoch,
            public_context=public_context,
            sealed_contexts=sealed,
        )
        return self._call(
            "HeProvideKeys",
            lambda: self._stub.HeProvideKeys(request, timeout=self._timeouts.transfer_s),
            task_scoped=False,
        )

    def download_encrypted_globals(
        self, task: pb.Task | None, adapter_index: int
    ) -> tuple[pb.HeGlobalsHeader, list[bytes]]:
        """The encrypted globals a task starts from (None: the final ones of a finished
        federation): the header and one ciphertext per chunk, not yet checked."""
        request = pb.DownloadRequest(
            federation_id=self._federation_id,
            task_id="" if task is None else task.task_id,
            adapter_index=adapter_index,
            final=task is None,
        )

        def download() -> tuple[pb.HeGlobalsHeader, list[bytes]]:
            chunks = self._stub.DownloadGlobals(request, timeout=self._timeouts.transfer_s)
            first = next(chunks, None)
            if first is None or first.WhichOneof("part") != "he":
                raise InvalidInput("encrypted globals stream did not start with its HE header")
            data = []
            for chunk in chunks:
                if chunk.WhichOneof("part") != "data":
                    raise InvalidInput("encrypted globals stream sent a second header")
                data.append(chunk.data)
            return first.he, data

        return self._call("DownloadGlobals", download, task_scoped=task is not None)

    def upload_encrypted(
        self,
        task: pb.Task,
        manifest_json: bytes,
        commitment_json: bytes,
        ciphertexts: tuple[bytes, ...],
        ledger_entries: list[bytes],
    ) -> pb.Ack:
        """Stream one encrypted contribution: the header (manifest, signed commitment, ledger
        entries) then one ciphertext per chunk (each well under 1 MiB). Retrying is safe."""
        header = _update_header(
            task,
            "he",
            ledger_entries=ledger_entries,
            he_manifest_json=manifest_json,
            he_commitment_json=commitment_json,
        )

        def parts() -> Iterator[pb.UploadPart]:
            yield pb.UploadPart(header=header)
            for ciphertext in ciphertexts:
                yield pb.UploadPart(data=ciphertext)

        return self._call(
            "UploadUpdate",
            lambda: self._stub.UploadUpdate(parts(), timeout=self._timeouts.transfer_s),
        )

    def he_spot_check(
        self, task: pb.Task | None, adapter_index: int, chunk: int
    ) -> pb.HeSpotCheckReply:
        """The inputs of one chunk of the aggregate `task` starts from (None: of the final
        globals of a finished federation), for the caller to re-add."""
        request = pb.HeSpotCheckRequest(
            federation_id=self._federation_id,
            task_id="" if task is None else task.task_id,
            adapter_index=adapter_index,
            chunk_index=chunk,
            final=task is None,
        )
        return self._call(
            "HeSpotCheck",
            lambda: self._stub.HeSpotCheck(request, timeout=self._timeouts.transfer_s),
            task_scoped=task is not None,
        )

    def _call(self, rpc: str, attempt_once: Callable[[], T], *, task_scoped: bool = True) -> T:
        """Run one RPC, retrying transient failures (silo.reconnect); translate the rest, and
        a TLS handshake the aggregator refuses, into our errors (`task_scoped`: the call is
        about one task, see silo.rpc_errors)."""
        outage = Outage(self._retry, rpc, self._address)
        while True:
            try:
                return attempt_once()
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code not in RETRYABLE and not is_busy(exc.trailing_metadata()):
                    raise from_rpc_error(
                        rpc, self._address, code, details, task_scoped=task_scoped
                    ) from None
                if looks_like_tls_failure(details):
                    cause = diagnose_handshake(self._address, self._server_name, self._pki)
                    if cause is not None:
                        raise HandshakeRefused(f"aggregator {self._address}: {cause}") from None
                delay = outage.next_delay(code.name, details, self._rng)
                if delay is None:
                    attempts, waited_s = outage.attempts, outage.waited_s
                    raise unreachable(
                        rpc, self._address, attempts, code, details, waited_s
                    ) from None
                self._sleep(delay)


def _assemble_globals(
    chunks: Iterator[pb.TensorChunk], expected_sha256: str, max_bytes: int
) -> tuple[codec.Manifest, np.ndarray]:
    first = next(chunks, None)
    if first is None or first.WhichOneof("part") != "manifest":
        raise InvalidInput("globals stream did not start with a manifest")
    manifest = codec.manifest_from_proto(first.manifest, max_bytes)
    if manifest.sha256 != expected_sha256:
        raise InvalidInput(
            f"globals manifest sha256 {manifest.sha256[:12]}… differs from the task's "
            f"globals_sha256 {expected_sha256[:12]}…"
        )
    assembler = codec.ChunkAssembler(manifest)
    for chunk in chunks:
        if chunk.WhichOneof("part") != "data":
            raise InvalidInput("globals stream sent a second manifest")
        assembler.add(chunk.data)
    return manifest, assembler.finish()


# The fields an upload's header repeats from its task, for the aggregator to match them.
_TASK_IDENTITY = ("federation_id", "task_id", "round", "phase", "plan_sha256", "adapter_index")


def _update_header(task: pb.Task, protection: str, **fields: Any) -> pb.UpdateHeader:
    """An upload's header for `task`: the task's identity and phase, `protection`, `fields`."""
    identity = {name: getattr(task, name) for name in _TASK_IDENTITY}
    return pb.UpdateHeader(**identity, protection=protection, **fields)
