"""Metrics of the round machine's transitions, heard through its listener seam.

The round machine tells its `TransitionListener` about every state it commits, so this sees
every phase change without touching the store: how long the phase that ended lasted (the
states' own `started_at_s`, on the federation's clock), which sampled silos never delivered,
and how long aggregating took (the wall time of the transition that aggregated).
"""

from __future__ import annotations

from aggregator.ops.metrics import AggregatorMetrics
from aggregator.rounds.round_machine import StateChange
from aggregator.rounds.round_table import Phase, RoundState
from aggregator.store import FederationStore


class PhaseMetrics:
    """A `TransitionListener` reporting one federation's transitions to `metrics`."""

    def __init__(self, store: FederationStore, metrics: AggregatorMetrics) -> None:
        self._store = store
        self._metrics = metrics
        self._federation = store.plan.federation_id

    def committed(self, change: StateChange) -> None:
        before, after, closing = change.before, change.after, change.closing
        metrics, federation = self._metrics, self._federation
        moved = (after.phase, after.round, after.attempt) != (
            before.phase,
            before.round,
            before.attempt,
        )
        if moved and after.phase != Phase.FAILED:  # FAILED keeps the last start time
            metrics.phase_seconds.labels(federation, before.phase).observe(
                max(0.0, after.started_at_s - before.started_at_s)
            )
        if (after.round, after.attempt) != (before.round, before.attempt):
            dropped = self._undelivered(before)
            if dropped:
                metrics.dropped.labels(federation, before.phase).inc(dropped)
        if before.phase == Phase.TRAINING and closing is not None and closing.aggregated:
            metrics.aggregation_seconds.labels(federation).observe(change.elapsed_s)

    def _undelivered(self, state: RoundState) -> int:
        """Sampled silos of `state`'s attempt with no upload, loss report or decline."""
        if state.phase not in (Phase.TRAINING, Phase.GROUPING):
            return 0
        key = {"round_": state.round, "attempt": state.attempt}
        delivered = {s.silo_id for s in self._store.submissions(**key)}
        delivered |= {r.silo_id for r in self._store.loss_reports(**key)}
        delivered |= {d.silo_id for d in self._store.declines(**key)}
        return len(set(state.sampled) - delivered)
