"""The quality benchmark, shrunk to seconds: every method's row, sane values, one verdict."""

from __future__ import annotations

import math

import pytest
import torch

from fedbiscuit.quality.comparison import (
    QualityOptions,
    format_table,
    mean_probability_agreement,
    run_quality,
    target_verdict,
)
from fedbiscuit.quality.methods import METHODS
from protos.errors import InvalidInput
from selector.vote import majority_vote

OPTIONS = QualityOptions(
    backbone="tiny", silos=3, clusters=2, rounds=3, local_steps=1, train_pairs=16, test_pairs=8
)


@pytest.fixture(scope="module")
def rows():
    return run_quality(OPTIONS, log=lambda line: None)


def test_every_method_runs_without_and_with_dp(rows):
    assert [(row.method, row.dp) for row in rows] == [
        (method, dp) for method in METHODS for dp in (False, True)
    ]


def test_agreements_are_fractions_over_every_silos_held_out_pairs(rows):
    for row in rows:
        result = row.agreement
        assert result.pairs == OPTIONS.silos * OPTIONS.test_pairs
        assert sorted(result.per_silo) == ["silo-1", "silo-2", "silo-3"]
        assert all(0.0 <= value <= 1.0 for value in result.per_silo.values())
        assert result.worst_silo == min(result.per_silo.values())


def test_dp_runs_spend_at_most_the_budget_and_the_others_nothing(rows):
    for row in rows:
        if row.dp:
            assert 0 < row.epsilon <= OPTIONS.epsilon * (1 + 1e-6)
        else:
            assert math.isinf(row.epsilon)


def test_fedbiscuit_groups_every_silo_into_balanced_clusters(rows):
    for row in (r for r in rows if r.method == "FedBiscuit"):
        (grouping,) = row.outcome.groupings  # warm-up takes rounds 0-1, one grouping at 2
        assert row.outcome.clusters == grouping
        sizes = sorted(list(grouping.values()).count(k) for k in range(OPTIONS.clusters))
        assert sizes == [1, 2]


def test_the_table_has_a_line_per_run_and_the_targets_verdict(rows):
    table = format_table(rows)
    for method in METHODS:
        assert sum(line.startswith(method + " ") for line in table.splitlines()) == 2
    sentence, met = target_verdict(rows)
    assert table.endswith(sentence) and sentence.startswith("target (DP)")
    assert isinstance(met, bool)


def test_an_unknown_method_is_named():
    with pytest.raises(InvalidInput, match="unknown method 'FedProx'"):
        run_quality(QualityOptions(backbone="tiny", methods=("FedProx",)), log=lambda line: None)


def test_the_mean_probability_diagnostic_can_overrule_a_confident_minority():
    # Pair 1: two selectors lean weakly to the chosen side, one strongly against: the vote
    # says chosen, the mean probability says rejected. Pair 2: mirrored logits tie (1/2).
    logits = torch.tensor([[0.1, 2.0], [0.1, -2.0], [-5.0, 0.0]])
    assert mean_probability_agreement(logits) == pytest.approx((0.0 + 0.5) / 2)
    assert float(majority_vote(logits).mean()) == pytest.approx((1.0 + 0.5) / 2)
