"""Exact Bayes rates, checked against the documented figures and against sampled labels."""

import numpy as np
import pytest

from protos.errors import InvalidInput
from selector.benchmark.bayes import bayes_rates
from selector.benchmark.generator import (
    THREE_GROUPS,
    AnswerStyle,
    PreferenceGroup,
    Preferences,
    make_federated_dataset,
)
from selector.benchmark.long_answers import LONG_GROUPS


def test_the_short_benchmarks_rates_are_the_documented_ones():
    rates = bayes_rates(THREE_GROUPS)
    assert rates.own == pytest.approx(
        {"thorough": 0.932, "blunt": 0.923, "gentle": 0.924}, abs=5e-4
    )
    assert rates.shared == pytest.approx(
        {"thorough": 0.927, "blunt": 0.601, "gentle": 0.608}, abs=5e-4
    )


def test_the_long_benchmarks_rates_are_the_documented_ones():
    rates = bayes_rates(LONG_GROUPS)
    assert rates.own == pytest.approx(
        {"examples": 0.828, "caveats": 0.828, "brevity": 0.835}, abs=5e-4
    )
    assert rates.shared == pytest.approx(
        {"examples": 0.594, "caveats": 0.594, "brevity": 0.695}, abs=5e-4
    )
    assert "brevity: own 0.835, one for all 0.695" in rates.describe()


# Answers that spell their attributes, so sampled labels can be scored by the exact rule.
_SPELLED = AnswerStyle(
    "spelled", ("a", "b", "c"), lambda rng, prompt, attributes: "".join(map(str, attributes))
)
_GROUPS = (
    PreferenceGroup("x", Preferences((1.0, 0.5, -1.0), 0.6, ("a", "b", "c")), share=2.0),
    PreferenceGroup("y", Preferences((1.0, -1.0, 1.0), 0.6, ("a", "b", "c"))),
)


def test_exact_rates_match_the_labels_the_generator_draws():
    data = make_federated_dataset(3, 4000, 0, seed=5, groups=_GROUPS, style=_SPELLED)
    rates = bayes_rates(_GROUPS)
    weights = {g.name: np.array(g.preferences.weights) for g in _GROUPS}
    for part in data.values():
        chosen = np.array([[int(c) for c in p.chosen] for p in part.train], dtype=float)
        rejected = np.array([[int(c) for c in p.rejected] for p in part.train], dtype=float)
        own = (chosen - rejected) @ weights[part.group]
        agree = np.mean(np.where(own == 0, 0.5, own > 0))
        assert agree == pytest.approx(rates.own[part.group], abs=0.02)


def test_groups_over_different_attributes_or_none_are_refused():
    with pytest.raises(InvalidInput, match="at least one preference group"):
        bayes_rates([])
    with pytest.raises(InvalidInput, match="weigh different attributes"):
        bayes_rates([*THREE_GROUPS, *LONG_GROUPS])
