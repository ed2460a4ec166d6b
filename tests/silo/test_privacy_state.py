"""A restarted silo remembers what it spent, and refuses to run if that memory was cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbiscuit.cli import main
from privacy.accounting import DpEvent
from privacy.ledger import EntrySigner
from privacy.pki import FederationPaths
from protos.errors import FailedPrecondition
from protos.operator_formats.config_files import save_model_file
from protos.plan import Plan
from silo.privacy_state import ACCOUNTANT_FILE, LEDGER_FILE, PrivacyState
from tests.ledger_entries import signer_for
from tests.silo.conftest import FEDERATION, SiloConfigFactory

EVENT = DpEvent("dp_sgd", noise_multiplier=1.0, sample_rate=0.125, steps=2)
PLAN = Plan(federation_id=FEDERATION)


_SIGNER: list[EntrySigner] = []


@pytest.fixture(autouse=True)
def _silo_1_signs(pki: FederationPaths) -> None:
    _SIGNER[:] = [signer_for(pki, "silo-1")]


def _restore(state_dir: Path) -> PrivacyState:
    return PrivacyState.restore(state_dir, FEDERATION, "silo-1", lambda: 0.0, _SIGNER[0])


def _spend_rounds(state_dir: Path, rounds: int) -> float:
    state = _restore(state_dir)
    for round_index in range(rounds):
        after = state.accountant.epsilon_after(EVENT, PLAN.delta)
        state.record(
            round_index, EVENT, PLAN, secure_rng=False, epsilon_after=after, budget_epsilon=8.0
        )
    return state.accountant.epsilon(PLAN.delta)


def test_restarted_silo_restores_its_spend_from_the_ledger(tmp_path: Path) -> None:
    spent = _spend_rounds(tmp_path, rounds=3)

    restored = _restore(tmp_path)

    assert restored.accountant.epsilon(PLAN.delta) == pytest.approx(spent)
    assert len(restored.ledger.entries) == 3


def test_silo_whose_ledger_was_lost_refuses_to_run_and_says_what_was_spent(
    tmp_path: Path,
) -> None:
    spent = _spend_rounds(tmp_path, rounds=2)
    (tmp_path / LEDGER_FILE).unlink()

    with pytest.raises(FailedPrecondition) as refused:
        PrivacyState.restore(
            tmp_path, FEDERATION, "silo-1", lambda: 0.0, _SIGNER[0], delta=PLAN.delta
        )

    message = str(refused.value)
    assert f"records 2 past releases (epsilon {spent:.4f} at delta {PLAN.delta:g})" in message
    assert "ledger" in message and "is missing" in message
    assert "backup" in message and "new state_dir" in message


def test_silo_whose_first_run_stopped_before_any_release_runs_again(tmp_path: Path) -> None:
    _restore(tmp_path)  # a first run that failed before releasing: accountant, no ledger
    assert (tmp_path / ACCOUNTANT_FILE).exists() and not (tmp_path / LEDGER_FILE).exists()

    again = _restore(tmp_path)

    assert again.accountant.events == () and again.ledger.entries == ()


def test_status_of_a_silo_that_never_released_shows_nothing_spent(
    silo_config: SiloConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = silo_config("silo-1", 50051)
    _restore(config.state_dir)
    config_path = tmp_path / "silo.yaml"
    save_model_file(config_path, config)

    status = main(["silo", "status", "--config", str(config_path)])

    assert status == 0
    assert "releases: 0" in capsys.readouterr().out


def test_silo_whose_ledger_lost_its_last_entries_refuses_to_run(tmp_path: Path) -> None:
    _spend_rounds(tmp_path, rounds=3)
    ledger = tmp_path / LEDGER_FILE
    ledger.write_text("".join(ledger.read_text().splitlines(keepends=True)[:2]))

    with pytest.raises(FailedPrecondition, match=r"records 3 releases .* \(2 entries\)"):
        _restore(tmp_path)
    assert (tmp_path / ACCOUNTANT_FILE).exists()


def test_status_command_prints_spend_against_budget(
    silo_config: SiloConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = silo_config("silo-1", 50051)
    spent = _spend_rounds(config.state_dir, rounds=2)
    config_path = tmp_path / "silo.yaml"
    save_model_file(config_path, config)

    status = main(["silo", "status", "--config", str(config_path)])

    out = capsys.readouterr().out
    assert status == 0
    assert f"epsilon spent: {spent:.4f} of 50" in out
    assert "releases: 2" in out
    assert "last round trained: 1" in out


def test_silo_refuses_when_the_aggregator_holds_entries_its_ledger_lacks(tmp_path: Path) -> None:
    _spend_rounds(tmp_path, rounds=2)
    state = _restore(tmp_path)
    last_hash = state.ledger.entries[1].entry_hash

    state.sync_with_aggregator(2, last_hash)  # in step: nothing to resend
    assert state.undelivered() == []
    with pytest.raises(FailedPrecondition, match="holds 3 ledger entries"):
        state.sync_with_aggregator(3, "f" * 64)
    with pytest.raises(FailedPrecondition, match="lost, truncated or replaced"):
        state.sync_with_aggregator(2, "f" * 64)


def test_entries_the_aggregator_lacks_are_resent_until_acknowledged(tmp_path: Path) -> None:
    _spend_rounds(tmp_path, rounds=3)
    state = _restore(tmp_path)
    state.sync_with_aggregator(1, state.ledger.entries[0].entry_hash)

    assert state.undelivered() == [e.to_line() for e in state.ledger.entries[1:]]
    state.delivered(3)
    assert state.undelivered() == []


def test_the_first_entry_pins_the_budget_a_restarted_silo_may_use(tmp_path: Path) -> None:
    _spend_rounds(tmp_path, rounds=1)  # budget 8 recorded at seq 0
    state = _restore(tmp_path)

    state.check_budget_pinned(8.0)
    state.check_budget_pinned(5.0)  # lowering it is fine
    with pytest.raises(FailedPrecondition, match="fixed its budget for the federation at 8"):
        state.check_budget_pinned(9.0)
