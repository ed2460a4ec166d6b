"""Where a plan meets the CKKS presets: checked wherever a plan with protection 'he' is loaded.

Why here: ``protos.plan`` names the preset but cannot import ``privacy``; the aggregator (at
start) and every silo (before it accepts the plan) call :func:`preset_for_plan`, so an unknown
or insecure preset, or one that cannot hold the sum of a round, stops both before any key
is made.
"""

from __future__ import annotations

from privacy.he._presets import CkksPreset, get_preset
from protos.errors import InvalidInput
from protos.plan import Plan


def max_terms(plan: Plan) -> int:
    """Most ciphertexts one encrypted global adds up: every sampled silo plus the previous
    global (aggregate on model), the bound each silo encrypts under."""
    return plan.silos_per_round + 1


def preset_for_plan(plan: Plan) -> CkksPreset:
    """The plan's CKKS preset, refused unless it exists and is 128-bit secure."""
    if plan.he is None:
        raise InvalidInput(f"plan of {plan.federation_id!r} has protection {plan.protection!r}")
    try:
        return get_preset(plan.he.preset)
    except InvalidInput as exc:
        raise InvalidInput(f"plan he.preset: {exc}") from None
