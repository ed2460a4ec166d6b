import hashlib
import json
from collections import Counter

import numpy as np
import pytest

from protos.errors import InvalidInput
from selector.benchmark.generator import (
    DEFAULT_PREFERENCES,
    SHORT_ANSWERS,
    THREE_GROUPS,
    AnswerStyle,
    PreferenceGroup,
    Preferences,
    group_sizes,
    make_federated_dataset,
)
from selector.data import PairEncoder


def test_same_seed_gives_the_same_federation():
    first = make_federated_dataset(3, 20, 5, seed=11)
    assert first == make_federated_dataset(3, 20, 5, seed=11)
    assert first != make_federated_dataset(3, 20, 5, seed=12)


def test_silos_are_named_and_sized_as_asked():
    data = make_federated_dataset(3, 20, 5, seed=0)
    assert list(data) == ["silo-1", "silo-2", "silo-3"]
    for silo, part in data.items():
        assert len(part.train) == 20 and len(part.test) == 5
        assert all(pair.silo == silo for pair in part.train + part.test)
        assert all(pair.chosen != pair.rejected for pair in part.train)
    assert data["silo-1"].train != data["silo-2"].train


def test_answers_fit_the_default_token_window(tiny_encoder: PairEncoder):
    pairs = [p for part in make_federated_dataset(2, 200, 0, seed=0).values() for p in part.train]
    longest = max(
        len(tiny_encoder.tokenizer(p.prompt, answer)["input_ids"])
        for p in pairs
        for answer in (p.chosen, p.rejected)
    )
    assert longest <= 40  # prompt + answer, special tokens included: nothing is truncated


def test_labels_mostly_follow_the_specificity_attribute():
    pairs = [p for part in make_federated_dataset(2, 300, 0, seed=0).values() for p in part.train]
    vague = ("do the usual things", "figure it out as you go", "try some stuff and see")
    contrasting = [
        p for p in pairs if any(v in p.chosen for v in vague) != any(v in p.rejected for v in vague)
    ]
    specific_wins = sum(not any(v in p.chosen for v in vague) for p in contrasting)
    assert specific_wins / len(contrasting) > 0.75


# --- latent preference groups ------------------------------------------------------------

_POLITE = ("Happy to help!", "Good question!", "Glad you asked.")


def _polite_win_rate(pairs) -> float:
    """Among pairs whose answers differ in tone, how often the polite one was chosen."""
    contrasting = [
        p for p in pairs if p.chosen.startswith(_POLITE) != p.rejected.startswith(_POLITE)
    ]
    return sum(p.chosen.startswith(_POLITE) for p in contrasting) / len(contrasting)


def test_grouped_federation_is_deterministic_per_seed():
    first = make_federated_dataset(6, 20, 5, seed=11, groups=THREE_GROUPS)
    assert first == make_federated_dataset(6, 20, 5, seed=11, groups=THREE_GROUPS)
    assert first != make_federated_dataset(6, 20, 5, seed=12, groups=THREE_GROUPS)


def test_groups_have_unequal_sizes_and_every_silo_belongs_to_one():
    data = make_federated_dataset(10, 20, 5, seed=0, groups=THREE_GROUPS)
    assert Counter(part.group for part in data.values()) == {
        "thorough": 5,
        "blunt": 3,
        "gentle": 2,
    }
    assert all(len(part.train) == 20 and len(part.test) == 5 for part in data.values())
    # Membership is shuffled, not laid out in silo order.
    assert [part.group for part in data.values()] != sorted(
        (part.group for part in data.values()), key=["thorough", "blunt", "gentle"].index
    )


def test_group_sizes_give_every_group_a_silo_and_split_the_rest_by_share():
    assert group_sizes(10, THREE_GROUPS) == [5, 3, 2]
    assert group_sizes(12, THREE_GROUPS) == [6, 4, 2]
    assert group_sizes(3, THREE_GROUPS) == [1, 1, 1]
    assert group_sizes(7, THREE_GROUPS) == [3, 2, 2]


