"""The oracle reads back the attributes an answer was built with and judges by utilities."""

import itertools
import math

import numpy as np
import pytest

from protos.errors import InvalidInput
from selector.alignment.win_rate import win_rate
from selector.benchmark.generator import (
    DEFAULT_PREFERENCES,
    THREE_GROUPS,
    PreferenceGroup,
    compose_answer,
    questions,
)
from selector.benchmark.oracle import OracleJudge, read_attributes


def test_every_composed_answer_reads_back_its_attributes_even_lower_cased():
    rng = np.random.default_rng(0)
    for prompt in questions():
        for attributes in itertools.product((0, 1), repeat=4):
            answer = compose_answer(rng, prompt, np.array(attributes))
            assert read_attributes(prompt, answer).tolist() == list(attributes)
            assert read_attributes(prompt, answer.lower()).tolist() == list(attributes)


def test_another_questions_advice_is_not_specific_and_garbage_has_no_attributes():
    rice, bread = questions()[0], questions()[2]
    bread_answer = compose_answer(np.random.default_rng(1), bread, np.array([1, 1, 1, 1]))

    assert read_attributes(rice, bread_answer).tolist() == [0, 1, 1, 0]
    assert read_attributes(rice, "lemon lemon for for").tolist() == [0, 0, 0, 0]


def test_a_prompt_outside_the_benchmark_is_refused():
    with pytest.raises(InvalidInput, match="not one of the benchmark's questions"):
        read_attributes("What is the capital of France?", "Paris.")


def test_the_population_preference_is_the_share_weighted_bradley_terry_probability():
    prompt = questions()[0]
    rng = np.random.default_rng(2)
    specific_polite = compose_answer(rng, prompt, np.array([1, 1, 0, 0]))
    specific_curt = compose_answer(rng, prompt, np.array([1, 0, 0, 0]))
    judge = OracleJudge(THREE_GROUPS)

    by_group = judge.group_preferences(prompt, specific_polite, specific_curt)

    # Politeness: thorough +1, blunt -1.5, gentle +1.5 utility; temperatures 0.3.
    expected = {"thorough": 1.0 / 0.3, "blunt": -1.5 / 0.3, "gentle": 1.5 / 0.3}
    for name, logit in expected.items():
        assert by_group[name] == pytest.approx(1 / (1 + math.exp(-logit)))
    # Shares 3:2:1 of the population.
    population = (3 * by_group["thorough"] + 2 * by_group["blunt"] + by_group["gentle"]) / 6
    assert judge.preference(prompt, specific_polite, specific_curt) == pytest.approx(population)
    one = OracleJudge((PreferenceGroup("all", DEFAULT_PREFERENCES),))
    assert one.preference(prompt, specific_curt, specific_curt) == 0.5


def test_the_win_rate_interval_is_seeded_and_brackets_the_mean():
    scores = [1.0] * 30 + [0.0] * 10 + [0.5] * 10

    first, again = win_rate(scores, seed=1), win_rate(scores, seed=1)

    assert first == again and first.mean == pytest.approx(0.7)
    assert first.ci95[0] < 0.7 < first.ci95[1] and first.comparisons == 50
    with pytest.raises(InvalidInput, match=r"\[0, 1\]"):
        win_rate([1.5], seed=0)
