"""A second opinion on a silo's ε: Google's `dp-accounting`, not the Opacus maths silos use.

`fedbiscuit audit` recomputes every ledger entry's ε from its recorded parameters with two
accountants of this independent library: its RDP accountant (same method as the silo's,
another implementation and order grid, so the two agree to well under 1% and a silo that
under-reports shows) and its PLD accountant (privacy loss distributions: a tighter, nearly
exact ε, reported alongside). Pure: no files, clocks or randomness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import dp_accounting
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from privacy.ledger import LedgerEntry
from protos.errors import InvalidInput

# PLD discretisation: ε is an upper bound, pessimistic by at most about this much.
PLD_VALUE_DISCRETIZATION = 1e-4


@dataclass(frozen=True)
class IndependentEpsilon:
    """ε after one entry, composed over the entries before it, at the entry's δ."""

    rdp: float
    pld: float


def dp_event(entry: LedgerEntry) -> dp_accounting.DpEvent:
    """The entry's release as a dp-accounting event."""
    p = entry.params
    gaussian = dp_accounting.GaussianDpEvent(p.noise_multiplier)
    if entry.mechanism == "dp_sgd":
        step = dp_accounting.PoissonSampledDpEvent(p.sample_rate, gaussian)
    elif entry.mechanism == "gaussian" and p.sample_rate == 1:
        step = gaussian
    else:
        raise InvalidInput(f"seq {entry.seq}: no independent accounting for {entry.mechanism!r}")
    return dp_accounting.SelfComposedDpEvent(step, p.steps)


def recompute(entries: Sequence[LedgerEntry], *, with_pld: bool = True) -> list[IndependentEpsilon]:
    """ε after each of `entries` (in order), recomputed from their parameters alone."""
    rdp = rdp_privacy_accountant.RdpAccountant()
    pld = pld_privacy_accountant.PLDAccountant(
        value_discretization_interval=PLD_VALUE_DISCRETIZATION
    )
    out: list[IndependentEpsilon] = []
    for entry in entries:
        if not entry.spends:  # a re-release: post-processing of an earlier release
            out.append(out[-1] if out else IndependentEpsilon(0.0, 0.0))
            continue
        event = dp_event(entry)
        rdp.compose(event)
        epsilon_pld = math.nan
        if with_pld:
            pld.compose(event)
            epsilon_pld = float(pld.get_epsilon(entry.params.delta))
        out.append(IndependentEpsilon(float(rdp.get_epsilon(entry.params.delta)), epsilon_pld))
    return out
