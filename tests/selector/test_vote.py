import copy

import pytest
import torch

from protos.errors import InvalidInput
from selector.evaluation import agreement
from selector.model import build_selector
from selector.vote import majority_vote, own_cluster_agreement, selector_logits, vote_agreement


def test_majority_of_signs_decides_regardless_of_confidence():
    # Two selectors mildly prefer a, one is very sure of b: a wins by votes.
    logits = torch.tensor([[0.1, -0.1], [0.2, -0.2], [-9.0, 9.0]])
    assert majority_vote(logits).tolist() == [1.0, 0.0]


def test_even_split_is_broken_by_mean_probability():
    logits = torch.tensor([[3.0, 0.5], [-0.5, -3.0]])
    assert majority_vote(logits).tolist() == [1.0, 0.0]


def test_abstentions_do_not_vote_and_the_rest_decide():
    # A zero logit abstains: one vote for b against none for a.
    logits = torch.tensor([[0.0], [0.0], [-0.01]])
    assert majority_vote(logits).tolist() == [0.0]


def test_all_abstaining_or_mirrored_logits_are_an_exact_tie():
    logits = torch.tensor(
        [
            [0.0, 2.0, 0.3, 1.7],
            [0.0, -2.0, -1.7, -0.3],
            [0.0, 0.0, 1.7, 0.3],
            [0.0, 0.0, -0.3, -1.7],
        ]
    )
    assert majority_vote(logits).tolist() == [0.5, 0.5, 0.5, 0.5]


def test_one_selector_is_its_own_sign():
    assert majority_vote([torch.tensor([1.0, -1.0, 0.0])]).tolist() == [1.0, 0.0, 0.5]


@pytest.mark.parametrize(
    ("logits", "message"),
    [
        (torch.zeros(3), "shaped \\[selectors, pairs\\]"),
        (torch.zeros(0, 4), "shaped \\[selectors, pairs\\]"),
        (torch.tensor([[float("nan")]]), "NaN or infinite"),
    ],
)
def test_malformed_logits_are_refused(logits, message):
    with pytest.raises(InvalidInput, match=message):
        majority_vote(logits)


@pytest.fixture(scope="module")
def selector_and_mirror(tiny_spec):
    """A selector and its exact opposite (head negated): logits are negated pair by pair."""
    model = build_selector(tiny_spec, seed=0)
    with torch.no_grad():
        model.head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    mirror = copy.deepcopy(model)
    with torch.no_grad():
        mirror.head.weight.neg_()
    return model, mirror


def test_vote_of_a_majority_copy_matches_that_selector(
    selector_and_mirror, tiny_encoder, tiny_dataset
):
    model, mirror = selector_and_mirror
    pairs = tiny_dataset["silo-1"].test
    logits = selector_logits([model, mirror], tiny_encoder, pairs, batch_size=5)
    assert logits.shape == (2, len(pairs))
    torch.testing.assert_close(logits[1], -logits[0])
    assert vote_agreement([model, model, mirror], tiny_encoder, pairs) == pytest.approx(
        agreement(model, tiny_encoder, pairs)
    )
    # Two opposite selectors tie on every pair, and every tie scores a half.
    assert vote_agreement([model, mirror], tiny_encoder, pairs) == pytest.approx(0.5)


def test_each_silo_is_scored_by_its_own_cluster_selector(
    selector_and_mirror, tiny_encoder, tiny_dataset
):
    model, mirror = selector_and_mirror
    pairs = {silo: data.test for silo, data in tiny_dataset.items()}
    scores = own_cluster_agreement([model, mirror], {"silo-1": 0, "silo-2": 1}, pairs, tiny_encoder)
    assert scores["silo-1"] == pytest.approx(agreement(model, tiny_encoder, pairs["silo-1"]))
    assert scores["silo-2"] == pytest.approx(agreement(mirror, tiny_encoder, pairs["silo-2"]))
    assert scores["silo-1"] != pytest.approx(scores["silo-2"])


def test_an_ungrouped_silo_or_unknown_cluster_is_refused(
    selector_and_mirror, tiny_encoder, tiny_dataset
):
    model, _ = selector_and_mirror
    pairs = {"silo-1": tiny_dataset["silo-1"].test}
    with pytest.raises(InvalidInput, match="silo 'silo-1' has no cluster"):
        own_cluster_agreement([model], {}, pairs, tiny_encoder)
    with pytest.raises(InvalidInput, match="cluster 2, but there are 1 selectors"):
        own_cluster_agreement([model], {"silo-1": 2}, pairs, tiny_encoder)
