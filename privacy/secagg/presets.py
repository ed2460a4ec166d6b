"""Named secure-aggregation parameter sets; plans pick one by name instead of raw knobs.

* ``small``: up to 16 silos, complete graph, 2/3 of the other silos needed to unmask, a
  32-bit ring with clip 1.0 (resolution 2**-26).
* ``medium``: up to 64 silos, 8 neighbours per silo (SecAgg+, Bell et al. CCS 2020), 5 of
  8 needed, 32-bit ring with clip 1.0 (resolution 2**-24).
* ``medium_wide``: like ``medium`` with 64-bit words, for updates that need finer
  resolution (twice the bytes on the wire).

With 8 neighbours and a threshold of 5, a round survives a handful of dropouts; with 20%
of silos dropping at random, some draws leave a silo with fewer than 5 live neighbours and
the round aborts (the benchmark prints how often). Use ``small`` where that matters.
"""

from __future__ import annotations

from privacy.secagg.errors import UnsafeParameters
from privacy.secagg.params import EncodingParams, SecAggParams
from protos.plan import SECAGG_LIMITS, Plan

# Silo counts come from the plan's table, so a plan is checked against what runs.
_SMALL, _MEDIUM, _WIDE = (
    SECAGG_LIMITS["small"],
    SECAGG_LIMITS["medium"],
    SECAGG_LIMITS["medium_wide"],
)
SMALL = SecAggParams(
    encoding=EncodingParams.fit(clip=1.0, max_silos=_SMALL.max_silos),
    degree=None,
    threshold_fraction=2 / 3,
    min_silos=_SMALL.min_silos,
)
MEDIUM = SecAggParams(
    encoding=EncodingParams.fit(clip=1.0, max_silos=_MEDIUM.max_silos),
    degree=8,
    threshold_fraction=0.6,
    min_silos=_MEDIUM.min_silos,
)
MEDIUM_WIDE = SecAggParams(
    encoding=EncodingParams.fit(clip=1.0, max_silos=_WIDE.max_silos, bits=64),
    degree=8,
    threshold_fraction=0.6,
    min_silos=_WIDE.min_silos,
)

PRESETS: dict[str, SecAggParams] = {"small": SMALL, "medium": MEDIUM, "medium_wide": MEDIUM_WIDE}


def preset(name: str) -> SecAggParams:
    """The parameter set called ``name``; unknown names are refused with the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UnsafeParameters(
            f"unknown secagg preset {name!r}; choose one of {sorted(PRESETS)}"
        ) from None


def for_plan(plan: Plan) -> SecAggParams:
    """The parameters a masking plan commits to; refused for a plan without masking."""
    if plan.secagg is None:
        raise UnsafeParameters(f"plan protection {plan.protection!r} has no secure aggregation")
    return preset(plan.secagg.preset)
