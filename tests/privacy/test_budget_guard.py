import pytest

from privacy.accounting import DpEvent, PrivacyAccountant, derive_noise_multiplier
from privacy.budget_guard import BudgetGuard
from protos.errors import BudgetExceeded

DELTA = 1e-5


def test_guard_allows_exactly_the_planned_rounds_then_refuses():
    rounds, steps, rate = 4, 25, 0.05
    sigma = derive_noise_multiplier(2.0, DELTA, rate, rounds * steps)
    guard = BudgetGuard(PrivacyAccountant(), budget_epsilon=2.0, delta=DELTA)
    event = DpEvent("dp_sgd", sigma, rate, steps)
    spent = [guard.spend(event) for _ in range(rounds)]
    assert spent == sorted(spent) and spent[-1] <= 2.0
    with pytest.raises(BudgetExceeded, match="over the budget 2"):
        guard.spend(event)
    assert len(guard.accountant.events) == rounds
    assert guard.spent == spent[-1]


def test_refused_release_changes_nothing():
    accountant = PrivacyAccountant()
    guard = BudgetGuard(accountant, budget_epsilon=1.0, delta=DELTA)
    guard.spend(DpEvent("dp_sgd", 2.0, 0.01, 10))
    before = accountant.state_dict()
    with pytest.raises(BudgetExceeded):
        guard.check(DpEvent("dp_sgd", 0.5, 0.5, 100))
    with pytest.raises(BudgetExceeded):
        guard.spend(DpEvent("dp_sgd", 0.5, 0.5, 100))
    assert accountant.state_dict() == before


def test_check_reports_epsilon_after_without_spending():
    guard = BudgetGuard(PrivacyAccountant(), budget_epsilon=5.0, delta=DELTA)
    event = DpEvent("gaussian", 3.0, 1.0, 1)
    assert guard.check(event) == guard.accountant.epsilon_after(event, DELTA)
    assert guard.spent == 0.0
