"""The silo's last line of defence: no release is made that would push ε past its budget.

`check` is a dry run of the composition (nothing changes, so a refused release leaves the
history exactly as it was); `spend` records only after the check passed.
"""

from __future__ import annotations

import math

from privacy.accounting import DpEvent, PrivacyAccountant
from protos.errors import BudgetExceeded, InvalidInput


class BudgetGuard:
    """Enforces (budget_epsilon, delta) over everything `accountant` has recorded."""

    def __init__(self, accountant: PrivacyAccountant, budget_epsilon: float, delta: float) -> None:
        if not budget_epsilon > 0 or not math.isfinite(budget_epsilon):
            raise InvalidInput(f"budget epsilon {budget_epsilon} must be positive and finite")
        if not 0 < delta < 1:
            raise InvalidInput(f"budget delta {delta} is not in (0, 1)")
        self.accountant = accountant
        self.budget_epsilon = budget_epsilon
        self.delta = delta

    @property
    def spent(self) -> float:
        """ε spent so far at the guard's δ."""
        return self.accountant.epsilon(self.delta)

    def check(self, event: DpEvent) -> float:
        """ε after `event` if it fits the budget; raises BudgetExceeded otherwise."""
        after = self.accountant.epsilon_after(event, self.delta)
        if after > self.budget_epsilon:
            raise BudgetExceeded(
                f"release refused: {event.mechanism} with noise multiplier "
                f"{event.noise_multiplier:.4g}, sample rate {event.sample_rate:.4g} and "
                f"{event.steps} steps would raise epsilon from {self.spent:.4f} to {after:.4f}, "
                f"over the budget {self.budget_epsilon:g} at delta {self.delta:g}"
            )
        return after

    def spend(self, event: DpEvent) -> float:
        """Records `event` if it fits; returns ε after it."""
        after = self.check(event)
        self.accountant.record(event)
        return after
