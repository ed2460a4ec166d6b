"""Preference pairs encoded for the causal-LM selector: a multiple-choice prompt, both orders.

The causal LM reads `Question: <prompt> Answer A: <a> Answer B: <b> Preferred:` and its
logits for the next token "A" and "B" say which answer it prefers. LMs favour a position,
so each pair is asked in both orders: segment 0 puts the chosen answer as A, segment 1 puts
it as B. Both segments share ONE row (a pair is still the unit of privacy for DP-SGD's
per-example clipping), separated by a block-diagonal causal mask, with positions restarting
at 0 in each segment, exactly as PairEncoder stacks the two sides of a pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from selector.data import PreferencePair, RowTensors, token_ids
from selector.truncation import fit_pair

PAD_SEGMENT = 2
"""`segment_ids` value of padding slots (0 = chosen asked as A, 1 = chosen asked as B)."""

CHOICE_TOKENS = ("A", "B")
"""The answer labels whose next-token logits the causal-LM selector compares."""

_QUESTION, _ANSWER_A, _ANSWER_B, _PREFERRED = "Question:", "Answer A:", "Answer B:", "Preferred:"


@dataclass(frozen=True)
class ChoiceBatch(RowTensors):
    """Encoded pairs, one row each: segment 0 in slots [0, W), segment 1 in [W, 2W).

    `choice_index[row, s]` is the slot of segment s's last token ("Preferred:"), where the
    next-token logits are read. Tensors are int64, [B, 2W] (choice_index [B, 2]); B may be 0.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    segment_ids: torch.Tensor
    choice_index: torch.Tensor


class ChoiceEncoder:
    """Tokenizes pairs as two multiple-choice prompts, chosen first as A, then as B.

    Truncation is PairEncoder's (`selector.truncation.fit_pair`): the answers first, then the
    end of the prompt, so prompt + answer never exceeds `max_tokens_per_answer` tokens for
    either answer (the template's few tokens come on top).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_tokens_per_answer: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens_per_answer = max_tokens_per_answer
        self._template = {
            text: self._ids([text])[0] for text in (_QUESTION, _ANSWER_A, _ANSWER_B, _PREFERRED)
        }

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return token_ids(self.tokenizer, texts)

    def _segment(self, prompt: list[int], a: list[int], b: list[int]) -> list[int]:
        t = self._template
        return [*t[_QUESTION], *prompt, *t[_ANSWER_A], *a, *t[_ANSWER_B], *b, *t[_PREFERRED]]

    def encode(self, pairs: Sequence[PreferencePair]) -> ChoiceBatch:
        limit = self.max_tokens_per_answer
        prompts = self._ids([p.prompt for p in pairs])
        chosen = self._ids([p.chosen for p in pairs])
        rejected = self._ids([p.rejected for p in pairs])
        segments = []
        for prompt, good, bad in zip(prompts, chosen, rejected, strict=True):
            prompt, good, bad = fit_pair(prompt, good, bad, limit)
            segments.append((self._segment(prompt, good, bad), self._segment(prompt, bad, good)))
        width = max((len(ids) for pair in segments for ids in pair), default=1)
        rows = len(pairs)
        input_ids = torch.full((rows, 2 * width), self.tokenizer.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros((rows, 2 * width), dtype=torch.long)
        segment_ids = torch.full((rows, 2 * width), PAD_SEGMENT, dtype=torch.long)
        choice_index = torch.zeros((rows, 2), dtype=torch.long)
        for row, pair in enumerate(segments):
            for segment, ids in enumerate(pair):
                start, length = segment * width, len(ids)
                span = slice(start, start + length)
                input_ids[row, span] = torch.tensor(ids)
                position_ids[row, span] = torch.arange(length)
                segment_ids[row, span] = segment
                choice_index[row, segment] = start + length - 1
        return ChoiceBatch(input_ids, position_ids, segment_ids, choice_index)
