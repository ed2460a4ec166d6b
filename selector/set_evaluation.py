"""Agreement of a selector set with labelled pairs: the population's and each silo's.

What `fedbiscuit eval`, the demo and `benchmarks/quality.py` report, computed one way:
- overall: the majority vote of the K selectors (`selector.vote.majority_vote`) on every
  pair, i.e. how the set serves the population (for one FedBis selector, its own agreement);
- per silo (grouped by `PreferencePair.silo`): the selector of the silo's own cluster when
  `clusters` assigns it one, otherwise the vote;
- worst silo: the lowest per-silo agreement.
Each selector runs once over all pairs; scores are then read per silo from its logits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from protos.errors import InvalidInput
from selector.data import PairEncoder, PreferencePair
from selector.model import PairwiseSelector
from selector.vote import majority_vote, selector_logits

__all__ = ["SetAgreement", "logits_agreement", "set_agreement"]


@dataclass(frozen=True)
class SetAgreement:
    """Fractions in [0, 1]; `per_silo` is empty when no pair names a silo (then the worst
    silo is the overall agreement: the file is one population)."""

    overall: float
    worst_silo: float
    per_silo: dict[str, float]
    pairs: int

    def as_json(self) -> dict:
        return {
            "overall": self.overall,
            "worst_silo": self.worst_silo,
            "per_silo": dict(self.per_silo),
            "pairs": self.pairs,
        }


def _decisions(logits: torch.Tensor) -> torch.Tensor:
    """One selector's [B] logits → 1.0 / 0.5 / 0.0, as `selector.evaluation.agreement` scores."""
    values = logits.detach().to("cpu", torch.float64)
    return (values > 0).to(torch.float64) + 0.5 * (values == 0).to(torch.float64)


def set_agreement(
    models: Sequence[PairwiseSelector],
    encoder: PairEncoder,
    pairs: Sequence[PreferencePair],
    clusters: Mapping[str, int] | None = None,
    batch_size: int = 64,
) -> SetAgreement:
    """Agreement of `models` (K ≥ 1) with `pairs` (chosen answer first), overall and per silo.

    Pairs must either all name a silo or none: a mix would score an unnamed remainder
    against nobody's selector, so it is refused (before any selector runs).
    """
    clusters = _checked(len(models), pairs, clusters)
    return logits_agreement(selector_logits(models, encoder, pairs, batch_size), pairs, clusters)


def logits_agreement(
    logits: torch.Tensor,
    pairs: Sequence[PreferencePair],
    clusters: Mapping[str, int] | None = None,
) -> SetAgreement:
    """`set_agreement` from the selectors' [K, B] logits on `pairs`, for a caller that also
    reads those logits another way (the quality benchmark's diagnostics)."""
    clusters = _checked(logits.shape[0], pairs, clusters)
    vote = majority_vote(logits)
    by_silo: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        if pair.silo is not None:
            by_silo.setdefault(pair.silo, []).append(index)
    per_silo = {}
    for silo in sorted(by_silo):
        rows = torch.tensor(by_silo[silo])
        if silo in clusters:
            per_silo[silo] = float(_decisions(logits[clusters[silo], rows]).mean())
        else:
            per_silo[silo] = float(vote[rows].mean())
    overall = float(vote.mean())
    return SetAgreement(
        overall=overall,
        worst_silo=min(per_silo.values(), default=overall),
        per_silo=per_silo,
        pairs=len(pairs),
    )


def _checked(
    selectors: int, pairs: Sequence[PreferencePair], clusters: Mapping[str, int] | None
) -> dict[str, int]:
    """`clusters` as a dict, once every index names one of the `selectors` and the pairs
    either all name a silo or none."""
    clusters = dict(clusters or {})
    for silo, index in clusters.items():
        if not 0 <= index < selectors:
            raise InvalidInput(
                f"silo {silo!r} is in cluster {index}, but there are {selectors} selectors"
            )
    named = sum(pair.silo is not None for pair in pairs)
    if 0 < named < len(pairs):
        raise InvalidInput(
            f"{named} of {len(pairs)} pairs name a silo and the rest do not: "
            "give every pair a 'silo' field, or none"
        )
    return clusters
