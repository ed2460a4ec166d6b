"""The aggregator stops scheduling a silo whose verified ledger cannot afford another round,
with or without the silo's own guard (DESIGN.md §7: either side alone suffices)."""

from __future__ import annotations

import numpy as np
import pytest

from aggregator.ops.status import read_status
from aggregator.rounds.budget_schedule import can_afford_next_round, next_round_epsilon
from aggregator.rounds.round_machine import RoundMachine
from aggregator.store import LedgerEntryRecord, SqliteStore
from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.budget_guard import BudgetGuard
from privacy.ledger import GENESIS_HASH, LedgerEntry
from privacy.pki import FederationPaths
from protos.errors import BudgetExceeded
from tests.ledger_entries import signed_entry, signer_for

from ..conftest import FEDERATION_ID, FakeClock, tiny_plan

PLAN = tiny_plan(rounds=6, silos_per_round=2, min_silos=2)
SIGMA, RATE, STEPS = 1.0, 0.1, PLAN.training.local_steps


def _round_event() -> DpEvent:
    return DpEvent("dp_sgd", SIGMA, RATE, STEPS)


def _epsilon_after(rounds: int) -> float:
    accountant = PrivacyAccountant()
    for _ in range(rounds):
        accountant.record(_round_event())
    return accountant.epsilon(PLAN.delta)


def _ledger(pki: FederationPaths, silo_id: str, rounds: int, budget: float) -> list[LedgerEntry]:
    """`rounds` signed DP-SGD entries as the silo would write them (epsilon_after is the
    silo's claim; the schedule recomputes from the parameters anyway)."""
    signer, entries = signer_for(pki, silo_id), []
    for seq in range(rounds):
        entries.append(
            signed_entry(
                signer,
                federation_id=FEDERATION_ID,
                silo_id=silo_id,
                seq=seq,
                round_=seq,
                prev_hash=entries[-1].entry_hash if entries else GENESIS_HASH,
                steps=STEPS,
                noise_multiplier=SIGMA,
                sample_rate=RATE,
                epsilon_after=_epsilon_after(seq + 1),
                budget_epsilon=budget,
            )
        )
    return entries


def _store_holding(tmp_path, entries: list[LedgerEntry]) -> SqliteStore:
    """A new aggregator store that already holds `entries` (as ledger intake stores them)."""
    store = SqliteStore.create(tmp_path / "state", PLAN)
    store.put_globals(0, {"w": np.zeros(4, np.float32)})
    store.add_ledger_entries(
        [
            LedgerEntryRecord(
                e.silo_id,
                e.seq,
                e.round,
                e.entry_hash,
                e.epsilon_after,
                e.budget_epsilon,
                e.to_line(),
                0.0,
            )  # fmt: skip
            for e in entries
        ]
    )
    return store


def test_next_round_epsilon_is_what_the_silos_guard_computes(pki):
    budget = _epsilon_after(3)  # exactly three rounds fit
    for spent in range(4):
        entries = _ledger(pki, "silo-1", spent, budget)
        accountant = PrivacyAccountant()
        for entry in entries:
            accountant.record(entry.dp_event())
        guard = BudgetGuard(accountant, budget, PLAN.delta)
        try:
            guard.check(_round_event())
            guard_allows = True
        except BudgetExceeded:
            guard_allows = False

        if spent:
            assert next_round_epsilon(entries, PLAN) == _epsilon_after(spent + 1)
        assert can_afford_next_round(entries, PLAN) is guard_allows is (spent < 3)


def test_silo_without_a_dp_sgd_release_yet_is_schedulable(pki):
    assert next_round_epsilon([], PLAN) is None
    assert can_afford_next_round([], PLAN)


def test_silo_whose_ledger_cannot_afford_a_round_is_never_sampled_without_its_guard(tmp_path, pki):
    # silo-1 has spent two rounds of a budget that holds exactly two: it never declines here
    # (the test plays every silo by hand, with no guard at all), yet it is never sampled.
    budget = _epsilon_after(2)
    store = _store_holding(tmp_path, _ledger(pki, "silo-1", 2, budget))
    machine = RoundMachine(store, FakeClock())
    for silo in ("silo-1", "silo-2", "silo-3"):
        machine.join(silo)

    samples = []
    while machine.state.phase == "TRAINING":
        samples.append(machine.state.sampled)
        assert machine.pull("silo-1", 0).message == "this silo's privacy budget is exhausted"
        for silo in machine.state.sampled:
            task = machine.pull(silo, 0).task
            seq = len(store.submissions(silo_id=silo))
            machine.accept_upload(silo, task.task_id, np.ones(4, np.float32), 0, seq)

    assert machine.state.phase == "DONE"
    assert samples == [("silo-2", "silo-3")] * PLAN.rounds
    store.close()
    by_id = {silo.id: silo for silo in read_status(tmp_path / "state").silos}
    assert by_id["silo-1"].exhausted and by_id["silo-1"].declines == 0
    assert not by_id["silo-2"].exhausted


@pytest.mark.parametrize("spent", [0, 1])
def test_silo_that_can_still_afford_a_round_is_sampled(tmp_path, pki, spent):
    store = _store_holding(tmp_path, _ledger(pki, "silo-1", spent, _epsilon_after(2)))
    machine = RoundMachine(store, FakeClock())
    machine.join("silo-1")
    machine.join("silo-2")

    assert machine.state.sampled == ("silo-1", "silo-2")
