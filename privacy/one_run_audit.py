"""The statistics of a one-run privacy audit (Steinke, Nasr, Jagielski, "Privacy auditing
with one (1) training run", NeurIPS 2023).

Why: the accountant proves an upper bound on ε from the mechanism's parameters; it cannot
see a bug that makes the code do something else (noise skipped for a tensor, a sample rate
that is not the accounted one, clipping skipped). A one-run audit measures from outside:
m canaries, each included in the training data independently with probability 1/2; after
one training run the auditor scores every canary, guesses "in" for the highest scores and
"out" for the lowest (abstaining on the rest), and counts its correct guesses. Under
(ε, δ)-DP the number of correct guesses out of r is dominated by Binomial(r, e^ε/(1+e^ε))
up to a δ term (their Theorem 3), so many correct guesses refute every ε below a bound.

Pure: scores and inclusion bits in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from protos.errors import InvalidInput

__all__ = ["AuditResult", "audit_scores", "epsilon_lower_bound", "p_value"]


def p_value(canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """P[≥ `correct` right out of `guesses`] for an (ε, δ)-DP run with `canaries` canaries:
    the binomial tail at e^ε/(1+e^ε) plus the δ term 2·m·δ·max_i P[v > Bin ≥ v−i]/i."""
    if not 0 <= correct <= guesses <= canaries:
        raise InvalidInput(f"need 0 <= correct {correct} <= guesses {guesses} <= m {canaries}")
    accuracy = 1.0 / (1.0 + math.exp(-epsilon))
    tail = float(stats.binom.sf(correct - 1, guesses, accuracy))
    below = stats.binom.pmf(np.arange(correct - 1, -1, -1), guesses, accuracy)  # v−1, …, 0
    alpha = float(np.max(np.cumsum(below) / np.arange(1, correct + 1))) if correct else 0.0
    return min(1.0, tail + 2 * canaries * delta * alpha)


def epsilon_lower_bound(
    canaries: int, guesses: int, correct: int, delta: float, significance: float
) -> float:
    """The largest ε that `correct` right guesses refute at `significance` (0 if none):
    the run is not (ε, δ)-DP for any ε below it, with confidence 1 − significance."""
    if not 0 < significance < 1:
        raise InvalidInput(f"significance {significance} is not in (0, 1)")
    low, high = 0.0, 1.0
    if p_value(canaries, guesses, correct, low, delta) >= significance:
        return 0.0
    while p_value(canaries, guesses, correct, high, delta) < significance:
        low, high = high, 2 * high
    for _ in range(40):
        middle = (low + high) / 2
        if p_value(canaries, guesses, correct, middle, delta) < significance:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class AuditResult:
    """The best-supported bound over the guess sizes tried (Bonferroni-corrected)."""

    epsilon_lower_bound: float
    confidence: float
    guesses: int
    correct: int


def audit_scores(
    scores: np.ndarray,
    included: np.ndarray,
    delta: float,
    *,
    confidence: float = 0.95,
    guess_fractions: Sequence[float] = (0.02, 0.05, 0.1, 0.2, 0.5),
    rng: np.random.Generator,
) -> AuditResult:
    """Guess from `scores` (higher: more likely included), for each fraction f both "top f·m
    in" alone and "top f·m/2 in, bottom f·m/2 out"; the bound of each is taken at
    significance (1 − confidence) / (number of tries), and the largest is returned.

    `rng` only breaks ties between equal scores (so an all-zero score guesses at random).
    """
    scores, included = np.asarray(scores, dtype=np.float64), np.asarray(included, dtype=bool)
    m = scores.size
    if included.shape != scores.shape or m == 0:
        raise InvalidInput("scores and inclusion bits must be equally long and non-empty")
    order = np.lexsort((rng.random(m), -scores))  # by score descending, ties at random
    tries = [(f, both) for f in guess_fractions for both in (False, True)]
    significance = (1 - confidence) / len(tries)
    best = AuditResult(0.0, confidence, 0, 0)
    for fraction, both_sides in tries:
        size = max(1, int(fraction * m))
        if both_sides:
            top, bottom = order[: size // 2], order[m - (size - size // 2) :]
            correct = int(included[top].sum() + (~included[bottom]).sum())
        else:
            correct = int(included[order[:size]].sum())
        bound = epsilon_lower_bound(m, size, correct, delta, significance)
        if bound > best.epsilon_lower_bound:
            best = AuditResult(bound, confidence, size, correct)
    return best
