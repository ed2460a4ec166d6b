"""How a preference pair is cut to the model's window: the answers first, then the END of the
prompt, and the same prompt tokens for both answers.

Where a chosen and a rejected text differ is in the answers, and in a multi-turn dialogue
the turns that matter to them are the last ones. Cutting a pair with the tokenizer's
"longest_first" keeps the first Human turn and drops the end of the dialogue and most of the
answers, which is what a selector needs most. Here:

1. each answer keeps its head and its tail when it does not fit (openings and closing
   caveats both count; head+tail is also the best of the simple cuts for long-text
   classification in Sun et al., "How to Fine-Tune BERT for Text Classification?", 2019);
   the prompt is guaranteed a quarter of the window (its last turns) if it has that much;
2. the prompt then fills what the longer answer leaves, keeping its LAST tokens, so both
   sides of a pair read exactly the same prompt tokens (a side never wins on context).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

PROMPT_SHARE = 4
"""The prompt is guaranteed 1/PROMPT_SHARE of the window (its last tokens), if it is that long."""

HEAD_SHARE = 2 / 3
"""A cut answer keeps this share of its room from its beginning and the rest from its end."""


def head_and_tail(ids: list[int], limit: int) -> list[int]:
    """`ids` itself when it fits in `limit`, else its first and last tokens (limit in all)."""
    if len(ids) <= limit:
        return ids
    if limit <= 0:
        return []
    head = round(limit * HEAD_SHARE)
    tail = limit - head
    return ids[:head] + (ids[-tail:] if tail else [])


def fit_pair(
    prompt: list[int], chosen: list[int], rejected: list[int], window: int
) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) cut so that prompt + either answer ≤ `window` tokens.

    The prompt returned is the same for both answers: its last tokens, as many as the longer
    answer leaves.
    """
    if window < 1:
        raise ValueError(f"the window must hold at least one token, got {window}")
    prompt_floor = min(len(prompt), window // PROMPT_SHARE)
    room = window - prompt_floor
    chosen, rejected = head_and_tail(chosen, room), head_and_tail(rejected, room)
    prompt_room = window - max(len(chosen), len(rejected))
    return prompt[len(prompt) - min(prompt_room, len(prompt)) :], chosen, rejected


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a (text, text_pair) input, learnt once
    from the tokenizer itself, so any encoder's template ([CLS] a [SEP] b [SEP], <s> a </s></s>
    b </s>, …) is honoured for token ids cut by `fit_pair`."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    first_type: int
    second_type: int
    prefix_types: tuple[int, ...]
    middle_types: tuple[int, ...]
    suffix_types: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase) -> PairTemplate:
        first, second = _marker_ids(tokenizer)
        encoded = tokenizer(
            tokenizer.decode([first]),
            tokenizer.decode([second]),
            truncation=False,
            return_token_type_ids=True,
            return_attention_mask=False,
        )
        ids, types = list(encoded["input_ids"]), list(encoded["token_type_ids"])
        a, b = ids.index(first), ids.index(second)
        return cls(
            prefix=tuple(ids[:a]),
            middle=tuple(ids[a + 1 : b]),
            suffix=tuple(ids[b + 1 :]),
            first_type=types[a],
            second_type=types[b],
            prefix_types=tuple(types[:a]),
            middle_types=tuple(types[a + 1 : b]),
            suffix_types=tuple(types[b + 1 :]),
        )

    @property
    def added(self) -> int:
        """Special tokens the template adds to a pair of texts."""
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def join(self, first: list[int], second: list[int]) -> tuple[list[int], list[int]]:
        """(input ids, token type ids) of `first` and `second` inside the template."""
        ids = [*self.prefix, *first, *self.middle, *second, *self.suffix]
        types = [
            *self.prefix_types,
            *[self.first_type] * len(first),
            *self.middle_types,
            *[self.second_type] * len(second),
            *self.suffix_types,
        ]
        return ids, types


def _marker_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    """Two ordinary one-token words, distinct from every special token."""
    special = set(tokenizer.all_special_ids)
    found = []
    for word in ("a", "b", "c", "x", "y", "z", "the", "and"):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] not in special and ids[0] not in found:
            found.append(ids[0])
        if len(found) == 2:
            return found[0], found[1]
    raise ValueError(f"{type(tokenizer).__name__}: no one-token marker words to learn its template")
