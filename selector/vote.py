"""FedBiscuit's inference: K selectors vote on each pair; per-silo evaluation with its own one.

The vote rule, exactly (selector k's logit x_k > 0 means "side a is preferred"):
1. Each selector votes for a if x_k > 0, for b if x_k < 0, and abstains if x_k == 0.
2. The side with more votes wins.
3. If the votes are level (an even split, or every selector abstains), the mean
   probability decides: a wins if mean_k sigmoid(x_k) > 1/2, b if it is < 1/2. The mean is
   compared through sum_k tanh(x_k / 2) (sigmoid(x) - 1/2 = tanh(x / 2) / 2), summed exactly
   (`math.fsum` in float64), so mirrored logits such as (+2, −2) are an exact tie.
4. If that is level too, the pair is a tie and scores 1/2, like a zero logit in
   `selector.evaluation.agreement`.

The decision is returned as 1.0 (a), 0.0 (b) or 0.5 (tie): for labelled pairs encoded
chosen-first, its mean is the agreement with people.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from protos.errors import InvalidInput
from selector.data import PreferencePair
from selector.evaluation import agreement
from selector.model import Encoder, Selector
from selector.prefix import shares_frozen_prefix

__all__ = ["majority_vote", "own_cluster_agreement", "selector_logits", "vote_agreement"]


def majority_vote(logits: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """[K, B] logits (or K tensors of [B]) → [B] float64 decisions in {1.0, 0.5, 0.0}."""
    stacked = torch.stack(list(logits)) if not isinstance(logits, torch.Tensor) else logits
    if stacked.ndim != 2 or stacked.shape[0] < 1:
        raise InvalidInput(
            f"majority vote needs logits shaped [selectors, pairs], got {tuple(stacked.shape)}"
        )
    values = stacked.detach().to("cpu", torch.float64)
    if not torch.isfinite(values).all():
        raise InvalidInput("majority vote got a NaN or infinite logit")
    margin = (values > 0).sum(dim=0) - (values < 0).sum(dim=0)
    decision = torch.where(margin > 0, 1.0, 0.0).to(torch.float64)
    for pair in torch.nonzero(margin == 0).flatten().tolist():
        lean = math.fsum(math.tanh(x / 2) for x in values[:, pair].tolist())
        decision[pair] = 1.0 if lean > 0 else 0.0 if lean < 0 else 0.5
    return decision


@torch.no_grad()
def selector_logits(
    models: Sequence[Selector],
    encoder: Encoder,
    pairs: Sequence[PreferencePair],
    batch_size: int = 64,
) -> torch.Tensor:
    """[K, B] logits that side a (the chosen answer) is preferred, one row per selector.

    Each model runs in eval mode on its own device; its previous mode is restored.
    """
    if not models:
        raise InvalidInput("need at least one selector")
    if not pairs:
        raise InvalidInput("need at least one preference pair")
    shared = shares_frozen_prefix(models)
    rows: list[list[torch.Tensor]] = [[] for _ in models]
    modes = [model.training for model in models]
    device = next(models[0].parameters()).device
    try:
        for model in models:
            model.eval()
        for start in range(0, len(pairs), batch_size):
            encoded = encoder.encode(pairs[start : start + batch_size])
            if shared:  # K selectors over one frozen backbone: its layers run once
                encoded = models[0].encode_prefix(encoded.to(device))
            for row, model in zip(rows, models, strict=True):
                row.append(model(encoded.to(next(model.parameters()).device)).cpu())
    finally:
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)
    return torch.stack([torch.cat(row) for row in rows])


def vote_agreement(
    models: Sequence[Selector],
    encoder: Encoder,
    pairs: Sequence[PreferencePair],
    batch_size: int = 64,
) -> float:
    """Fraction of pairs where the majority vote prefers the chosen answer (tie = half)."""
    return float(majority_vote(selector_logits(models, encoder, pairs, batch_size)).mean())


def own_cluster_agreement(
    models: Sequence[Selector],
    clusters: Mapping[str, int],
    pairs_by_silo: Mapping[str, Sequence[PreferencePair]],
    encoder: Encoder,
    batch_size: int = 64,
) -> dict[str, float]:
    """Each silo's agreement under the selector of the cluster it was assigned to.

    `clusters` maps silo id → cluster index (into `models`); every silo in `pairs_by_silo`
    must have one, so a silo left out of grouping is reported rather than silently scored
    by another cluster's selector.
    """
    result = {}
    for silo, pairs in pairs_by_silo.items():
        if silo not in clusters:
            raise InvalidInput(f"silo {silo!r} has no cluster: it must be grouped first")
        cluster = clusters[silo]
        if not 0 <= cluster < len(models):
            raise InvalidInput(
                f"silo {silo!r} is in cluster {cluster}, but there are {len(models)} selectors"
            )
        if not pairs:
            raise InvalidInput(f"silo {silo!r} has no evaluation pairs")
        result[silo] = agreement(models[cluster], encoder, pairs, batch_size)
    return result
