"""How often a selector agrees with people: the metric the federation reports."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from protos.errors import InvalidInput
from selector.data import PreferencePair
from selector.model import Encoder, Selector


@torch.no_grad()
def agreement(
    model: Selector,
    encoder: Encoder,
    pairs: Sequence[PreferencePair],
    batch_size: int = 64,
) -> float:
    """Fraction of pairs where the selector prefers the chosen answer (a tie counts as half).

    Runs in eval mode on the model's own device and restores the previous mode.
    """
    if not pairs:
        raise InvalidInput("agreement needs at least one preference pair")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    score = 0.0
    try:
        for start in range(0, len(pairs), batch_size):
            logits = model(encoder.encode(pairs[start : start + batch_size]).to(device))
            score += float((logits > 0).sum()) + 0.5 * float((logits == 0).sum())
    finally:
        model.train(was_training)
    return score / len(pairs)
