"""The wire side of homomorphic mode: reads and checks what silos send, asks the round machine.

Why apart from the round side (`he.py`): these handlers deal in ciphertexts, sealed keys and signed
statements, never in plaintext tensors. Every ciphertext chunk is checked against the
manifest (size, then SHA-256) before TenSEAL parses it, and a contribution is accepted only
with a commitment signed by the uploading silo's certificate key for exactly that upload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aggregator.federation_trust import FederationTrust
from aggregator.protection.base import IncomingUpload, ProtectionEdge
from aggregator.protection.he import HePayload, HeProtection
from aggregator.protection.he_vault import EncryptedGlobal
from aggregator.rounds.round_machine import RoundMachine
from privacy.he import (
    CiphertextManifest,
    EncryptedVector,
    SignedCommitment,
    check_manifest,
    load_chunk,
    verify_commitment,
)
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import Plan
from protos.v1 import federation_pb2 as pb

log = logging.getLogger(__name__)

_MAX_JSON_BYTES = 1 << 20


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _check_size(data: bytes, where: str, what: str) -> None:
    if not data or len(data) > _MAX_JSON_BYTES:
        raise InvalidInput(f"{where}: the {what} is missing or too large")


def parse_commitment(data: bytes, where: str) -> SignedCommitment:
    _check_size(data, where, "signed commitment")
    try:
        return SignedCommitment.model_validate_json(data)
    except ValueError as exc:
        raise InvalidInput(f"{where}: malformed signed commitment: {exc}") from None


def parse_manifest(data: bytes, where: str) -> CiphertextManifest:
    _check_size(data, where, "ciphertext manifest")
    try:
        return CiphertextManifest.from_bytes(data)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {exc}") from None


class HeEdge(ProtectionEdge):
    """The wire side of 'he' plans; the servicer delegates to it."""

    def __init__(
        self,
        machine: RoundMachine,
        plan: Plan,
        protection: HeProtection,
        trust: FederationTrust,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert plan.he is not None
        super().__init__(machine, plan)
        self._vault = protection.vault
        self._trust = trust
        self._clock = clock

    def joined(self, silo_id: str, cert: x509.Certificate) -> None:
        self._machine.under_lock(lambda: self._vault.remember_certificate(silo_id, cert_pem(cert)))

    def task_fields(self, carries: object | None) -> dict[str, Any]:
        context = pb.HeTaskContext(key_epoch=self._plan.he.key_epoch, weight_denominator=carries)
        return {"he": context}

    def he_keys(self, silo_id: str, request: pb.HeKeysRequest) -> pb.HeKeysReply:
        self._check_epoch(request.key_epoch)
        public, sealed, waiting = self._machine.under_lock(lambda: self._keys(silo_id))
        revoked = self._trust.revoked_serials()
        return pb.HeKeysReply(
            key_epoch=self._plan.he.key_epoch,
            public_context=public or b"",
            sealed_context=sealed or b"",
            waiting_certificates={
                s: pem
                for s, pem in waiting.items()
                if x509.load_pem_x509_certificate(pem).serial_number not in revoked
            },
            revoked_serials=[str(serial) for serial in sorted(revoked)],
        )

    def _keys(self, silo_id: str) -> tuple[bytes | None, bytes | None, dict[str, bytes]]:
        """(public context, the caller's sealed context, and for the custodian the joined silos
        still without a key with their certificates)."""
        vault, waiting = self._vault, {}
        if silo_id == self._plan.he.key_custodian:
            joined = self._machine.joined_silos()
            waiting = vault.certificates(joined - vault.keyed_silos() - {silo_id})
        return vault.public_bytes(), vault.sealed_for(silo_id), waiting

    def he_provide_keys(self, silo_id: str, request: pb.HeKeyUpload) -> pb.Ack:
        self._check_epoch(request.key_epoch)
        sealed = dict(request.sealed_contexts)

        def provide() -> None:
            joined = self._machine.joined_silos()
            self._vault.provide_keys(silo_id, request.public_context, sealed, joined)
            log.info(
                "federation=%s key_epoch=%d keys provided for silos=%s",
                self._plan.federation_id,
                self._vault.key_epoch,
                ",".join(sorted(sealed)),
            )

        self._machine.under_lock(provide, advance=True)
        return pb.Ack(accepted=True, message=f"keys of epoch {request.key_epoch} stored")

    def download(self, silo_id: str, request: pb.DownloadRequest) -> Iterator[pb.TensorChunk]:
        round_, found, sources = self._globals(silo_id, request)
        statement = found.statement
        listed = (
            set() if statement is None else {s.commitment.silo_id for s in statement.contributions}
        )
        header = pb.HeGlobalsHeader(
            manifest_json=found.vector.manifest.to_bytes(),
            statement_json=b"" if statement is None else statement.model_dump_json().encode(),
            certificates=self._vault.certificates(listed | set(sources)),
            round=round_,
        )
        if request.final:
            header.clusters.update(self._machine.state.clusters)
        yield pb.TensorChunk(he=header)
        for ciphertext in found.vector.ciphertexts:
            yield pb.TensorChunk(data=ciphertext)

    def he_spot_check(self, silo_id: str, request: pb.HeSpotCheckRequest) -> pb.HeSpotCheckReply:
        _, found, sources = self._globals(silo_id, request)
        if found.statement is None:
            raise FailedPrecondition("these globals sum no contribution: nothing to re-add")
        index = request.chunk_index
        if index >= found.vector.manifest.count:
            raise InvalidInput(
                f"chunk_index {index} is outside 0..{found.vector.manifest.count - 1}"
            )
        previous = self._vault.globals(found.statement.round, request.adapter_index)
        reply = pb.HeSpotCheckReply(
            aggregate=_chunk(found.vector, index), previous=_chunk(previous.vector, index)
        )
        for silo, task_id in sources.items():
            vector, _ = self._vault.contribution(task_id)
            reply.contributions[silo].CopyFrom(_chunk(vector, index))
        return reply

    def _globals(
        self, silo_id: str, request: pb.DownloadRequest | pb.HeSpotCheckRequest
    ) -> tuple[int, EncryptedGlobal, dict[str, str]]:
        """(round, the encrypted globals, silo -> task id of what they sum) that the caller's
        current task starts from, or with no task, the final ones of a finished federation."""
        task_id = _task_or_final(request.task_id, request.final)
        adapter = request.adapter_index

        def find() -> tuple[int, EncryptedGlobal, dict[str, str]]:
            round_ = self._machine.download_round(silo_id, task_id, adapter)
            return (
                round_,
                self._vault.globals(round_, adapter),
                self._vault.sources(round_, adapter),
            )

        return self._machine.under_lock(find)

    def _digest(self, header: pb.UpdateHeader) -> str:
        return parse_manifest(header.he_manifest_json, "upload header").digest()

    def _read(self, upload: IncomingUpload) -> HePayload:
        """Check one encrypted contribution: the commitment (signed by the caller, for this
        federation, epoch, upload), then every chunk before parsing it."""
        task = upload.task
        where = f"upload of task {task.task_id!r}"
        manifest = parse_manifest(upload.header.he_manifest_json, where)
        signed = parse_commitment(upload.header.he_commitment_json, where)
        commitment = verify_commitment(
            signed,
            cert_pem(upload.cert),
            ca_cert_pem=self._trust.ca_pem,
            federation_id=self._plan.federation_id,
            now=datetime.fromtimestamp(self._clock(), UTC),
            revoked_serials=self._trust.revoked_serials(),
        )
        if commitment.silo_id != upload.silo_id or commitment.key_epoch != self._plan.he.key_epoch:
            raise FailedPrecondition(f"{where}: the commitment is for another silo or key epoch")
        if commitment.manifest_digest != manifest.digest():
            raise InvalidInput(f"{where}: the commitment does not sign this manifest")
        ctx = self._vault.public_context()
        if ctx is None:
            raise FailedPrecondition("the key custodian has not provided the CKKS keys yet")
        length = self._vault.globals(0, task.adapter_index).vector.manifest.length
        check_manifest(ctx, manifest, length=length)
        chunks: list[bytes] = []
        for part in upload.parts:
            if part.WhichOneof("part") != "data":
                raise InvalidInput(f"{where}: only ciphertext chunks may follow the header")
            if len(chunks) >= manifest.count:
                raise InvalidInput(f"{where}: more ciphertext chunks than the manifest lists")
            try:
                load_chunk(ctx, manifest, len(chunks), part.data)
            except InvalidInput as exc:
                raise InvalidInput(f"{where}: {exc}") from None
            chunks.append(part.data)
        if len(chunks) != manifest.count:
            raise InvalidInput(
                f"{where}: {len(chunks)} ciphertext chunks of the {manifest.count} its manifest "
                "lists (truncated)"
            )
        return EncryptedVector(manifest, tuple(chunks)), signed

    def _check_epoch(self, key_epoch: int) -> None:
        if key_epoch != self._plan.he.key_epoch:
            raise FailedPrecondition(
                f"key epoch {key_epoch} is not the plan's he.key_epoch {self._plan.he.key_epoch}"
            )


def _task_or_final(task_id: str, final: bool) -> str | None:
    """The task a request names, or None for the final globals (which name no task)."""
    if final and task_id:
        raise InvalidInput("a request for the final globals names no task")
    return None if final else task_id


def _chunk(vector: EncryptedVector, index: int) -> pb.HeChunk:
    return pb.HeChunk(manifest_json=vector.manifest.to_bytes(), data=vector.ciphertexts[index])
