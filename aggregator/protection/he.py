"""Protection "he": silos upload CKKS ciphertexts of 1/N times their delta; the aggregator adds.

The round side of homomorphic mode (DESIGN.md §6). The aggregator never holds a secret key
nor a plaintext model: its globals are ciphertexts kept by the `HeVault`, a task names the
digest of their manifest, a silo without this epoch's key cannot be sampled, and a
contribution counts only with a signed commitment for exactly that task's round, weight and
base. The wire side (keys, uploads, downloads, spot checks) is `he_rpcs.HeEdge`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aggregator.protection.base import Aggregation, Protection
from aggregator.protection.he_vault import HeVault
from aggregator.rounds.round_table import RoundState
from aggregator.store import FederationStore, TaskRecord
from privacy.he import EncryptedVector, SignedCommitment
from protos.errors import FailedPrecondition

HePayload = tuple[EncryptedVector, SignedCommitment]
"""An encrypted contribution and the uploading silo's signed commitment to it."""


class HeProtection(Protection):
    """Sums ciphertexts in the vault; the weights were applied by the silos."""

    holds_plaintext = False

    def __init__(self, store: FederationStore, vault: HeVault) -> None:
        super().__init__(store)
        self.vault = vault

    def excluded(self) -> frozenset[str]:
        """A silo without this epoch's key could neither decrypt nor be summed: not sampled."""
        keyed = self.vault.keyed_silos()
        return frozenset(r.silo_id for r in self._store.silos() if r.silo_id not in keyed)

    def globals_digest(self, round_: int, adapter: int) -> str:
        """The digest of the ciphertext manifest (which commits to every ciphertext)."""
        return self.vault.globals(round_, adapter).vector.manifest.digest()

    def task_carries(self, state: RoundState, task: TaskRecord) -> int:
        return self.denominator(state, task.adapter_index)

    def denominator(self, state: RoundState, adapter: int) -> int:
        """N for HE aggregate-on-model: the silos sampled for `adapter` (FedBis, warm-up) or
        its cluster's size; a silo that drops out leaves its 1/N on the previous global."""
        if self._plan.warmup_adapter(state.round) is not None:
            return len(state.sampled)
        return list(state.clusters.values()).count(adapter)

    def digest(self, payload: HePayload) -> str:
        return payload[0].manifest.digest()

    def check(self, state: RoundState, task: TaskRecord, payload: HePayload) -> None:
        c = payload[1].commitment
        expected = (task.round, 1.0 / self.denominator(state, task.adapter_index))
        base = self.globals_digest(task.round, task.adapter_index)
        if (c.round, c.weight) != expected or c.base_digest != base:
            raise FailedPrecondition(
                f"the commitment of task {task.task_id!r} is for round {c.round}, weight "
                f"{c.weight} on base {str(c.base_digest)[:12]}; the task is round "
                f"{task.round}, weight {expected[1]} on base {base[:12]}"
            )

    def accept(self, task: TaskRecord, payload: Any) -> None:
        """Only the ciphertexts and the commitment are kept (as vault artifacts)."""
        encrypted, signed = payload
        self.vault.add_contribution(task.task_id, encrypted, signed)
        return None

    def next_globals(self, agg: Aggregation) -> list[dict[str, np.ndarray]]:
        """The encrypted globals of `agg.next_round`; no plaintext to return."""
        for adapter in range(self._plan.adapters):
            subs = sorted(agg.by_adapter.get(adapter, []), key=lambda sub: sub.silo_id)
            floor = 1 if agg.warmup else agg.min_members
            enough = len(subs) >= max(self._plan.he.min_contributors, floor)
            tasks = [sub.task_id for sub in subs] if enough else []
            self.vault.aggregate(agg.state.round, adapter, tasks, agg.next_round)
        return []
