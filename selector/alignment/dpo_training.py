"""DPO fine-tuning of the policy's LoRA adapter on selector-labelled pairs, resumable.

The reference policy is the same model with its adapter disabled (the frozen base), so
reference log-probabilities are computed once, up front. Dropout stays off (eval mode) so
policy and reference log-probabilities are computed alike and a step depends only on its
batch. The batch of step t is drawn from (seed, t) alone, and the adapter and AdamW state
are checkpointed: a run interrupted and resumed ends with the same adapter as one that
never stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel

from selector.alignment.config import DpoSpec
from selector.alignment.dpo import dpo_loss, sequence_logprobs
from selector.alignment.dpo_checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from selector.alignment.labelling import LabelledPair

__all__ = ["StepReport", "train_dpo"]


@dataclass(frozen=True)
class StepReport:
    step: int
    """Steps done, 1-based."""
    steps: int
    loss: float
    reward_accuracy: float
    """Fraction of the batch whose implicit reward margin favours the chosen completion."""


def _batch_rows(seed: int, step: int, pairs: int, batch_size: int) -> np.ndarray:
    return np.random.default_rng([seed, step]).choice(
        pairs, size=min(batch_size, pairs), replace=False
    )


class _Encoded:
    """Token ids of each pair's prompt, chosen and rejected completion."""

    def __init__(self, pairs: Sequence[LabelledPair], prompt_ids: Callable[[str], list[int]]):
        cache: dict[str, list[int]] = {}
        self.prompts = [cache.setdefault(p.prompt, prompt_ids(p.prompt)) for p in pairs]
        self.chosen = [list(p.chosen.token_ids) for p in pairs]
        self.rejected = [list(p.rejected.token_ids) for p in pairs]
        self.labels = torch.tensor([p.label for p in pairs], dtype=torch.float32)

    def logprobs(self, model: PeftModel, rows: Sequence[int], pad_id: int) -> torch.Tensor:
        """[2, len(rows)]: chosen and rejected log-probabilities, in one forward pass."""
        prompts = [self.prompts[i] for i in rows]
        completions = [self.chosen[i] for i in rows] + [self.rejected[i] for i in rows]
        values = sequence_logprobs(model, prompts + prompts, completions, pad_id)
        return values.view(2, len(rows))


@torch.no_grad()
def _reference(model: PeftModel, encoded: _Encoded, batch_size: int, pad_id: int) -> torch.Tensor:
    total = len(encoded.labels)
    with model.disable_adapter():
        chunks = [
            encoded.logprobs(model, range(start, min(start + batch_size, total)), pad_id)
            for start in range(0, total, batch_size)
        ]
    return torch.cat(chunks, dim=1)


def train_dpo(
    model: PeftModel,
    pairs: Sequence[LabelledPair],
    prompt_ids: Callable[[str], list[int]],
    pad_id: int,
    spec: DpoSpec,
    seed: int,
    checkpoints: Path,
    on_step: Callable[[StepReport], None] | None = None,
) -> int:
    """Train to `spec.steps`, resuming from the newest checkpoint in `checkpoints`.

    `on_step` is called after every step (a progress bar); an exception it raises (e.g.
    KeyboardInterrupt) stops training, and the next call resumes from the last checkpoint.
    Returns the step training resumed from (0: a fresh start).
    """
    model.eval()
    encoded = _Encoded(pairs, prompt_ids)
    reference = _reference(model, encoded, spec.batch_size, pad_id)
    trainable = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=spec.learning_rate, weight_decay=0.0)
    found = latest_checkpoint(checkpoints)
    start = 0 if found is None else load_checkpoint(found, model, optimizer)
    device = trainable[0].device
    for step in range(start, spec.steps):
        rows = _batch_rows(seed, step, len(pairs), spec.batch_size).tolist()
        chosen, rejected = encoded.logprobs(model, rows, pad_id)
        losses = dpo_loss(
            chosen,
            rejected,
            reference[0, rows].to(device),
            reference[1, rows].to(device),
            spec.beta,
            encoded.labels[rows].to(device),
        )
        optimizer.zero_grad()
        losses.mean().backward()
        optimizer.step()
        done = step + 1
        if done % spec.checkpoint_every == 0 or done == spec.steps:
            save_checkpoint(checkpoints, done, model, optimizer)
        if on_step is not None:
            margin = (chosen - reference[0, rows].to(device)) - (
                rejected - reference[1, rows].to(device)
            )
            on_step(
                StepReport(
                    step=done,
                    steps=spec.steps,
                    loss=float(losses.detach().mean()),
                    reward_accuracy=float((margin > 0).float().mean()),
                )
            )
    return start
