"""A silo's encrypted globals and contributions in homomorphic mode (DESIGN.md §6).

Before decrypting anything the aggregator serves, the silo checks the aggregate statement:
at least ``he.min_contributors`` contributions of one round, each signed by a CA-issued,
current silo certificate for this federation and key epoch, all made to be added onto the
stated previous global, this silo's own contribution included unchanged when it made one,
and (``he.spot_check_chunks``) randomly chosen chunks re-added from the inputs byte for
byte. Globals that sum no contribution are the public initial model: the silo builds it
itself and never decrypts what the aggregator says it is.

Contributions carry the aggregation weight applied here (1/N, aggregate on model) and a
commitment signed with the certificate key to the ciphertexts and the base they go onto.
"""

from __future__ import annotations

import random

import numpy as np

from privacy.he import (
    AggregateRejected,
    AggregateStatement,
    EncryptedVector,
    SignedCommitment,
    commit_contribution,
    decrypt_update,
    encrypt_update,
    max_terms,
    spot_check_chunk,
    spot_check_indices,
    verify_aggregate_statement,
)
from privacy.he._packing import CiphertextManifest
from protos import codec
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import Plan
from protos.v1 import federation_pb2 as pb
from selector.model import adapter_state, build_selector
from silo.client import SiloClient
from silo.config import SiloConfig
from silo.identity import SiloIdentity
from silo.local_backbones import silo_selector
from silo.upload.he_keys import HeKeyring


class HeExchange:
    """Downloads, checks and decrypts globals; encrypts, signs and uploads contributions."""

    def __init__(
        self,
        config: SiloConfig,
        identity: SiloIdentity,
        client: SiloClient,
        plan: Plan,
        keyring: HeKeyring,
    ) -> None:
        if plan.he is None:
            raise FailedPrecondition(f"federation {plan.federation_id!r} has no HE section")
        self._config = config
        self._identity = identity
        self._client = client
        self._plan = plan
        self._spec = plan.he
        self._selector = silo_selector(config, plan.selector)
        self._keyring = keyring
        self._initial: dict[int, tuple[codec.Manifest, np.ndarray]] = {}
        # This silo's own signed contributions, by (round, adapter): its aggregate must hold them.
        self._own: dict[tuple[int, int], SignedCommitment] = {}
        self._rng = random.SystemRandom()

    def initial(self, adapter: int) -> tuple[codec.Manifest, np.ndarray]:
        """The public initial globals of `adapter` (seed + k), built locally."""
        if adapter not in self._initial:
            model = build_selector(self._selector, seed=self._plan.seed + adapter)
            self._initial[adapter] = codec.flatten(adapter_state(model))
        return self._initial[adapter]

    def globals_for(
        self, task: pb.Task | None, adapter: int, expected_digest: str | None
    ) -> tuple[codec.Manifest, np.ndarray, pb.HeGlobalsHeader]:
        """The checked, decrypted globals of `adapter` that `task` starts from (None: the
        final ones); raises AggregateRejected rather than decrypt anything unchecked."""
        header, chunks = self._client.download_encrypted_globals(task, adapter)
        try:
            manifest = CiphertextManifest.from_bytes(header.manifest_json)
        except InvalidInput as exc:
            raise AggregateRejected(f"the encrypted globals: {exc}") from None
        if expected_digest is not None and manifest.digest() != expected_digest:
            raise AggregateRejected(
                f"the encrypted globals of adapter {adapter} are not the ones the task names"
            )
        layout, initial = self.initial(adapter)
        if manifest.length != initial.size:
            raise AggregateRejected(
                f"the encrypted globals hold {manifest.length} values; adapter {adapter} has "
                f"{initial.size}"
            )
        if not header.statement_json:
            return layout, initial, header  # nothing was added: the public initial model
        try:
            statement = AggregateStatement.model_validate_json(header.statement_json)
        except ValueError as exc:
            raise AggregateRejected(f"malformed aggregate statement: {exc}") from None
        before = self._plan.rounds if task is None else task.round
        if statement.round >= before:
            raise AggregateRejected(
                f"the statement sums round {statement.round}, not a round before {before}"
            )
        secret = self._keyring.secret()
        verify_aggregate_statement(
            statement,
            manifest,
            federation_id=self._plan.federation_id,
            round=statement.round,
            key_epoch=self._keyring.key_epoch,
            expected_contributors=[s.commitment.silo_id for s in statement.contributions],
            min_contributors=self._spec.min_contributors,
            certs=dict(header.certificates),
            ca_cert_pem=self._identity.ca_cert_pem,
            now=self._identity.now(),
            own_contribution=self._own.get((statement.round, adapter)),
            expected_previous_digest=statement.previous_digest,
        )
        encrypted = EncryptedVector(manifest, tuple(chunks))
        self._spot_check(task, adapter, statement, encrypted)
        return layout, decrypt_update(secret, encrypted), header

    def _spot_check(
        self,
        task: pb.Task | None,
        adapter: int,
        statement: AggregateStatement,
        encrypted: EncryptedVector,
    ) -> None:
        count = encrypted.manifest.count
        for index in spot_check_indices(count, self._spec.spot_check_chunks, self._rng):
            if index >= len(encrypted.ciphertexts):
                raise AggregateRejected(f"the encrypted globals lack chunk {index} (truncated)")
            reply = self._client.he_spot_check(task, adapter, index)
            try:
                inputs = {
                    silo: (CiphertextManifest.from_bytes(c.manifest_json), c.data)
                    for silo, c in reply.contributions.items()
                }
                previous = (CiphertextManifest.from_bytes(reply.previous.manifest_json),
                            reply.previous.data)  # fmt: skip
            except InvalidInput as exc:
                raise AggregateRejected(f"spot check data: {exc}") from None
            spot_check_chunk(
                self._keyring.secret(),
                statement,
                index,
                encrypted.manifest,
                encrypted.ciphertexts[index],
                inputs,
                previous,
            )

    def contribute(self, task: pb.Task, update: np.ndarray, ledger_entries: list[bytes]) -> pb.Ack:
        """Encrypt 1/N times `update`, sign the commitment, stream it to the aggregator."""
        if not task.HasField("he"):
            raise FailedPrecondition(f"task {task.task_id!r} of an 'he' plan has no HE context")
        n = task.he.weight_denominator
        if task.he.key_epoch != self._keyring.key_epoch or n < self._spec.min_contributors:
            raise FailedPrecondition(
                f"task {task.task_id!r} names key epoch {task.he.key_epoch} and N={n}; this "
                f"plan has epoch {self._keyring.key_epoch} and at least "
                f"{self._spec.min_contributors} contributors"
            )
        weight = 1.0 / n
        encrypted = encrypt_update(
            self._keyring.secret(), update, weight=weight, max_silos=max_terms(self._plan)
        )
        signed = commit_contribution(
            self._identity.key,
            encrypted.manifest,
            federation_id=self._plan.federation_id,
            round=task.round,
            key_epoch=self._keyring.key_epoch,
            silo_id=self._config.silo_id,
            weight=weight,
            base_digest=task.globals_sha256,
        )
        self._own[(task.round, task.adapter_index)] = signed
        return self._client.upload_encrypted(
            task,
            encrypted.manifest.to_bytes(),
            signed.model_dump_json().encode(),
            encrypted.ciphertexts,
            ledger_entries,
        )
