"""The DPO objective (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7).

For a pair (x, y_w, y_l) with policy π_θ and frozen reference π_ref, the implicit reward
margin is h = [log π_θ(y_w|x) − log π_ref(y_w|x)] − [log π_θ(y_l|x) − log π_ref(y_l|x)]
and the loss is −log σ(β h). A pair labelled y ∈ [0, 1] (y = 1/2 for a kept tie) gets
−[y log σ(β h) + (1 − y) log σ(−β h)], the same loss with a soft label; y = 1 is plain DPO.
Gradient: ∂L/∂h = −β [y − σ(β h)], so ∂L/∂log π_θ(y_w|x) = −β [y − σ(β h)] = −∂L/∂log π_θ(y_l|x).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

__all__ = ["dpo_loss", "sequence_logprobs"]


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """[B] per-pair losses from [B] sequence log-probabilities (summed over tokens)."""
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    z = beta * margin
    if labels is None:
        return -F.logsigmoid(z)
    return -(labels * F.logsigmoid(z) + (1 - labels) * F.logsigmoid(-z))


def sequence_logprobs(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int,
) -> torch.Tensor:
    """[B] log π(completion | prompt), summed over the completion's tokens only.

    Rows are right-padded, so positions count from 0 in every row as they did when the
    completion was generated from the unpadded prompt.
    """
    device = next(model.parameters()).device
    rows = [list(p) + list(c) for p, c in zip(prompts, completions, strict=True)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    scored = torch.zeros((len(rows), width - 1), dtype=torch.bool)
    for i, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
        ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        # Target t (token t + 1) is scored if token t + 1 belongs to the completion.
        scored[i, len(prompt) - 1 : len(row) - 1] = True
    ids, attention, scored = ids.to(device), attention.to(device), scored.to(device)
    logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    token_logprobs = -F.cross_entropy(
        logits.transpose(1, 2), ids[:, 1:], reduction="none"
    )  # [B, L-1]
    return (token_logprobs * scored).sum(dim=-1)
