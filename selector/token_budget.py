"""The token window a plan should give its selector, chosen from the data's length statistics.

Compute grows with the window (each side of a pair is one sequence of that length), and a
window shorter than the answers cuts what the selector must compare. The rule: the
90th-percentile answer fits in the three quarters of the window that `selector.truncation`
does not guarantee to the prompt, rounded up to a multiple of 16, within [MIN_WINDOW, the
plan's limit]. Statistics are over a silo's own texts: operator-side figures (the demo,
`silo check-config`), never sent anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers import PreTrainedTokenizerBase

from selector.data import PreferencePair, token_ids
from selector.truncation import PROMPT_SHARE

MIN_WINDOW = 32
"""No window below this: the demo's short synthetic answers fit in it."""

WINDOW_STEP = 16


@dataclass(frozen=True)
class LengthStatistics:
    """Token counts (no special tokens) of prompts and of answers (chosen and rejected)."""

    pairs: int
    prompt_median: int
    prompt_p90: int
    answer_median: int
    answer_p90: int

    def describe(self) -> str:
        return (
            f"{self.pairs} pairs; tokens per prompt: median {self.prompt_median}, "
            f"90th percentile {self.prompt_p90}; per answer: median {self.answer_median}, "
            f"90th percentile {self.answer_p90}"
        )


def length_statistics(
    pairs: Sequence[PreferencePair], tokenizer: PreTrainedTokenizerBase
) -> LengthStatistics:
    if not pairs:
        raise ValueError("no pairs to measure")

    def lengths(texts: list[str]) -> np.ndarray:
        return np.array([len(row) for row in token_ids(tokenizer, texts)])

    prompts = lengths([p.prompt for p in pairs])
    answers = lengths([p.chosen for p in pairs] + [p.rejected for p in pairs])
    return LengthStatistics(
        pairs=len(pairs),
        prompt_median=int(np.median(prompts)),
        prompt_p90=int(np.percentile(prompts, 90)),
        answer_median=int(np.median(answers)),
        answer_p90=int(np.percentile(answers, 90)),
    )


def suggested_window(stats: LengthStatistics, limit: int, special_tokens: int = 0) -> int:
    """`max_tokens_per_answer` for data like `stats`, ≤ `limit`; `special_tokens` is what the
    encoder's template adds inside that window (`PairTemplate.added` for a pair encoder)."""
    text = stats.answer_p90 * PROMPT_SHARE / (PROMPT_SHARE - 1)
    window = special_tokens + math.ceil(text)
    window = WINDOW_STEP * math.ceil(window / WINDOW_STEP)
    return max(MIN_WINDOW, min(limit, window))
