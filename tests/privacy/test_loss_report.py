"""DP loss reports: clipped to [0, C], averaged over exactly m, noised with std σ·C/m, and
accounted as K Gaussian steps; refused by the budget guard when they do not fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.budget_guard import BudgetGuard
from privacy.loss_report import evaluation_sample, loss_report_event, noised_mean_losses
from privacy.secure_noise import NoiseSource, snapping_grid
from protos.errors import BudgetExceeded, InvalidInput


class _NoNoise:
    """A stream of zeros: what is left is the clipped mean, snapped."""

    def gaussians(self, count, device=None):
        return torch.zeros(count, dtype=torch.float64)


def test_losses_are_clipped_to_zero_and_c_then_averaged():
    losses = np.array([[-1.0, 0.5, 9.0, 1.5], [0.0, 0.0, 0.0, 4.0]])

    means = noised_mean_losses(losses, clip=2.0, noise_multiplier=3.0, stream=_NoNoise())

    grid = snapping_grid(3.0 * 2.0 / 4)
    np.testing.assert_allclose(means, [(0 + 0.5 + 2 + 1.5) / 4, 2.0 / 4], atol=grid / 2)


def test_noise_has_std_sigma_c_over_m():
    losses = np.full((1, 50), 1.0)
    source = NoiseSource(seed=0, context="loss-report")
    draws = [
        noised_mean_losses(losses, 2.0, 5.0, source.stream(release, "loss_report"))[0] - 1.0
        for release in range(2000)
    ]
    assert np.std(draws) == pytest.approx(5.0 * 2.0 / 50, rel=0.1)


def test_k_adapters_are_accounted_as_k_gaussian_steps_equal_to_one_vector_release():
    event = loss_report_event(3, 6.0)
    vector = DpEvent("gaussian", 6.0 / np.sqrt(3), 1.0, 1)

    assert event == DpEvent("gaussian", 6.0, 1.0, 3)
    np.testing.assert_allclose(event.rdp(), vector.rdp(), rtol=1e-9)


def test_a_report_over_budget_is_refused_before_anything_is_recorded():
    accountant = PrivacyAccountant()
    guard = BudgetGuard(accountant, budget_epsilon=0.5, delta=1e-5)

    with pytest.raises(BudgetExceeded, match="gaussian"):
        guard.check(loss_report_event(3, 2.0))
    assert accountant.events == ()


def test_evaluation_sample_changes_by_at_most_one_when_a_record_is_removed():
    keys = [f"pair-{i}".encode() for i in range(40)]
    sample = {keys[i] for i in evaluation_sample(keys, 10)}
    removed = next(iter(sample))
    rest = [k for k in keys if k != removed]
    after = {rest[i] for i in evaluation_sample(rest, 10)}

    assert len(sample - after) == 1 and len(after - sample) == 1


def test_too_few_records_for_the_sample_size_is_refused():
    with pytest.raises(InvalidInput, match="only 3"):
        evaluation_sample([b"a", b"b", b"c"], 4)
