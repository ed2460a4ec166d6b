"""Win rate of one policy over another from per-comparison scores, with a 95% interval.

A score is in [0, 1]: 1 a win, 0 a loss, 1/2 a tie, or a probability (the oracle's share
of people preferring the tuned answer). Scores are not Bernoulli, so the interval is a
seeded percentile bootstrap over the comparisons rather than Wilson's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from protos.errors import InvalidInput

__all__ = ["WinRate", "win_rate"]


@dataclass(frozen=True)
class WinRate:
    mean: float
    ci95: tuple[float, float]
    comparisons: int


def win_rate(scores: Sequence[float], seed: int, resamples: int = 2000) -> WinRate:
    """The mean score and its 2.5–97.5% bootstrap percentile interval."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise InvalidInput("a win rate needs at least one comparison")
    if not np.all((values >= 0) & (values <= 1)):
        raise InvalidInput("win-rate scores must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return WinRate(float(values.mean()), (float(low), float(high)), len(values))
