"""The aggregator's homomorphic-mode state: ciphertexts, statements and sealed keys it relays.

Why one place: in protection 'he' the aggregator must never hold a secret key or a plaintext
model (DESIGN.md §6). Everything it keeps for that mode goes through this class into opaque
store artifacts: the public CKKS context, secret contexts sealed to silos (which it cannot
open), the encrypted globals of every round with the statement of what they sum, and each
contribution with its signed commitment (so silos can spot-check an aggregate). The round-0
globals are the public seeded initial model, encrypted here with the public context; no
plaintext of them is stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from aggregator.store import FederationStore
from privacy.he import (
    AggregateStatement,
    EncryptedVector,
    PublicContext,
    SignedCommitment,
    build_aggregate_statement,
    encrypt_update,
    load_public_context,
    max_terms,
    preset_for_plan,
    sum_encrypted,
)
from protos.errors import FailedPrecondition, InvalidInput

InitialGlobals = Callable[[int], np.ndarray]
"""The public initial flat vector of adapter k (built from the plan's seed)."""


@dataclass(frozen=True)
class EncryptedGlobal:
    """One adapter's encrypted globals at the start of a round, and what they sum (None for
    a global no contribution was ever added to, e.g. the initial model)."""

    vector: EncryptedVector
    statement: AggregateStatement | None


class HeVault:
    """Keys relayed and ciphertexts kept for one key epoch of an 'he' plan (not thread-safe:
    the round machine calls it under its lock)."""

    def __init__(self, store: FederationStore, initial: InitialGlobals) -> None:
        plan = store.plan
        if plan.he is None:
            raise InvalidInput("an HeVault needs a plan with protection 'he'")
        preset_for_plan(plan)
        self._store = store
        self._plan = plan
        self._spec = plan.he
        self._initial = initial
        self._prefix = f"he/e{plan.he.key_epoch}"
        self._public: PublicContext | None = None

    @property
    def key_epoch(self) -> int:
        return self._spec.key_epoch

    # -- keys ---------------------------------------------------------------------------------

    def public_bytes(self) -> bytes | None:
        return self._store.artifact(f"{self._prefix}/public")

    def public_context(self) -> PublicContext | None:
        """The epoch's public context (None until the custodian provided it)."""
        if self._public is None:
            data = self.public_bytes()
            if data is not None:
                self._public = load_public_context(data, self._spec.preset)
        return self._public

    def sealed_for(self, silo_id: str) -> bytes | None:
        return self._store.artifact(f"{self._prefix}/sealed/{silo_id}")

    def keyed_silos(self) -> frozenset[str]:
        """Silos that hold this epoch's secret key: the custodian, once it provided the
        public context, and every silo a sealed context was relayed for."""
        if self.public_bytes() is None:
            return frozenset()
        sealed = self._store.artifact_keys(f"{self._prefix}/sealed/")
        return frozenset({self._spec.key_custodian, *(k.rsplit("/", 1)[1] for k in sealed)})

    def provide_keys(
        self, silo_id: str, public_bytes: bytes, sealed: Mapping[str, bytes], known: set[str]
    ) -> None:
        """Store what the custodian sends; the first upload of an epoch fixes its public
        context (and encrypts the initial globals), later ones only add sealed contexts for
        joined silos (`known`)."""
        if silo_id != self._spec.key_custodian:
            raise FailedPrecondition(
                f"silo {silo_id!r} is not the key custodian ({self._spec.key_custodian!r}) of "
                f"federation {self._plan.federation_id!r}"
            )
        stored = self.public_bytes()
        if stored is None:
            if not public_bytes:
                raise InvalidInput("the first key upload of an epoch must carry the public context")
            load_public_context(public_bytes, self._spec.preset)  # refuses secret keys
        elif public_bytes and public_bytes != stored:
            raise FailedPrecondition(
                f"key epoch {self.key_epoch} already has another public context; rotate keys "
                "with a new he.key_epoch"
            )
        for recipient, blob in sealed.items():
            if recipient not in known or recipient == self._spec.key_custodian:
                raise InvalidInput(f"a sealed context for {recipient!r}, not a joined silo")
            if not 0 < len(blob) <= _MAX_SEALED_BYTES:
                raise InvalidInput(f"the sealed context for {recipient!r} has {len(blob)} bytes")
        if stored is None:
            self._store.put_artifact(f"{self._prefix}/public", public_bytes)
            self._encrypt_initial_globals()
        for recipient, blob in sealed.items():
            self._store.put_artifact(f"{self._prefix}/sealed/{recipient}", blob)

    def _encrypt_initial_globals(self) -> None:
        ctx = self.public_context()
        assert ctx is not None
        for adapter in range(self._plan.adapters):
            key = self._globals_key(0, adapter)
            if self._store.artifact(key) is None:
                vector = np.asarray(self._initial(adapter), dtype=np.float32)
                encrypted = encrypt_update(ctx, vector, weight=1.0, max_silos=max_terms(self._plan))
                self._store.put_artifact(key, encrypted.to_bytes())

    # -- certificates ---------------------------------------------------------------------------

    def remember_certificate(self, silo_id: str, cert_pem: bytes) -> None:
        """The certificate a silo presented over mTLS (relayed to peers, who check it)."""
        if self._store.artifact(f"he/certs/{silo_id}") != cert_pem:
            self._store.put_artifact(f"he/certs/{silo_id}", cert_pem)

    def certificates(self, silo_ids: set[str] | frozenset[str]) -> dict[str, bytes]:
        found = {s: self._store.artifact(f"he/certs/{s}") for s in sorted(silo_ids)}
        return {s: pem for s, pem in found.items() if pem is not None}

    # -- globals and contributions --------------------------------------------------------------

    def has_globals(self, round_: int, adapter: int) -> bool:
        return self._store.artifact(self._globals_key(round_, adapter)) is not None

    def globals(self, round_: int, adapter: int) -> EncryptedGlobal:
        data = self._store.artifact(self._globals_key(round_, adapter))
        if data is None:
            raise FailedPrecondition(f"no encrypted globals for round {round_} adapter {adapter}")
        raw = self._store.artifact(self._statement_key(round_, adapter))
        statement = None if raw is None else AggregateStatement.model_validate_json(raw)
        return EncryptedGlobal(EncryptedVector.from_bytes(data), statement)

    def add_contribution(
        self, task_id: str, encrypted: EncryptedVector, signed: SignedCommitment
    ) -> None:
        self._store.put_artifact(f"{self._prefix}/uploads/{task_id}", encrypted.to_bytes())
        self._store.put_artifact(
            f"{self._prefix}/commitments/{task_id}", signed.model_dump_json().encode()
        )

    def contribution(self, task_id: str) -> tuple[EncryptedVector, SignedCommitment]:
        data = self._store.artifact(f"{self._prefix}/uploads/{task_id}")
        signed = self._store.artifact(f"{self._prefix}/commitments/{task_id}")
        if data is None or signed is None:
            raise FailedPrecondition(f"no encrypted contribution stored for task {task_id!r}")
        return EncryptedVector.from_bytes(data), SignedCommitment.model_validate_json(signed)

    def sources(self, round_: int, adapter: int) -> dict[str, str]:
        """For an aggregate: silo -> task id of each contribution it sums (empty if none)."""
        raw = self._store.artifact(f"{self._prefix}/sources/r{round_}.a{adapter}")
        return {} if raw is None else json.loads(raw)

    def aggregate(self, round_: int, adapter: int, task_ids: list[str], next_round: int) -> None:
        """Store the encrypted globals `next_round` starts from: the previous global plus the
        contributions of `task_ids` (weights already applied by the silos), with the
        statement silos check; unchanged (same ciphertexts and statement) without any."""
        base = self.globals(round_, adapter)
        if task_ids:
            ctx = self.public_context()
            assert ctx is not None
            parts = [self.contribution(t) for t in task_ids]
            total = sum_encrypted(ctx, [base.vector, *(vector for vector, _ in parts)])
            statement = build_aggregate_statement(
                [signed for _, signed in parts],
                total.manifest,
                federation_id=self._plan.federation_id,
                round=round_,
                key_epoch=self.key_epoch,
                previous_digest=base.vector.manifest.digest(),
            )
            sources = {
                signed.commitment.silo_id: t for (_, signed), t in zip(parts, task_ids, strict=True)
            }
            self._store.put_artifact(
                f"{self._prefix}/sources/r{next_round}.a{adapter}", json.dumps(sources).encode()
            )
            self._store.put_artifact(
                self._statement_key(next_round, adapter), statement.model_dump_json().encode()
            )
            self._store.put_artifact(self._globals_key(next_round, adapter), total.to_bytes())
            return
        if base.statement is not None:
            self._store.put_artifact(
                self._statement_key(next_round, adapter), base.statement.model_dump_json().encode()
            )
            previous = self.sources(round_, adapter)
            self._store.put_artifact(
                f"{self._prefix}/sources/r{next_round}.a{adapter}", json.dumps(previous).encode()
            )
        self._store.put_artifact(self._globals_key(next_round, adapter), base.vector.to_bytes())

    def _globals_key(self, round_: int, adapter: int) -> str:
        return f"{self._prefix}/globals/r{round_}.a{adapter}"

    def _statement_key(self, round_: int, adapter: int) -> str:
        return f"{self._prefix}/statements/r{round_}.a{adapter}"


# A sealed secret context: the serialised secret key and public key plus a small header.
_MAX_SEALED_BYTES = 8 << 20
