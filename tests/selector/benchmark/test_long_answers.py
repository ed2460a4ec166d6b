"""The long-answer variant: 3-6 sentences, attributes where the docstring puts them, labels
that follow each group's taste, seeded."""

import itertools
import re
from collections import Counter

import numpy as np
import pytest

from protos.errors import InvalidInput
from selector.benchmark.generator import THREE_GROUPS, answer_phrases, questions
from selector.benchmark.long_answers import (
    LONG_ATTRIBUTES,
    LONG_GROUPS,
    LONG_SILOS,
    compose_long_answer,
    make_long_dataset,
)
from selector.data import PairEncoder
from selector.token_budget import length_statistics, suggested_window

_CAVEATS = ("That said,", "One caveat:", "Be careful, though,")
_WARM = ("Happy to help", "That is a great thing", "Glad you asked")
_EXAMPLE_LEADS = ("For example,", "For instance,", "As an example,")


def _sentences(answer: str) -> list[str]:
    return re.split(r"(?<=\.) ", answer)


@pytest.fixture(scope="module")
def federation():
    return make_long_dataset(LONG_SILOS, 300, 20, seed=0)


def test_same_seed_gives_the_same_long_federation():
    first = make_long_dataset(3, 10, 5, seed=7)
    assert first == make_long_dataset(3, 10, 5, seed=7)
    assert first != make_long_dataset(3, 10, 5, seed=8)


def test_nine_silos_fall_in_three_equal_groups(federation):
    assert Counter(part.group for part in federation.values()) == {
        "examples": 3,
        "caveats": 3,
        "brevity": 3,
    }


def test_every_answer_has_its_attributes_where_the_docstring_says():
    rng = np.random.default_rng(0)
    for prompt in questions():
        phrases = answer_phrases(prompt)
        for values in itertools.product((0, 1), repeat=len(LONG_ATTRIBUTES)):
            specific, warm, example, caveat, concise = map(bool, values)
            sentences = _sentences(compose_long_answer(rng, prompt, np.array(values)))
            assert len(sentences) == 3 + example + 2 * (not concise)
            assert sentences[0].startswith(_WARM) == warm
            assert (phrases.advice in sentences[1]) == specific
            assert sentences[-1].startswith(_CAVEATS) == caveat
            with_example = [i for i, s in enumerate(sentences) if s.startswith(_EXAMPLE_LEADS)]
            if example:
                # In the middle: after the advice, before the close, between elaborations.
                assert with_example == [2 if concise else 3]
                assert phrases.example in sentences[with_example[0]]
            else:
                assert with_example == []


def test_each_group_rewards_its_own_attribute(federation):
    def win_rate(group: str, has) -> float:
        pairs = [p for d in federation.values() if d.group == group for p in d.train]
        contrasting = [p for p in pairs if has(p.chosen) != has(p.rejected)]
        return sum(has(p.chosen) for p in contrasting) / len(contrasting)

    def example(text: str) -> bool:
        return any(lead in text for lead in _EXAMPLE_LEADS)

    def caveat(text: str) -> bool:
        return _sentences(text)[-1].startswith(_CAVEATS)

    def short(text: str) -> bool:
        return len(_sentences(text)) <= 4

    # Each group picks its own attribute's side ~87% of the time, the others ~30-40%.
    for group, has in (("examples", example), ("caveats", caveat), ("brevity", short)):
        assert win_rate(group, has) > 0.8
        assert all(
            win_rate(other, has) < 0.45 for other in {"examples", "caveats", "brevity"} - {group}
        )


def test_long_answers_outgrow_the_short_benchmarks_window(federation, tiny_encoder: PairEncoder):
    pairs = [p for part in federation.values() for p in part.train[:40]]
    stats = length_statistics(pairs, tiny_encoder.tokenizer)
    assert stats.answer_median > 32  # the short benchmark's window would cut most answers
    assert 32 < suggested_window(stats, 128) <= 128


def test_long_answers_refuse_the_wrong_attributes():
    with pytest.raises(InvalidInput, match="long answers have 5 attributes"):
        compose_long_answer(np.random.default_rng(0), questions()[0], np.ones(4))
    with pytest.raises(InvalidInput, match="weighs .* but long answers have"):
        make_long_dataset(3, 4, 0, seed=0, groups=THREE_GROUPS)


def test_the_groups_are_the_documented_ones():
    assert [g.name for g in LONG_GROUPS] == ["examples", "caveats", "brevity"]
    assert {g.share for g in LONG_GROUPS} == {1.0}
