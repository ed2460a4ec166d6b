"""A whole homomorphic federation with the packed preset chosen by the plan: three values
per CKKS slot travel and add like any ciphertexts, and the globals move by the weighted
sum of the silos' updates within the packing's stated error."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from aggregator.protection.he_vault import HeVault
from aggregator.rounds.round_table import Phase
from privacy.he import decrypt_update, get_preset, open_sealed_context
from privacy.pki import FederationPaths, issue_silo
from protos.plan import HeSpec, Plan
from selector.benchmark.generator import SiloData
from silo.policy import SiloPolicy
from tests.silo.conftest import (
    FEDERATION,
    AggregatorFactory,
    SiloConfigFactory,
    four_silo_dataset,
    he_plan_of,
    run_silos,
)

PACKED = "ckks-pack3-8192"
SILOS = ("silo-1", "silo-2", "silo-3")
TIMEOUT_S = 180.0


@pytest.fixture
def tiny_dataset() -> dict[str, SiloData]:
    return four_silo_dataset()


@pytest.fixture
def packed_plan(tiny_plan: Plan, pki: FederationPaths) -> Plan:
    issue_silo(pki.root, "silo-3")
    return he_plan_of(tiny_plan, HeSpec(preset=PACKED, key_custodian="silo-1"))


def test_packed_he_rounds_add_the_weighted_updates_within_the_stated_bound(
    packed_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    recorded_updates: list[tuple[str, np.ndarray]],
) -> None:
    with aggregator(packed_plan) as server:
        policy = SiloPolicy(required_protection="he")
        configs = [silo_config(s, server.port, policy=policy) for s in SILOS]
        outcomes = run_silos(configs, timeout_s=TIMEOUT_S)
        phase = server.wait_until_finished(TIMEOUT_S)
        vault: HeVault = server.machine.protection.vault
        encrypted = [vault.globals(r, 0) for r in range(3)]

    assert outcomes == [0, 0, 0] and phase == Phase.DONE
    assert encrypted[2].vector.manifest.preset == PACKED
    key = serialization.load_pem_private_key(configs[0].pki.key.read_bytes(), None)
    sealed = (configs[0].state_dir / "he-secret-e0.sealed").read_bytes()
    secret = open_sealed_context(key, sealed, federation_id=FEDERATION, silo_id="silo-1",
                                 key_epoch=0)  # fmt: skip
    initial = decrypt_update(secret, encrypted[0].vector)
    final = decrypt_update(secret, encrypted[2].vector)
    deltas = [delta for _, delta in recorded_updates]
    expected = initial.astype(np.float64) + np.sum(deltas, axis=0) / 3
    # The initial global and 2 rounds x 3 silos: 7 terms rounded to the grid, plus noise.
    assert np.abs(final - expected).max() <= (7 + 1) * get_preset(PACKED).step
    assert np.abs(final - initial).max() > 10 * get_preset(PACKED).step
