"""The offline methods derive each party's σ at the sample rate its trainer samples at."""

from __future__ import annotations

import dataclasses

from fedbiscuit.demo.layout import DemoOptions, demo_plan
from fedbiscuit.quality.methods import METHODS
from selector.benchmark.generator import make_federated_dataset
from selector.model import build_encoder


def test_a_silo_larger_than_the_smallest_spends_at_most_the_budget() -> None:
    dataset = make_federated_dataset(num_silos=3, train_pairs=24, test_pairs=4, seed=0)
    smallest = dataclasses.replace(dataset["silo-1"], train=dataset["silo-1"].train[:16])
    dataset = {**dataset, "silo-1": smallest}
    options = DemoOptions(silos=3, rounds=1, local_steps=1, tiny=True, train_pairs_per_silo=16,
                          expected_batch_size=8, protection="insecure_plaintext")  # fmt: skip
    plan = demo_plan(options)

    outcome = METHODS["FedBis"](plan, build_encoder(plan.selector), dataset, 8.0, 0)

    assert 7.9 < outcome.epsilon <= 8.0 * (1 + 1e-6)
