"""What the demo does differently under each protection mode, in one table.

The aggregator and the silo choose their protection strategy once from the plan
(aggregator/protection/, silo/upload/); the demo, which writes the plan and the configs and
drives the processes, asks this table instead of testing the mode's name. A new mode is one
row here.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos.plan import SECAGG_LIMITS, HeSpec

MASKING_MIN_SILOS = SECAGG_LIMITS["small"].min_silos
HE_MIN_CONTRIBUTORS = HeSpec.model_fields["min_contributors"].default


@dataclass(frozen=True)
class DemoMode:
    """One protection mode as the demo sees it."""

    min_per_sum: int
    """Fewest silos one adapter's sum may hold (SecAgg+'s or HE's floor, else 1)."""
    silos_insist: bool = True
    """Every demo silo's policy requires this mode (else it opts in to plaintext)."""
    spare_participation: bool = False
    """Rounds lost to a restart are re-run and paid again (masking): budget one spare."""
    silo_holds_key: bool = False
    """HE: a silo (the plan's key custodian) makes the CKKS keys, the aggregator has none, so
    it keeps serving the encrypted globals after DONE and a silo exports the selectors."""
    shows_updates: bool = False
    """The aggregator sees each silo's update (development only): the report warns."""

    def planned_participations(self, rounds: int) -> int | None:
        """What a silo budgets for over `rounds` (None: the plan's rounds)."""
        return rounds + 1 if self.spare_participation else None


DEMO_MODES: dict[str, DemoMode] = {
    "masking": DemoMode(MASKING_MIN_SILOS, spare_participation=True),
    "he": DemoMode(HE_MIN_CONTRIBUTORS, silo_holds_key=True),
    "insecure_plaintext": DemoMode(1, silos_insist=False, shows_updates=True),
}
"""Keyed by `Plan.protection` (`demo --protection` offers exactly these)."""


def silo_policy(protection: str) -> dict:
    """The protection part of every demo silo's policy."""
    if DEMO_MODES[protection].silos_insist:
        return {"required_protection": protection}
    return {"allow_insecure_plaintext": True}
