"""Balanced assignment of silos to K clusters from their (DP-noised) loss on each selector.

FedBiscuit's grouping step: after every silo has reported how well each of the K selectors
fits its data, the aggregator puts the silos into K disjoint clusters whose sizes differ by
at most one (so no selector is trained by a crowd while another starves). Two methods:

- `greedy_assignment`: the procedure of the paper's reference implementation (Wu et al.,
  "Towards Federated RLHF with Aggregated Client Preference for LLMs", ICLR 2025; the
  grouping step of FederatedScope's `LLMMultiLoRAServer.check_and_grouping`). Every
  unassigned silo proposes to its lowest-loss cluster that is still open; the open cluster
  with the most proposals (ties: lowest index) closes with ceil(unassigned / open clusters)
  of them; the silos it turned away propose to their next-best open cluster, and so on
  until every cluster is closed. One deliberate difference: the reference keeps the
  proposals that arrived first from a randomly shuffled silo order, we keep those with the
  lowest loss on that cluster (ties: lowest silo index), so the function is deterministic
  and needs no randomness, and a silo that fits a cluster better is not displaced by luck.
- `optimal_assignment`: the balanced assignment with the least total loss, solved exactly
  as a min-cost perfect matching (scipy's `linear_sum_assignment`) between silos and
  capacity slots. It is never worse than the greedy one on the same matrix.

Inputs are rows = silos (in the caller's order), columns = clusters. Losses may be any
finite floats (DP noise can make them negative). Results are a tuple giving, for each silo
row, its cluster index. Pure functions: no I/O, no randomness, the input is not modified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from protos.errors import InvalidInput

AssignmentMethod = Literal["greedy", "optimal"]
"""How the plan asks the aggregator to group silos."""

Assignment = tuple[int, ...]
"""`assignment[i]` is the cluster of silo row i."""

__all__ = [
    "Assignment",
    "AssignmentMethod",
    "assign_clusters",
    "cluster_members",
    "cluster_sizes",
    "greedy_assignment",
    "optimal_assignment",
    "total_loss",
]


def _validated(losses: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    try:
        matrix = np.array(losses, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput("loss matrix must be a rectangular array of numbers") from None
    if matrix.ndim != 2:
        raise InvalidInput(
            f"loss matrix must be 2-D (silos x clusters), got {matrix.ndim} dimension(s)"
        )
    silos, clusters = matrix.shape
    if clusters < 1:
        raise InvalidInput("loss matrix has no clusters (columns): K must be at least 1")
    if silos < clusters:
        raise InvalidInput(
            f"cannot make {clusters} non-empty clusters from {silos} silo(s): "
            "K must not exceed the number of silos"
        )
    bad = np.argwhere(~np.isfinite(matrix))
    if len(bad):
        row, column = (int(i) for i in bad[0])
        raise InvalidInput(
            f"loss of silo row {row} on cluster {column} is {matrix[row, column]}: "
            "every loss must be a finite number"
        )
    return matrix


def _capacities(silos: int, clusters: int) -> tuple[int, int]:
    """(q, r): every cluster gets q or q + 1 silos, exactly r of them get q + 1."""
    return divmod(silos, clusters)


def greedy_assignment(losses: np.ndarray | Sequence[Sequence[float]]) -> Assignment:
    """The paper's greedy grouping (see the module docstring); sizes differ by at most one."""
    matrix = _validated(losses)
    silos, clusters = matrix.shape
    # Each silo's clusters from best to worst; a stable sort breaks equal losses by index.
    preferences = np.argsort(matrix, axis=1, kind="stable")
    next_choice = np.zeros(silos, dtype=np.int64)
    open_clusters = set(range(clusters))
    proposals: dict[int, list[int]] = {k: [] for k in range(clusters)}
    assignment = np.full(silos, -1, dtype=np.int64)
    proposing = list(range(silos))
    unassigned = silos
    while open_clusters:
        for silo in proposing:
            while int(preferences[silo, next_choice[silo]]) not in open_clusters:
                next_choice[silo] += 1
            proposals[int(preferences[silo, next_choice[silo]])].append(silo)
        capacity = -(-unassigned // len(open_clusters))  # ceil
        # The fullest open cluster closes first; max() keeps the lowest index among equals.
        closing = max(sorted(open_clusters), key=lambda k: len(proposals[k]))
        ranked = sorted(proposals[closing], key=lambda silo: (matrix[silo, closing], silo))
        kept, proposing = ranked[:capacity], ranked[capacity:]
        assignment[kept] = closing
        unassigned -= len(kept)
        open_clusters.remove(closing)
        for silo in proposing:  # turned away: their next proposal goes further down the list
            next_choice[silo] += 1
    return tuple(int(k) for k in assignment)


def optimal_assignment(losses: np.ndarray | Sequence[Sequence[float]]) -> Assignment:
    """The balanced assignment with minimum total loss (exact; ties resolved by scipy).

    With N = qK + r silos, each cluster has q "required" slots and one "optional" slot.
    K − r dummy silos, which may only sit in optional slots at no cost, square the problem,
    so a perfect matching fills every required slot and leaves exactly r optional slots to
    real silos: every cluster gets q or q + 1 silos. A silo costs the same in any slot of
    a cluster.
    """
    matrix = _validated(losses)
    silos, clusters = matrix.shape
    q, r = _capacities(silos, clusters)
    slot_cluster = np.concatenate(
        [np.repeat(np.arange(clusters), q), np.arange(clusters) if r else np.array([], int)]
    )
    cost = matrix[:, slot_cluster]
    if r:
        dummies = np.full((clusters - r, len(slot_cluster)), np.inf)
        dummies[:, clusters * q :] = 0.0
        cost = np.vstack([cost, dummies])
    rows, slots = linear_sum_assignment(cost)
    assignment = np.full(silos, -1, dtype=np.int64)
    real = rows < silos
    assignment[rows[real]] = slot_cluster[slots[real]]
    return tuple(int(k) for k in assignment)


def assign_clusters(
    losses: np.ndarray | Sequence[Sequence[float]], method: AssignmentMethod
) -> Assignment:
    """The plan's chosen method, by name."""
    if method == "greedy":
        return greedy_assignment(losses)
    if method == "optimal":
        return optimal_assignment(losses)
    raise InvalidInput(f"unknown assignment method {method!r}: use 'greedy' or 'optimal'")


def total_loss(losses: np.ndarray | Sequence[Sequence[float]], assignment: Assignment) -> float:
    """Sum over silos of the loss on the cluster each is assigned to."""
    matrix = _validated(losses)
    if len(assignment) != matrix.shape[0]:
        raise InvalidInput(
            f"assignment covers {len(assignment)} silos, the loss matrix has {matrix.shape[0]}"
        )
    clusters = np.asarray(assignment, dtype=np.int64)
    if ((clusters < 0) | (clusters >= matrix.shape[1])).any():
        raise InvalidInput(f"assignment names a cluster outside 0..{matrix.shape[1] - 1}")
    return float(matrix[np.arange(matrix.shape[0]), clusters].sum())


def cluster_members(assignment: Assignment, clusters: int) -> list[list[int]]:
    """Silo rows of each cluster, in row order."""
    members: list[list[int]] = [[] for _ in range(clusters)]
    for silo, cluster in enumerate(assignment):
        members[cluster].append(silo)
    return members


def cluster_sizes(assignment: Assignment, clusters: int) -> list[int]:
    """How many silos each cluster holds."""
    return [len(m) for m in cluster_members(assignment, clusters)]
