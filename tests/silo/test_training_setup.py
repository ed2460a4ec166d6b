"""build_training: the sigma a silo trains with fits its budget and its policy."""

from __future__ import annotations

import pytest

from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.budget_guard import BudgetGuard
from protos.errors import BudgetExceeded, PolicyViolation
from protos.plan import BackboneSpec, LoraSpec, Plan, SelectorSpec
from selector.causal_lm import CausalLMSelector
from selector.model import adapter_state, build_selector
from silo.config import SiloConfig
from silo.training_setup import TrainingSetup, build_training
from tests.silo.conftest import SiloConfigFactory


def _with_derived_noise(plan: Plan) -> Plan:
    return plan.model_copy(update={"dp": plan.dp.model_copy(update={"noise_multiplier": None})})


def _fresh_silo(
    tiny_plan: Plan, silo_config: SiloConfigFactory
) -> tuple[Plan, SiloConfig, TrainingSetup, BudgetGuard]:
    """A silo with budget epsilon 3 under `tiny_plan` with derived noise: the plan, its config,
    its first training set-up and its budget guard, nothing spent yet."""
    plan = _with_derived_noise(tiny_plan)
    config = silo_config("silo-1", 1, epsilon=3.0)
    guard = BudgetGuard(PrivacyAccountant(), config.budget.epsilon, plan.delta)
    return plan, config, build_training(config, plan), guard


def test_derived_noise_lets_the_silo_afford_every_planned_round(
    tiny_plan: Plan, silo_config: SiloConfigFactory
) -> None:
    plan, config, training, guard = _fresh_silo(tiny_plan, silo_config)

    event = training.trainer.dp_event(plan.training.local_steps)
    spent = [guard.spend(event) for _ in range(plan.rounds)]

    assert spent[-1] == pytest.approx(config.budget.epsilon, rel=1e-4)
    with pytest.raises(BudgetExceeded):
        guard.check(event)


def test_a_plan_change_derives_sigma_from_the_budget_left(
    tiny_plan: Plan, silo_config: SiloConfigFactory
) -> None:
    plan, config, fresh, guard = _fresh_silo(tiny_plan, silo_config)
    steps = plan.training.local_steps
    guard.spend(DpEvent("dp_sgd", fresh.sigma * 0.95, fresh.trainer.sample_rate, steps))

    again = build_training(config, plan, guard.accountant.events)
    event = again.trainer.dp_event(steps)
    spent = [guard.spend(event) for _ in range(plan.rounds - 1)]  # the rounds left

    assert again.sigma > fresh.sigma
    assert spent[-1] == pytest.approx(config.budget.epsilon, rel=1e-4)
    # A restart under the same plan keeps the same sigma.
    restarted = build_training(config, plan, (fresh.trainer.dp_event(steps),))
    assert restarted.sigma == pytest.approx(fresh.sigma, rel=1e-5)


def test_derived_noise_below_the_policy_floor_is_refused(
    tiny_plan: Plan, silo_config: SiloConfigFactory
) -> None:
    plan = _with_derived_noise(tiny_plan)
    config = silo_config("silo-1", 1, epsilon=1000.0)

    with pytest.raises(
        PolicyViolation,
        match=r"derived for budget\.epsilon=1000 is .* but policy\.min_noise_multiplier is 0\.5",
    ):
        build_training(config, plan)


def test_a_causal_lm_plan_trains_a_causal_lm_selector(
    tiny_plan: Plan, silo_config: SiloConfigFactory
) -> None:
    selector = SelectorSpec(
        kind="causal_lm",
        backbone=BackboneSpec(kind="tiny_causal"),
        lora=LoraSpec(rank=2, alpha=4.0),
        max_tokens_per_answer=40,
    )
    plan = tiny_plan.model_copy(update={"selector": selector})
    training = build_training(silo_config("silo-1", 1, epsilon=8.0), plan)

    delta = training.trainer.train_round(adapter_state(training.trainer.model), steps=1, release=0)

    assert isinstance(training.trainer.model, CausalLMSelector)
    assert delta.keys() == adapter_state(build_selector(selector, plan.seed)).keys()
