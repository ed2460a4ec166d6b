"""How a silo waits for an aggregator that is not there: like a service, by default forever.

A silo enabled before its aggregator, or one whose aggregator restarts, keeps retrying
with capped exponential backoff and jitter. It says so in the log at growing intervals
(the first failure, then whenever the wait has doubled, at most every `LOG_EVERY_MAX_S`),
not at every attempt. `give_up_after_s` (the config's `aggregator_wait_s`) bounds the wait
for scripts; time is the sum of the backoff delays, so tests need no clock.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

log = logging.getLogger("silo.client")

LOG_EVERY_MAX_S = 600.0
"""Once the outage is long, a log line at least this often (seconds of waiting)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits about initial * multiplier**n seconds,
    at most `max_backoff_s`; it gives up after `max_attempts` attempts or `give_up_after_s`
    seconds of waiting, whichever comes first (None: never)."""

    max_attempts: int | None = None
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    multiplier: float = 2.0
    give_up_after_s: float | None = None

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt `attempt` (0-based); jitter spreads silos out."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**attempt)
        return ceiling * rng.uniform(0.5, 1.0)


class Outage:
    """One stretch of failed attempts at one RPC: the next delay, or None to give up."""

    def __init__(self, policy: RetryPolicy, rpc: str, address: str) -> None:
        self._policy = policy
        self._rpc = rpc
        self._address = address
        self.attempts = 0
        self.waited_s = 0.0
        self._next_log_s = 0.0

    def next_delay(self, status: str, details: str, rng: random.Random) -> float | None:
        """Record a failed attempt; the seconds to wait before the next, or None to give up."""
        policy = self._policy
        self.attempts += 1
        if policy.max_attempts is not None and self.attempts >= policy.max_attempts:
            return None
        delay = policy.delay_s(self.attempts - 1, rng)
        if policy.give_up_after_s is not None and self.waited_s >= policy.give_up_after_s:
            return None
        if policy.give_up_after_s is not None:
            delay = min(delay, policy.give_up_after_s - self.waited_s)
        if self.waited_s >= self._next_log_s:
            log.warning(
                "rpc=%s status=%s attempt=%d waited_s=%.0f retry_in_s=%.1f aggregator %s not "
                "reachable (%s); waiting for it%s",
                self._rpc,
                status,
                self.attempts,
                self.waited_s,
                delay,
                self._address,
                details,
                "" if policy.give_up_after_s is None else f" up to {policy.give_up_after_s:g}s",
            )
            self._next_log_s = min(max(2 * self._next_log_s, 1.0), self.waited_s + LOG_EVERY_MAX_S)
        else:
            log.debug(
                "rpc=%s status=%s attempt=%d retry_in_s=%.2f",
                self._rpc,
                status,
                self.attempts,
                delay,
            )
        self.waited_s += delay
        return delay
