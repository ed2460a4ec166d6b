"""Shared fixtures: a tiny selector config and plan, and a small benchmark, all built in code."""

from __future__ import annotations

import pytest

from protos.plan import BackboneSpec, DpSpec, LoraSpec, Plan, SelectorSpec, TrainingSpec
from selector.backbone import load_backbone
from selector.benchmark.generator import SiloData, make_federated_dataset
from selector.data import PairEncoder


@pytest.fixture(scope="session")
def tiny_spec() -> SelectorSpec:
    """A 2-layer, 32-wide BERT with rank-4 LoRA on query/value: fast on CPU."""
    return SelectorSpec(
        backbone=BackboneSpec(kind="tiny", seed=0),
        lora=LoraSpec(rank=4, alpha=8.0, target_modules=("query", "value")),
        max_tokens_per_answer=40,
    )


@pytest.fixture(scope="session")
def tiny_plan(tiny_spec: SelectorSpec) -> Plan:
    """Two rounds of two silos on the tiny selector with a fixed noise multiplier."""
    return Plan(
        federation_id="test-fed",
        rounds=2,
        silos_per_round=2,
        min_silos=2,
        round_deadline_s=30.0,
        protection="insecure_plaintext",
        selector=tiny_spec,
        # Test silos are seeded (deterministic tests): an explicit insecure-RNG opt-in.
        dp=DpSpec(
            clip_norm=1.0,
            expected_batch_size=8,
            sample_rate=0.125,  # public; 8 of the 64 pairs of each tiny_dataset silo
            noise_multiplier=1.0,
            allow_insecure_rng=True,
        ),
        training=TrainingSpec(local_steps=2, learning_rate=1e-2, optimizer="adam"),
    )


@pytest.fixture(scope="session")
def tiny_encoder(tiny_spec: SelectorSpec) -> PairEncoder:
    _, tokenizer = load_backbone(tiny_spec.backbone)
    return PairEncoder(tokenizer, tiny_spec.max_tokens_per_answer)


@pytest.fixture(scope="session")
def tiny_dataset() -> dict[str, SiloData]:
    """Benchmark data for silo-1 and silo-2: 64 train and 32 test pairs each, seed 0."""
    return make_federated_dataset(num_silos=2, train_pairs=64, test_pairs=32, seed=0)
