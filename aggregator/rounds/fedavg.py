"""FedAvg and FedBiscuit's aggregate-on-model over adapter deltas: the only arithmetic the
aggregator does on updates.

Pure and deterministic (float64 accumulation, float32 result) so a restarted aggregator that
re-aggregates the same uploads produces bit-identical globals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from protos.errors import InvalidInput


def fedavg(
    globals_vec: np.ndarray, deltas: Sequence[np.ndarray], weights: Sequence[float]
) -> np.ndarray:
    """New globals = globals + sum_i w_i * delta_i / sum_i w_i (weights > 0, one per delta)."""
    if not deltas:
        raise InvalidInput("fedavg needs at least one delta")
    if len(deltas) != len(weights):
        raise InvalidInput(f"fedavg got {len(deltas)} deltas but {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise InvalidInput("fedavg weights must be finite and positive")
    total = np.zeros(globals_vec.shape, dtype=np.float64)
    for index, delta in enumerate(deltas):
        if delta.shape != globals_vec.shape:
            raise InvalidInput(
                f"delta {index} has shape {delta.shape}, globals have {globals_vec.shape}"
            )
        total += w[index] * delta.astype(np.float64)
    return add_summed_deltas(globals_vec, total, float(w.sum()))


def aggregate_on_model(
    globals_vec: np.ndarray, deltas: Sequence[np.ndarray], cluster_size: int
) -> np.ndarray:
    """FedBiscuit's "aggregate on model": globals + sum_i delta_i / cluster_size.

    Each participating silo of a cluster of `cluster_size` silos weighs 1/cluster_size; the
    weight of the cluster's silos that did not take part stays on the previous global (the
    reference implementation's aggregation after warm-up). Needs 1 ≤ len(deltas) ≤ size.
    """
    if not deltas:
        raise InvalidInput("aggregate_on_model needs at least one delta")
    if not 1 <= len(deltas) <= cluster_size:
        raise InvalidInput(
            f"aggregate_on_model got {len(deltas)} deltas for a cluster of {cluster_size} silos"
        )
    total = np.zeros(globals_vec.shape, dtype=np.float64)
    for index, delta in enumerate(deltas):
        if delta.shape != globals_vec.shape:
            raise InvalidInput(
                f"delta {index} has shape {delta.shape}, globals have {globals_vec.shape}"
            )
        total += delta.astype(np.float64)
    return add_summed_deltas(globals_vec, total, cluster_size)


def add_summed_deltas(globals_vec: np.ndarray, delta_sum: np.ndarray, divisor: float) -> np.ndarray:
    """globals + delta_sum / divisor: both rules above, and the masked path, where the
    aggregator only ever learns the (secure) sum of the deltas, never one of them.

    FedAvg with uniform weights divides by the number of deltas; aggregate-on-model by the
    cluster's size."""
    if delta_sum.shape != globals_vec.shape:
        raise InvalidInput(f"delta sum has shape {delta_sum.shape}, globals {globals_vec.shape}")
    if not divisor > 0:
        raise InvalidInput(f"the divisor of a delta sum must be positive, got {divisor}")
    total = np.asarray(delta_sum, dtype=np.float64)
    return (globals_vec.astype(np.float64) + total / divisor).astype(np.float32)