def test_groups_disagree_on_tone_in_their_labels():
    data = make_federated_dataset(10, 300, 0, seed=0, groups=THREE_GROUPS)
    by_group: dict[str, list] = {}
    for part in data.values():
        by_group.setdefault(part.group, []).extend(part.train)
    assert _polite_win_rate(by_group["thorough"]) > 0.7
    assert _polite_win_rate(by_group["gentle"]) > 0.7
    assert _polite_win_rate(by_group["blunt"]) < 0.3


def test_one_default_group_reproduces_the_iid_federation():
    plain = make_federated_dataset(3, 20, 5, seed=4)
    grouped = make_federated_dataset(
        3, 20, 5, seed=4, groups=[PreferenceGroup("everyone", DEFAULT_PREFERENCES)]
    )
    assert [(p.train, p.test) for p in grouped.values()] == [
        (p.train, p.test) for p in plain.values()
    ]
    assert {p.group for p in plain.values()} == {None}
    assert {p.group for p in grouped.values()} == {"everyone"}


@pytest.mark.parametrize(
    ("num_silos", "groups", "message"),
    [
        (2, THREE_GROUPS, "3 preference groups need at least as many silos"),
        (3, [], "at least one preference group"),
        (
            3,
            [PreferenceGroup("a", DEFAULT_PREFERENCES)] * 2,
            "names must be non-empty and distinct",
        ),
        (3, [PreferenceGroup("a", DEFAULT_PREFERENCES, share=0.0)], "'a': share must be positive"),
    ],
)
def test_impossible_groupings_are_refused(num_silos, groups, message):
    with pytest.raises(InvalidInput, match=message):
        make_federated_dataset(num_silos, 10, 0, seed=0, groups=groups)


def test_preferences_are_validated():
    with pytest.raises(InvalidInput, match="4 finite weights"):
        Preferences((1.0, 2.0))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="temperature must be a positive number"):
        Preferences(temperature=0.0)


# --- answer styles -----------------------------------------------------------------------


def _digest(data) -> str:
    rows = [
        [
            silo,
            part.group,
            [[p.prompt, p.chosen, p.rejected, p.silo] for p in part.train + part.test],
        ]
        for silo, part in data.items()
    ]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


@pytest.mark.parametrize(
    ("silos", "train", "test", "seed", "groups", "digest"),
    [
        (
            12,
            256,
            128,
            0,
            THREE_GROUPS,
            "52108f9860c7dabf74fa35b1c3e6cfbe1dcfa60abcae3b7b08f55fae07533e8f",
        ),
        (4, 50, 10, 3, None, "a4d45d15eab2127dfcb87486a38475111d0d33cc0358a81a5de0cf886627faac"),
        (
            10,
            96,
            64,
            1,
            THREE_GROUPS,
            "83721fa28d47ec30b2c2e47da06ed1041ff9bae6fd6692f12169008f951512c9",
        ),
    ],
)
def test_short_answers_are_the_data_they_were_before_answer_styles(
    silos, train, test, seed, groups, digest
):
    # Digests of the generator before answer styles existed (commit f9b58dc): the quality
    # benchmark's and the demo's default data must not move, or their figures would.
    assert _digest(make_federated_dataset(silos, train, test, seed, groups)) == digest
    assert (
        _digest(make_federated_dataset(silos, train, test, seed, groups, SHORT_ANSWERS)) == digest
    )


def test_groups_must_weigh_the_attributes_of_the_answer_style():
    other = AnswerStyle("other", ("a", "b"), lambda rng, prompt, attributes: prompt)
    with pytest.raises(InvalidInput, match="'thorough' weighs .* but other answers have"):
        make_federated_dataset(3, 4, 0, seed=0, groups=THREE_GROUPS, style=other)
    with pytest.raises(InvalidInput, match="other answers need preference groups"):
        make_federated_dataset(3, 4, 0, seed=0, style=other)


def test_preferences_over_other_attributes_need_one_weight_each():
    assert Preferences((1.0, -1.0), attributes=("a", "b")).utility(np.array([1, 1])) == 0.0
    with pytest.raises(InvalidInput, match=r"2 finite weights \('a', 'b'\)"):
        Preferences((1.0, 2.0, 3.0), attributes=("a", "b"))
