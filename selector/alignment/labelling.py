"""The selectors label completion pairs for DPO: FedBiscuit's majority vote, FedBis's one.

Every pair of distinct completions of a prompt is judged by `selector.vote.majority_vote`
(K selectors vote; level votes go to the mean probability; an exact tie stays 1/2). The
vote's winner becomes `chosen`. Kept with each pair, so a reader can filter later: how
many selectors voted each way and the mean probability the selectors give `chosen`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from selector.alignment.base_policy import Completion
from selector.alignment.config import LabellingSpec
from selector.data import PreferencePair
from selector.model import Encoder, Selector
from selector.vote import majority_vote, selector_logits

__all__ = ["LabelledPair", "Labelling", "label_completions"]


@dataclass(frozen=True)
class LabelledPair:
    prompt: str
    chosen: Completion
    rejected: Completion
    label: float
    """1.0: the vote prefers `chosen`; 0.5: a kept tie (`chosen` is then the first drawn)."""
    votes_chosen: int
    votes_rejected: int
    mean_probability: float
    """Mean over selectors of sigmoid(logit) that `chosen` is preferred."""


@dataclass(frozen=True)
class Labelling:
    pairs: list[LabelledPair]
    candidates: int
    """Pairs of completions considered, identical ones included."""
    identical: int
    ties_dropped: int


def label_completions(
    models: Sequence[Selector],
    encoder: Encoder,
    prompts: Sequence[str],
    completions: Sequence[Sequence[Completion]],
    spec: LabellingSpec,
) -> Labelling:
    """Label every pair of distinct completions of each prompt by the selectors' vote."""
    candidates, identical = 0, 0
    drawn: list[tuple[str, Completion, Completion]] = []
    for prompt, options in zip(prompts, completions, strict=True):
        for first, second in itertools.combinations(options, 2):
            candidates += 1
            if first.text == second.text:
                identical += 1
            else:
                drawn.append((prompt, first, second))
    if not drawn:
        return Labelling([], candidates, identical, 0)
    pairs = [PreferencePair(prompt, a.text, b.text) for prompt, a, b in drawn]
    logits = selector_logits(models, encoder, pairs, spec.batch_size).to(torch.float64)
    decisions = majority_vote(logits)
    labelled, ties = [], 0
    for index, (prompt, first, second) in enumerate(drawn):
        decision = float(decisions[index])
        if decision == 0.5 and spec.ties == "drop":
            ties += 1
            continue
        column = logits[:, index] if decision >= 0.5 else -logits[:, index]
        chosen, rejected = (first, second) if decision >= 0.5 else (second, first)
        labelled.append(
            LabelledPair(
                prompt=prompt,
                chosen=chosen,
                rejected=rejected,
                label=1.0 if decision != 0.5 else 0.5,
                votes_chosen=int((column > 0).sum()),
                votes_rejected=int((column < 0).sum()),
                mean_probability=float(torch.sigmoid(column).mean()),
            )
        )
    return Labelling(labelled, candidates, identical, ties)
