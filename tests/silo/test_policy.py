"""A silo refuses plans its operator did not agree to, naming both sides of the disagreement.

Whether it agrees to the plan's protection mode: tests/silo/upload/test_admission.py."""

from __future__ import annotations

import pytest

from protos.errors import PolicyViolation
from protos.plan import BackboneSpec, DpSpec, Plan, SelectorSpec, TrainingSpec
from silo.policy import (
    PrivacyBudget,
    SiloPolicy,
    check_noise_multiplier,
    check_plan,
    check_round_epsilon,
)

BUDGET = PrivacyBudget(epsilon=4.0, delta=1e-5)
PERMISSIVE = SiloPolicy(allow_insecure_plaintext=True)


def _plan(**changes: object) -> Plan:
    fields = {"protection": "insecure_plaintext", "dp": DpSpec(sample_rate=0.1), **changes}
    return Plan(federation_id="fed-a", **fields)


def test_plan_delta_above_the_budget_delta_is_refused() -> None:
    with pytest.raises(PolicyViolation, match=r"plan\.delta is 0\.001 but budget\.delta is 1e-05"):
        check_plan(PERMISSIVE, _plan(delta=1e-3), BUDGET)


def test_fixed_noise_below_the_floor_is_refused() -> None:
    plan = _plan(dp=DpSpec(noise_multiplier=0.3, sample_rate=0.1))

    with pytest.raises(
        PolicyViolation,
        match=r"plan\.dp\.noise_multiplier is 0\.3 but policy\.min_noise_multiplier is 0\.5",
    ):
        check_plan(PERMISSIVE, plan, BUDGET)


def test_backbone_outside_the_allowed_list_is_refused() -> None:
    policy = SiloPolicy(allow_insecure_plaintext=True, allowed_backbones=["tiny"])
    plan = _plan(selector=SelectorSpec(backbone=BackboneSpec(kind="minilm")))

    with pytest.raises(PolicyViolation, match=r"plan\.selector\.backbone\.kind is 'minilm'"):
        check_plan(policy, plan, BUDGET)


def test_a_local_backbone_folder_needs_the_silo_operators_consent() -> None:
    local = BackboneSpec(kind="local", path="/models/encoder", sha256="0" * 64)
    plan = _plan(selector=SelectorSpec(backbone=local))

    with pytest.raises(PolicyViolation, match=r"plan\.selector\.backbone\.kind is 'local'"):
        check_plan(PERMISSIVE, plan, BUDGET)
    consenting = SiloPolicy(allow_insecure_plaintext=True, allowed_backbones=["local"])
    check_plan(consenting, plan, BUDGET)


def test_too_many_rounds_or_local_steps_are_refused() -> None:
    policy = SiloPolicy(allow_insecure_plaintext=True, max_rounds=2, max_local_steps_per_round=3)

    with pytest.raises(PolicyViolation, match=r"plan\.rounds is 3 but policy\.max_rounds is 2"):
        check_plan(policy, _plan(rounds=3), BUDGET)
    with pytest.raises(
        PolicyViolation,
        match=r"plan\.training\.local_steps is 5 but policy\.max_local_steps_per_round is 3",
    ):
        check_plan(policy, _plan(rounds=2, training=TrainingSpec(local_steps=5)), BUDGET)


def test_derived_noise_below_the_floor_names_its_source() -> None:
    with pytest.raises(PolicyViolation, match=r"derived noise multiplier is 0\.2"):
        check_noise_multiplier(SiloPolicy(), 0.2, "derived noise multiplier")


def test_round_costing_more_than_the_per_round_cap_is_refused() -> None:
    policy = SiloPolicy(max_epsilon_per_round=0.5)

    check_round_epsilon(policy, 1.0, 1.4)
    with pytest.raises(PolicyViolation, match=r"policy\.max_epsilon_per_round is 0\.5"):
        check_round_epsilon(policy, 1.0, 1.6)


def test_a_plan_whose_sample_rate_would_reveal_the_silo_size_is_refused() -> None:
    plan = _plan(dp=DpSpec())  # q = expected_batch_size / N: the ledger would reveal N

    with pytest.raises(PolicyViolation, match="policy.allow_revealing_dataset_size is false"):
        check_plan(PERMISSIVE, plan, BUDGET)
    check_plan(PERMISSIVE.model_copy(update={"allow_revealing_dataset_size": True}), plan, BUDGET)
