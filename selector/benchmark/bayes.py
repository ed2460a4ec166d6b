"""What the best possible selectors score on the synthetic benchmark's labels.

A pair's two answers have attribute vectors drawn uniformly among the ordered pairs of
distinct 0/1 vectors (selector/benchmark/generator.py), and a group's people choose the
first with probability p = σ(Δutility / temperature). A selector that knows a group's
utility picks the likelier side and agrees with the label with probability max(p, 1 − p):
averaged over the pairs, the group's Bayes rate, the ceiling of "each silo with its own
selector". One selector for everyone does best by following the population (groups weighted
by their share of silos); its agreement with each group is the ceiling of FedBis there.
Both are exact sums over the attribute pairs, not samples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protos.errors import InvalidInput
from selector.benchmark.generator import PreferenceGroup

__all__ = ["BayesRates", "bayes_rates"]


@dataclass(frozen=True)
class BayesRates:
    """Per group: the agreement of its own best selector and of the population's best one."""

    own: dict[str, float]
    shared: dict[str, float]

    def describe(self) -> str:
        return "; ".join(
            f"{name}: own {self.own[name]:.3f}, one for all {self.shared[name]:.3f}"
            for name in self.own
        )


def _first_wins(group: PreferenceGroup, differences: np.ndarray) -> np.ndarray:
    prefs = group.preferences
    margins = differences @ np.asarray(prefs.weights, dtype=float) / prefs.temperature
    return 1.0 / (1.0 + np.exp(-margins))


def bayes_rates(groups: Sequence[PreferenceGroup]) -> BayesRates:
    """Exact Bayes rates of `groups` (all weighing the same attributes)."""
    if not groups:
        raise InvalidInput("Bayes rates need at least one preference group")
    attributes = {group.preferences.attributes for group in groups}
    if len(attributes) != 1:
        raise InvalidInput("the groups weigh different attributes: not one benchmark")
    size = len(next(iter(attributes)))
    vectors = np.array(list(itertools.product((0.0, 1.0), repeat=size)))
    ordered = np.array(list(itertools.permutations(vectors, 2)))
    first, second = ordered[:, 0], ordered[:, 1]
    wins = {group.name: _first_wins(group, first - second) for group in groups}
    total = math.fsum(group.share for group in groups)
    population = sum(group.share * wins[group.name] for group in groups) / total
    # A tie (p = 1/2 exactly) scores 1/2 whichever side is picked.
    follows = np.where(population > 0.5, 1.0, np.where(population < 0.5, 0.0, 0.5))
    own = {name: float(np.maximum(p, 1 - p).mean()) for name, p in wins.items()}
    shared = {
        name: float((follows * p + (1 - follows) * (1 - p)).mean()) for name, p in wins.items()
    }
    return BayesRates(own, shared)
