"""Rényi-DP accounting of a silo's releases: a list of immutable events composed by summing RDP.

The maths is Opacus's (`opacus.accountants.analysis.rdp`, Mironov et al. for the sampled
Gaussian mechanism, Balle et al. 2020 for the RDP → (ε, δ) conversion) over Opacus's
default orders; this module adds the event log, a dry run that changes nothing, and a
validated, replayable state. Pure: no files, clocks or randomness.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.accountants.rdp import RDPAccountant

from protos.errors import InvalidInput

ORDERS: tuple[float, ...] = tuple(RDPAccountant.DEFAULT_ALPHAS)
STATE_TAG = "rdp"
STATE_VERSION = 1

MECHANISMS = ("dp_sgd", "gaussian")
"""'dp_sgd': `steps` Poisson-subsampled Gaussian steps; 'gaussian': an unsampled release
(sample_rate must be 1), e.g. a noised loss report."""

_MAX_NOISE_MULTIPLIER = 1e6


@dataclass(frozen=True)
class DpEvent:
    """One release: `steps` applications of a Gaussian mechanism with noise σ·sensitivity."""

    mechanism: str
    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise InvalidInput(f"DP event: unknown mechanism {self.mechanism!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise InvalidInput(f"DP event: steps must be a non-negative integer, got {self.steps}")
        for name in ("noise_multiplier", "sample_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(f"DP event: {name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InvalidInput(f"DP event: {name} must be finite, got {value}")
        if self.noise_multiplier < 0:
            raise InvalidInput(f"DP event: noise_multiplier {self.noise_multiplier} is negative")
        if not 0 < self.sample_rate <= 1:
            raise InvalidInput(f"DP event: sample_rate {self.sample_rate} is not in (0, 1]")
        if self.mechanism == "gaussian" and self.sample_rate != 1:
            raise InvalidInput("DP event: a 'gaussian' release has sample_rate 1")

    def rdp(self) -> np.ndarray:
        """RDP at each of ORDERS (infinite for σ = 0: no privacy), a fresh array."""
        if self.steps == 0:
            return np.zeros(len(ORDERS))
        return np.array(_rdp_curve(self.sample_rate, self.noise_multiplier, self.steps))


@functools.lru_cache(maxsize=4096)
def _rdp_curve(sample_rate: float, noise_multiplier: float, steps: int) -> tuple[float, ...]:
    """Opacus's RDP of `steps` sampled Gaussian steps, memoized (the same floats every time).

    Why: a subsampled event costs ~0.1 s of CPU (fractional orders), and a federation repeats
    the same few events: the aggregator's budget schedule, `aggregator status` and every
    silo's guard replay whole ledgers of them; uncached, that replay dominated a demo round.
    """
    curve = compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=list(ORDERS)
    )
    return tuple(float(value) for value in np.asarray(curve, dtype=np.float64))


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise InvalidInput(f"delta {delta} is not in (0, 1)")


def epsilon_from_rdp(rdp: np.ndarray, delta: float) -> float:
    """The tightest ε at `delta` over ORDERS for a composed RDP curve."""
    _check_delta(delta)
    if not np.any(rdp):
        return 0.0
    with warnings.catch_warnings():
        # Opacus warns when the optimum is the largest order; ε is still a valid bound.
        warnings.simplefilter("ignore", UserWarning)
        epsilon, _ = get_privacy_spent(orders=list(ORDERS), rdp=rdp, delta=delta)
    return float(epsilon)


class PrivacyAccountant:
    """Composes a silo's releases; `epsilon_after` answers "what if" without recording."""

    def __init__(self) -> None:
        self._events: list[DpEvent] = []
        self._rdp = np.zeros(len(ORDERS))

    @property
    def events(self) -> tuple[DpEvent, ...]:
        return tuple(self._events)

    def epsilon(self, delta: float) -> float:
        return epsilon_from_rdp(self._rdp, delta)

    def epsilon_after(self, event: DpEvent, delta: float) -> float:
        return epsilon_from_rdp(self._rdp + event.rdp(), delta)

    def record(self, event: DpEvent) -> None:
        self._rdp = self._rdp + event.rdp()
        self._events.append(event)

    def state_dict(self) -> dict[str, Any]:
        return {
            "accountant": STATE_TAG,
            "version": STATE_VERSION,
            "events": [asdict(event) for event in self._events],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replaces the history with `state`'s; nothing changes if any part is invalid."""
        if not isinstance(state, Mapping):
            raise InvalidInput("accountant state must be a mapping")
        if set(state) != {"accountant", "version", "events"}:
            raise InvalidInput(
                f"accountant state has fields {sorted(state)}, "
                "expected ['accountant', 'events', 'version']"
            )
        if state["accountant"] != STATE_TAG:
            raise InvalidInput(f"accountant state is for {state['accountant']!r}, not 'rdp'")
        if state["version"] != STATE_VERSION:
            raise InvalidInput(f"accountant state version {state['version']!r} unsupported")
        if not isinstance(state["events"], list):
            raise InvalidInput("accountant state: events must be a list")
        events = []
        fields = {"mechanism", "noise_multiplier", "sample_rate", "steps"}
        for index, raw in enumerate(state["events"]):
            if not isinstance(raw, Mapping) or set(raw) != fields:
                raise InvalidInput(f"accountant state: event {index} must have fields {fields}")
            try:
                events.append(DpEvent(**raw))
            except InvalidInput as exc:
                raise InvalidInput(f"accountant state: event {index}: {exc}") from None
        rdp = np.zeros(len(ORDERS))
        for event in events:
            rdp = rdp + event.rdp()
        self._events, self._rdp = events, rdp


@functools.lru_cache(maxsize=64)  # pure; a silo asks the same question every round
def derive_noise_multiplier(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    reserved: tuple[DpEvent, ...] = (),
) -> float:
    """The smallest σ (to ~1e-6 relative) whose `steps` DP-SGD steps at `sample_rate`, composed
    with the `reserved` releases (e.g. FedBiscuit's loss reports), stay within (ε, δ);
    bisection on ε(σ), which decreases in σ."""
    if not epsilon > 0 or not math.isfinite(epsilon):
        raise InvalidInput(f"target epsilon {epsilon} must be positive and finite")
    if steps < 1:
        raise InvalidInput(f"steps {steps} must be at least 1")
    base = np.zeros(len(ORDERS))
    for event in reserved:
        base = base + event.rdp()
    if reserved and epsilon_from_rdp(base, delta) >= epsilon:
        raise InvalidInput(
            f"budget epsilon={epsilon:.6g} at delta={delta:g} is used up by the reserved "
            f"releases alone (epsilon {epsilon_from_rdp(base, delta):.4g}): raise the budget "
            "or ask for a plan with more loss-report noise or fewer groupings"
        )

    def eps(sigma: float) -> float:
        return epsilon_from_rdp(base + DpEvent("dp_sgd", sigma, sample_rate, steps).rdp(), delta)

    probe = _CrossingProbe(eps, epsilon)
    low, high = 0.0, 1.0
    while probe.above(high):
        low, high = high, 2 * high
        if high > _MAX_NOISE_MULTIPLIER:
            raise InvalidInput(
                f"budget epsilon={epsilon:.6g} at delta={delta:g} cannot cover {steps} DP-SGD "
                f"steps at sample rate {sample_rate:.6g} with any noise multiplier: raise the "
                "budget, or ask for a plan with fewer rounds or local steps"
            )
    probe.narrow(high)
    while high - low > 1e-6 * high:
        middle = (low + high) / 2
        if probe.above(middle):
            low = middle
        else:
            high = middle
    return high


class _CrossingProbe:
    """Answers "is ε(σ) above the target?" for a bisection, with as few ε evaluations as the
    answers allow, and the answers an evaluation at σ would give.

    Why: each evaluation is a subsampled RDP curve (~0.07 CPU-s, fractional orders), and the
    bisection's ~23 of them cost every silo ~2 CPU-s at start-up. ε(σ) decreases in σ, so once
    ε is known above the target at σ_a and not above at σ_b, every σ <= σ_a answers True and
    every σ >= σ_b False without evaluating. `narrow` first closes [σ_a, σ_b] around the
    crossing by regula falsi (Illinois) on log ε over log σ; the bisection then evaluates only
    the midpoints that fall inside, so it returns the very float it returned evaluating all.
    """

    _NARROW_RELATIVE = 1e-7  # below the bisection's 1e-6 stop: few midpoints land inside
    _NARROW_PROBES = 16

    def __init__(self, eps: Callable[[float], float], target: float) -> None:
        self._eps, self._target = eps, target
        self._above_at, self._above_eps = 0.0, math.inf  # ε(0) is infinite: no noise
        self._below_at, self._below_eps = math.inf, 0.0

    def above(self, sigma: float) -> bool:
        if sigma <= self._above_at:
            return True
        if sigma >= self._below_at:
            return False
        value = self._eps(sigma)
        if value > self._target:
            self._above_at, self._above_eps = sigma, value
            return True
        self._below_at, self._below_eps = sigma, value
        return False

    def narrow(self, upper: float) -> None:
        """Probe inside (known-above, `upper`] until the two bounds are close."""
        if self._below_at > upper:
            self.above(upper)
        retained = 0  # which bound the last probe moved: 1 the one above, -1 the one below
        scale_above = scale_below = 1.0
        for _ in range(self._NARROW_PROBES):
            low, high = self._above_at, self._below_at
            if high - low <= self._NARROW_RELATIVE * high:
                return
            guess = (low + high) / 2
            f_low = scale_above * _log_ratio(self._above_eps, self._target)
            f_high = scale_below * _log_ratio(self._below_eps, self._target)
            if low > 0 and math.isfinite(f_low) and f_low > f_high:
                x_low, x_high = math.log(low), math.log(high)
                x = x_high - f_high * (x_high - x_low) / (f_high - f_low)
                if x_low < x < x_high:
                    guess = math.exp(x)
            if not low < guess < high:
                guess = (low + high) / 2
            side = 1 if self.above(guess) else -1
            if side == retained:  # the same bound moved twice: damp the one kept
                scale_above, scale_below = (
                    (scale_above, scale_below / 2) if side == 1 else (scale_above / 2, scale_below)
                )
            else:
                scale_above = scale_below = 1.0
            retained = side


def _log_ratio(value: float, target: float) -> float:
    return math.log(value / target) if value > 0 else -math.inf
