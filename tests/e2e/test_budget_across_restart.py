"""A silo whose budget affords fewer rounds than the plan stops exactly at its budget, also
when the aggregator is SIGKILLed and restarted just as the silo spends its last round."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.ops.status import read_status
from aggregator.rounds.budget_schedule import next_round_epsilon
from fedbiscuit.demo.layout import DemoOptions, lay_out
from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.budget_guard import BudgetGuard
from privacy.ledger import Ledger
from protos.errors import BudgetExceeded
from protos.operator_formats.config_files import load_model_file, save_model_file
from protos.plan import Plan
from silo.config import SiloConfig
from silo.policy import PrivacyBudget

from .processes import kill, start, stop_all, stored_entries, wait_finished, wait_for

pytestmark = pytest.mark.slow

ROUNDS, AFFORDED, SIGMA = 5, 2, 1.0
OPTIONS = DemoOptions(
    silos=2, rounds=ROUNDS, tiny=True, local_steps=4, protection="insecure_plaintext"
)


def _epsilon_after(rounds: int) -> float:
    """ε of `rounds` demo rounds at the fixed σ (the demo silos hold 256 pairs each)."""
    accountant = PrivacyAccountant()
    rate = OPTIONS.expected_batch_size / OPTIONS.train_pairs_per_silo
    for _ in range(rounds):
        accountant.record(DpEvent("dp_sgd", SIGMA, rate, OPTIONS.local_steps))
    return accountant.epsilon(OPTIONS.delta)


def _set_budget(config_path: Path, epsilon: float) -> None:
    config = load_model_file(config_path, SiloConfig)
    budget = PrivacyBudget(epsilon=epsilon, delta=OPTIONS.delta)
    save_model_file(config_path, config.model_copy(update={"budget": budget}))


def test_silo_stops_exactly_at_its_budget_across_an_aggregator_restart(tmp_path):
    layout = lay_out(tmp_path / "fed", OPTIONS)
    plan_path = layout.aggregator_config.parent / "plan.yaml"
    plan = load_model_file(plan_path, Plan)
    fixed_sigma = plan.dp.model_copy(update={"noise_multiplier": SIGMA})
    save_model_file(plan_path, plan.model_copy(update={"dp": fixed_sigma}))
    # silo-1's budget holds exactly AFFORDED rounds (halfway to the next); silo-2's all.
    budget = (_epsilon_after(AFFORDED) + _epsilon_after(AFFORDED + 1)) / 2
    _set_budget(layout.silo_configs["silo-1"], budget)
    assert _epsilon_after(ROUNDS) < OPTIONS.epsilon  # silo-2 keeps the demo's 8

    aggregator_args = ["aggregator", "run", "--config", str(layout.aggregator_config)]
    log = layout.logs_dir / "aggregator.log"
    aggregator = start(aggregator_args, log)
    silos = [
        start(["silo", "run", "--config", str(config)], layout.logs_dir / f"{silo_id}.log")
        for silo_id, config in layout.silo_configs.items()
    ]
    state = layout.aggregator_state
    try:
        # Kill the aggregator as soon as it holds silo-1's last affordable release: the
        # restarted one must know from its durable state alone that silo-1 is done.
        wait_for(
            lambda: stored_entries(state, "silo-1") >= AFFORDED,
            f"silo-1's release #{AFFORDED}",
            [aggregator, *silos],
        )
        kill(aggregator)
        assert not read_status(state).finished, "killed too late to test a restart"
        aggregator = start(aggregator_args, log)
        wait_finished(aggregator, log, silos)
    finally:
        stop_all([aggregator, *silos])

    final = read_status(state)
    assert final.phase == "DONE" and final.rounds_completed == ROUNDS
    by_id = {silo.id: silo for silo in final.silos}
    assert by_id["silo-1"].exhausted and by_id["silo-1"].rounds_participated == AFFORDED
    assert not by_id["silo-2"].exhausted and by_id["silo-2"].rounds_participated == ROUNDS
    poor = Ledger.open(
        layout.workdir / "silos" / "silo-1" / "state" / "ledger.jsonl",
        federation_id="demo",
        silo_id="silo-1",
    )
    assert [entry.round for entry in poor.entries] == list(range(AFFORDED))
    assert all(entry.epsilon_after <= budget for entry in poor.entries)
    accountant = PrivacyAccountant()
    spent = poor.replay_into(accountant)
    assert spent == pytest.approx(_epsilon_after(AFFORDED)) and spent <= budget
    # One more round is exactly what both the silo's guard and the aggregator refuse.
    final_plan = load_model_file(plan_path, Plan)
    with pytest.raises(BudgetExceeded):
        BudgetGuard(accountant, budget, final_plan.delta).check(poor.entries[-1].dp_event())
    assert next_round_epsilon(poor.entries, final_plan) > budget
