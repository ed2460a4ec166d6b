import math

import numpy as np
import pytest
from opacus.accountants.analysis.rdp import compute_rdp

from privacy import accounting
from privacy.accounting import (
    ORDERS,
    DpEvent,
    PrivacyAccountant,
    derive_noise_multiplier,
    epsilon_from_rdp,
)
from protos.errors import InvalidInput

DELTA = 1e-5


def test_epsilon_matches_opacus_known_answer():
    # Opacus's own RDP test vector: sigma 1.5, q 0.04, 2250 steps, delta 1e-5.
    accountant = PrivacyAccountant()
    accountant.record(DpEvent("dp_sgd", 1.5, 0.04, 2250))
    assert accountant.epsilon(DELTA) == pytest.approx(7.3291, rel=1e-3)


def test_composing_events_equals_one_event_of_all_steps():
    split = PrivacyAccountant()
    for _ in range(3):
        split.record(DpEvent("dp_sgd", 1.1, 0.02, 100))
    whole = PrivacyAccountant()
    whole.record(DpEvent("dp_sgd", 1.1, 0.02, 300))
    assert split.epsilon(DELTA) == pytest.approx(whole.epsilon(DELTA), rel=1e-12)


def test_repeated_event_gives_opacus_exact_curve_in_a_fresh_array():
    event = DpEvent("dp_sgd", 0.7857, 0.0625, 6)
    expected = compute_rdp(q=0.0625, noise_multiplier=0.7857, steps=6, orders=list(ORDERS))

    first = event.rdp()
    first[:] = -1.0  # a caller's change must not reach the memo
    again = DpEvent("dp_sgd", 0.7857, 0.0625, 6).rdp()

    assert np.array_equal(again, expected)  # bit-for-bit: ledger replays stay exact


def test_no_releases_cost_nothing_and_no_noise_costs_everything():
    accountant = PrivacyAccountant()
    assert accountant.epsilon(DELTA) == 0.0
    assert math.isinf(accountant.epsilon_after(DpEvent("dp_sgd", 0.0, 0.1, 1), DELTA))


def test_epsilon_after_is_a_dry_run():
    accountant = PrivacyAccountant()
    accountant.record(DpEvent("dp_sgd", 1.0, 0.05, 10))
    before = accountant.epsilon(DELTA)
    event = DpEvent("gaussian", 2.0, 1.0, 1)
    after = accountant.epsilon_after(event, DELTA)
    assert after > before
    assert accountant.epsilon(DELTA) == before and len(accountant.events) == 1
    accountant.record(event)
    assert accountant.epsilon(DELTA) == after


def test_state_round_trips_to_the_same_epsilon():
    accountant = PrivacyAccountant()
    accountant.record(DpEvent("dp_sgd", 0.9, 0.03, 40))
    accountant.record(DpEvent("gaussian", 5.0, 1.0, 1))
    restored = PrivacyAccountant()
    restored.load_state_dict(accountant.state_dict())
    assert restored.events == accountant.events
    assert restored.epsilon(DELTA) == accountant.epsilon(DELTA)


def _state(**changes):
    state = {
        "accountant": "rdp",
        "version": 1,
        "events": [
            {"mechanism": "dp_sgd", "noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 5}
        ],
    }
    state.update(changes)
    return state


def _event(**changes):
    return [
        {"mechanism": "dp_sgd", "noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 5, **changes}
    ]


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (_state(accountant="prv"), "for 'prv'"),
        (_state(version=2), "version 2"),
        (_state(events={}), "must be a list"),
        (_state(events=_event(steps=-1)), "event 0: .*steps"),
        (_state(events=_event(noise_multiplier=-0.5)), "event 0: .*negative"),
        (_state(events=_event(sample_rate=1.5)), "event 0: .*sample_rate"),
        (_state(events=_event(mechanism="laplace")), "event 0: .*unknown mechanism"),
        (_state(events=_event(epsilon=1.0)), "event 0 must have fields"),
        ({"accountant": "rdp", "events": []}, "expected"),
    ],
)
def test_invalid_state_is_refused_and_changes_nothing(state, message):
    accountant = PrivacyAccountant()
    accountant.record(DpEvent("dp_sgd", 2.0, 0.01, 3))
    before = accountant.state_dict()
    with pytest.raises(InvalidInput, match=message):
        accountant.load_state_dict(state)
    assert accountant.state_dict() == before


@pytest.mark.parametrize(
    ("epsilon", "sample_rate", "steps"), [(1.0, 0.01, 1000), (3.0, 0.05, 100), (8.0, 0.2, 20)]
)
def test_derived_noise_is_the_smallest_that_fits(epsilon, sample_rate, steps):
    sigma = derive_noise_multiplier(epsilon, DELTA, sample_rate, steps)

    def spent(s):
        return epsilon_from_rdp(DpEvent("dp_sgd", s, sample_rate, steps).rdp(), DELTA)

    assert spent(sigma) <= epsilon
    assert spent(sigma * (1 - 1e-4)) > epsilon


def _plain_bisection(epsilon, sample_rate, steps, reserved):
    """The derivation as it was before it skipped evaluations: the oracle for the float;
    also returns how many curves it evaluated."""
    base = sum((event.rdp() for event in reserved), np.zeros(len(ORDERS)))
    evaluated = []

    def spent(sigma):
        evaluated.append(sigma)
        return epsilon_from_rdp(base + DpEvent("dp_sgd", sigma, sample_rate, steps).rdp(), DELTA)

    low, high = 0.0, 1.0
    while spent(high) > epsilon:
        low, high = high, 2 * high
    while high - low > 1e-6 * high:
        middle = (low + high) / 2
        low, high = (middle, high) if spent(middle) > epsilon else (low, middle)
    return high, len(evaluated)


@pytest.mark.parametrize(
    ("epsilon", "sample_rate", "steps", "reserved"),
    [
        (8 * (1 - 1e-9), 0.0625, 78, (DpEvent("gaussian", 8.0, 1.0, 15),)),  # the tiny demo's
        (1.0, 0.01, 1000, ()),
        (2.0, 1.0, 30, ()),  # sigma above 1: the doubling phase
    ],
)
def test_derivation_returns_the_plain_bisections_float_with_fewer_curves(
    monkeypatch, epsilon, sample_rate, steps, reserved
):
    calls = []

    def counted(**kwargs):
        calls.append(kwargs["noise_multiplier"])
        return compute_rdp(**kwargs)

    accounting._rdp_curve.cache_clear()
    derive_noise_multiplier.cache_clear()
    monkeypatch.setattr(accounting, "compute_rdp", counted)
    sigma = derive_noise_multiplier(epsilon, DELTA, sample_rate, steps, reserved)
    derived_curves = len(calls) - len(reserved)
    expected, bisection_curves = _plain_bisection(epsilon, sample_rate, steps, reserved)
    assert sigma == expected  # the same float, not just close: same σ, same ε, same runs
    assert derived_curves <= bisection_curves / 2


def test_impossible_budget_is_refused():
    with pytest.raises(InvalidInput, match="cannot cover 10000 DP-SGD steps.*raise the budget"):
        derive_noise_multiplier(1e-9, DELTA, 1.0, 10_000)
