"""How a FedBiscuit grouping forms clusters: the hook the round machine asks, never the plan.

`Grouping` is visible membership (DESIGN.md §1 phase 2): silos send DP-noised loss vectors
in the clear and the aggregator computes the balanced assignment itself, so it knows every
silo's cluster and each TRAIN task names its adapter. Hidden membership
(`aggregator.protection.hidden`) replaces it: the silos agree among themselves and the
aggregator relays sealed blobs. `aggregator.protection.choose` picks one with the protection
mode; the round machine only calls these methods.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from aggregator.rounds.round_table import RoundState, adapter_for, sample_silos
from aggregator.store import FederationStore, TaskRecord
from privacy.balanced_assignment import assign_clusters
from protos.errors import InvalidInput


class Grouping:
    """Visible membership: clusters from the plaintext loss reports, kept in the state."""

    def __init__(self, store: FederationStore) -> None:
        self._store = store
        self._plan = store.plan

    def open(self, state: RoundState) -> None:
        """A grouping attempt starts in `state` (nothing to prepare when visible)."""

    def evaluate_carries(self, state: RoundState, task: TaskRecord) -> object | None:
        """What an EVALUATE task carries besides the adapters' hashes (the edge puts it on
        the wire)."""
        return None

    def take_report(
        self, task: TaskRecord, losses: tuple[float, ...], sealed: Mapping[str, bytes]
    ) -> None:
        """Refuse a loss report this grouping cannot take (before it is stored)."""
        if sealed:
            raise InvalidInput(
                "this plan's loss reports carry their losses in the clear (fedbiscuit "
                "membership 'visible'); `sealed` must be empty"
            )
        if len(losses) != self._plan.adapters:
            raise InvalidInput(
                f"loss report has {len(losses)} values; the plan has {self._plan.adapters} adapters"
            )

    def outcome(
        self, state: RoundState, reported: frozenset[str]
    ) -> tuple[frozenset[str], bool | None]:
        """(silos the grouping counts as reported, whether its own protocol still runs, None
        for none: the round table then closes it by reports and deadline)."""
        return reported, None

    def assign(self, state: RoundState) -> tuple[dict, str]:
        """The state fields a completed grouping leaves, and what the log may say of it.

        Balanced clusters from this grouping's loss reports; silos that did not report keep
        the cluster they had (or stay unassigned until the next grouping)."""
        reports = sorted(
            self._store.loss_reports(round_=state.round, attempt=state.attempt),
            key=lambda r: r.silo_id,
        )
        losses = np.array([r.losses for r in reports], dtype=np.float64)
        chosen = assign_clusters(losses, self._plan.fedbiscuit.assignment)
        clusters = state.clusters
        clusters.update({r.silo_id: k for r, k in zip(reports, chosen, strict=True)})
        assignment = tuple(sorted(clusters.items()))
        described = "clusters=" + ";".join(f"{silo}:{k}" for silo, k in assignment)
        return {"assignment": assignment}, described

    def sample(self, state: RoundState, trainable: tuple[str, ...]) -> tuple[str, ...]:
        """The silos asked to train in this attempt: a seeded draw of `plan.silos_per_round`."""
        return sample_silos(self._plan, state.round, state.attempt, trainable)

    def adapter_of(self, state: RoundState, silo_id: str) -> int:
        """The adapter a TRAIN task of `silo_id` names in `state`."""
        return adapter_for(state, self._plan, silo_id)

    def cluster_sizes(self, state: RoundState) -> dict[int, int]:
        """Silos per cluster as the aggregator knows them (for aggregate-on-model)."""
        values = list(state.clusters.values())
        return {k: values.count(k) for k in range(self._plan.adapters)}
