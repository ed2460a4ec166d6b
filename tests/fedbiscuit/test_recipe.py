"""The training recipe the demo on a partner's data and new plans start from."""

from __future__ import annotations

import pytest

from fedbiscuit.demo.layout import DemoOptions, demo_plan, with_data_recipe
from fedbiscuit.recipe import (
    LOCAL_STEPS,
    MAX_BATCH,
    PAIRS_PER_ROUND,
    derive_recipe,
    top_layer_targets,
)
from privacy.accounting import DpEvent, PrivacyAccountant
from protos.errors import InvalidInput
from selector.data import PreferencePair
from selector.model import adapter_state, build_selector


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


def test_adapters_go_on_the_last_encoder_layer_only() -> None:
    assert top_layer_targets(6) == (
        "layer.5.attention.self.query",
        "layer.5.attention.self.value",
    )
    with pytest.raises(InvalidInput, match="at least one layer"):
        top_layer_targets(0)


def test_a_partners_data_gets_a_selector_that_trains_only_the_last_layer_and_head() -> None:
    pairs = [PreferencePair(f"Human: hi {i}", "a kind answer", "a rude one") for i in range(8)]
    options, _ = with_data_recipe(DemoOptions(tiny=True, train_pairs_per_silo=8), pairs)

    trained = adapter_state(build_selector(demo_plan(options).selector, seed=0))

    assert options.lora_targets == top_layer_targets(2)
    assert {name.split(".lora_")[0] for name in trained} == {
        "backbone.encoder.layer.1.attention.self.query",
        "backbone.encoder.layer.1.attention.self.value",
        "head.weight",
    }
