"""The SQLite store, telling metrics about each state the round machine commits.

The round machine persists every state it enters through `save_state` before acting on it,
so watching that one call sees every phase change without a hook in the machine: how long
the phase that ended lasted (the states' own `started_at_s`, on the federation's clock), which
sampled silos never delivered, and how long aggregating took (wall time from the attempt's
first `load_update` to the commit that closes it as aggregated).
"""

from __future__ import annotations

import time

import numpy as np

from aggregator.ops.metrics import AggregatorMetrics
from aggregator.rounds.round_table import Phase, RoundState
from aggregator.store import ClosedAttempt, SqliteStore


class PhaseObservingStore(SqliteStore):
    """A SqliteStore; call `observe(metrics)` once after `create` to start reporting."""

    _metrics: AggregatorMetrics | None = None
    _aggregation_started: float | None = None

    def observe(self, metrics: AggregatorMetrics) -> None:
        self._metrics = metrics

    def load_update(self, task_id: str) -> np.ndarray:
        if self._aggregation_started is None:
            self._aggregation_started = time.perf_counter()
        return super().load_update(task_id)

    def save_state(self, state: dict, closing: ClosedAttempt | None = None) -> None:
        saved = self.load_state()
        before = RoundState.from_dict(saved) if saved else None
        dropped = self._undelivered(before) if before is not None else 0
        super().save_state(state, closing)
        if self._metrics is None or before is None:
            self._aggregation_started = None
            return
        after = RoundState.from_dict(state)
        federation = self.plan.federation_id
        moved = (after.phase, after.round, after.attempt) != (
            before.phase,
            before.round,
            before.attempt,
        )
        if moved and after.phase != Phase.FAILED:  # FAILED keeps the last start time
            self._metrics.phase_seconds.labels(federation, before.phase).observe(
                max(0.0, after.started_at_s - before.started_at_s)
            )
        if dropped and (after.round, after.attempt) != (before.round, before.attempt):
            self._metrics.dropped.labels(federation, before.phase).inc(dropped)
        if before.phase == Phase.TRAINING and closing is not None and closing.aggregated:
            started = self._aggregation_started or time.perf_counter()
            self._metrics.aggregation_seconds.labels(federation).observe(
                time.perf_counter() - started
            )
        self._aggregation_started = None

    def _undelivered(self, state: RoundState) -> int:
        """Sampled silos of `state`'s attempt with no upload, loss report or decline."""
        if state.phase not in (Phase.TRAINING, Phase.GROUPING):
            return 0
        key = {"round_": state.round, "attempt": state.attempt}
        delivered = {s.silo_id for s in self.submissions(**key)}
        delivered |= {r.silo_id for r in self.loss_reports(**key)}
        delivered |= {d.silo_id for d in self.declines(**key)}
        return len(set(state.sampled) - delivered)
