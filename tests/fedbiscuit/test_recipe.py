"""The training recipe the demo on a partner's data and new plans start from."""

from __future__ import annotations

import pytest

from fedbiscuit.recipe import LOCAL_STEPS, MAX_BATCH, PAIRS_PER_ROUND, derive_recipe
from privacy.accounting import DpEvent, PrivacyAccountant
from protos.errors import InvalidInput


def test_batch_is_half_a_silo_within_a_round_of_compute() -> None:
    compute_bound = PAIRS_PER_ROUND // LOCAL_STEPS
    assert derive_recipe(40, 8.0, 1e-5).expected_batch_size == 20
    assert derive_recipe(220, 8.0, 1e-5).expected_batch_size == compute_bound
    assert derive_recipe(100_000, 8.0, 1e-5).expected_batch_size == compute_bound <= MAX_BATCH
    assert derive_recipe(3, 8.0, 1e-5).expected_batch_size == 3


def test_the_derived_noise_spends_the_budget_over_the_planned_participations() -> None:
    recipe = derive_recipe(220, 8.0, 1e-5, rounds=3, participations=4)
    accountant = PrivacyAccountant()
    rate = recipe.expected_batch_size / 220
    accountant.record(DpEvent("dp_sgd", recipe.noise_multiplier, rate, 4 * recipe.local_steps))
    assert accountant.epsilon(1e-5) == pytest.approx(8.0, rel=1e-3)
    assert recipe.rounds == 3


def test_a_silo_too_small_to_sample_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least 2 training pairs"):
        derive_recipe(1, 8.0, 1e-5)
