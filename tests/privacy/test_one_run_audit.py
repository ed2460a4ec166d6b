"""The one-run audit's statistics: correct guesses refute an ε only when they are too many."""

from __future__ import annotations

import numpy as np
import pytest

from privacy.one_run_audit import audit_scores, epsilon_lower_bound, p_value
from protos.errors import InvalidInput


def test_chance_level_guessing_refutes_nothing():
    assert epsilon_lower_bound(1000, 200, 100, 1e-5, 0.05) == 0.0


def test_more_correct_guesses_refute_more_epsilon():
    bounds = [epsilon_lower_bound(1000, 200, v, 1e-5, 0.05) for v in (150, 180, 200)]
    assert 0 < bounds[0] < bounds[1] < bounds[2]
    # All 200 right: the binomial tail alone needs e^ε/(1+e^ε) >= 0.05^(1/200).
    assert bounds[2] <= np.log(0.05 ** (1 / 200) / (1 - 0.05 ** (1 / 200)))


def test_the_p_value_at_the_bound_is_the_significance():
    bound = epsilon_lower_bound(1000, 100, 95, 1e-5, 0.05)
    assert p_value(1000, 100, 95, bound, 1e-5) < 0.05 <= p_value(1000, 100, 95, bound + 0.01, 1e-5)


def test_delta_weakens_the_bound():
    assert epsilon_lower_bound(1000, 200, 190, 1e-3, 0.05) < epsilon_lower_bound(
        1000, 200, 190, 1e-9, 0.05
    )


def test_scores_that_separate_the_canaries_give_a_bound_random_ones_do_not():
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    separated = audit_scores(included + 0.1 * rng.random(1000), included, 1e-5, rng=rng)
    random = audit_scores(rng.random(1000), included, 1e-5, rng=rng)
    assert separated.epsilon_lower_bound > 3 and separated.correct == separated.guesses
    assert random.epsilon_lower_bound < 0.5
    with pytest.raises(InvalidInput):
        audit_scores(np.zeros(3), np.zeros(2, bool), 1e-5, rng=rng)
