"""Preference pairs: the JSONL file format silos keep locally, and their encoding for the model.

A pair becomes ONE model row, [prompt+answer_a | prompt+answer_b], so a row is one
example for DP-SGD's per-example clipping (a pair is the unit of privacy).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Self

import torch
from transformers import PreTrainedTokenizerBase

from protos.errors import InvalidInput
from selector.truncation import PairTemplate, fit_pair

PAD_HALF = 2
"""`half_ids` value of padding slots (0 = side a, 1 = side b)."""

_TEXT_FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferencePair:
    """A prompt and two answers, `chosen` preferred by a person; `silo` is provenance only."""

    prompt: str
    chosen: str
    rejected: str
    silo: str | None = None


def parse_pair_record(record: dict[str, Any], where: str) -> PreferencePair:
    """One row of our JSONL as a pair; InvalidInput naming `where` and the field otherwise."""
    unknown = sorted(set(record) - {*_TEXT_FIELDS, "silo"})
    if unknown:
        raise InvalidInput(f"{where}: unknown field {unknown[0]!r}")
    for field in _TEXT_FIELDS:
        if field not in record:
            raise InvalidInput(f"{where}: missing field {field!r}")
        value = record[field]
        if not isinstance(value, str):
            raise InvalidInput(f"{where}: field {field!r} must be a string")
        if not value.strip():
            raise InvalidInput(f"{where}: field {field!r} is empty")
    silo = record.get("silo")
    if silo is not None and not isinstance(silo, str):
        raise InvalidInput(f"{where}: field 'silo' must be a string or null")
    if record["chosen"] == record["rejected"]:
        raise InvalidInput(f"{where}: fields 'chosen' and 'rejected' are identical")
    return PreferencePair(record["prompt"], record["chosen"], record["rejected"], silo)


def read_jsonl(path: str | Path) -> list[PreferencePair]:
    """All pairs of a JSONL file we wrote (write_jsonl); blank lines are skipped, anything
    malformed stops the read. Files from elsewhere: `selector.formats.read_pair_file`."""
    from selector.formats.rows import read_rows  # the formats package imports this module

    return read_rows(path, parse_pair_record, bad_rows="fail", duplicates_are_bad=False).pairs


def write_jsonl(path: str | Path, pairs: Iterable[PreferencePair]) -> None:
    """Writes pairs in the format read_jsonl reads (`silo` only where it is set)."""
    with Path(path).open("w", encoding="utf-8") as handle:
        for pair in pairs:
            record = {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
            if pair.silo is not None:
                record["silo"] = pair.silo
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


class RowTensors:
    """For a frozen dataclass whose fields are all tensors of one row per pair: its length,
    a subset of rows and a move to a device, field by field."""

    def _each(self, change: Callable[[torch.Tensor], torch.Tensor]) -> Self:
        return type(self)(*(change(getattr(self, field.name)) for field in fields(self)))

    def __len__(self) -> int:
        return getattr(self, fields(self)[0].name).shape[0]

    def select(self, rows: torch.Tensor | Sequence[int]) -> Self:
        """The given rows (a Poisson sample), in order."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return self._each(lambda tensor: tensor[rows])

    def to(self, device: torch.device) -> Self:
        return self._each(lambda tensor: tensor.to(device))


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Each text's token ids, whole and without special tokens (the encoders cut them)."""
    if not texts:  # the tokenizer rejects an empty batch
        return []
    # Whole texts, cut later by fit_pair: verbose=False silences the warning about texts
    # longer than the model's limit, which never reach the model.
    return tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)[
        "input_ids"
    ]


@dataclass(frozen=True)
class PairBatch(RowTensors):
    """Encoded pairs, one row each: side a in slots [0, L), side b in [L, 2L).

    `half_ids` says which side a slot belongs to (PAD_HALF for padding); positions restart
    at 0 in each half. All tensors are [B, 2L] int64; B may be 0 (an empty Poisson batch).
    """

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    position_ids: torch.Tensor
    half_ids: torch.Tensor


@dataclass(frozen=True)
class PrefixBatch(RowTensors):
    """Pairs already through a selector's frozen bottom layers (`selector.prefix`):
    `hidden` [B, 2L, H] is their output, `half_ids` [B, 2L] as in the PairBatch they came
    from. Only a selector with the same frozen layers may finish them."""

    hidden: torch.Tensor
    half_ids: torch.Tensor


class PairEncoder:
    """Tokenizes pairs with the chosen answer as side a (so the target logit is always +).

    Each side is [prompt | answer] in the tokenizer's own pair template, at most
    `max_tokens_per_answer` tokens with its special tokens; `selector.truncation.fit_pair`
    decides what is kept (the answers first, then the end of the prompt, the same prompt
    tokens on both sides).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_tokens_per_answer: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens_per_answer = max_tokens_per_answer
        self._template = PairTemplate.of(tokenizer)
        self._window = max_tokens_per_answer - self._template.added
        if self._window < 1:
            raise InvalidInput(
                f"max_tokens_per_answer {max_tokens_per_answer} leaves no room for text after "
                f"the tokenizer's {self._template.added} special tokens"
            )

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return token_ids(self.tokenizer, texts)

    def _sides(
        self, pairs: Sequence[PreferencePair]
    ) -> tuple[dict[str, list[list[int]]], dict[str, list[list[int]]]]:
        side_a: dict[str, list[list[int]]] = {"input_ids": [], "token_type_ids": []}
        side_b: dict[str, list[list[int]]] = {"input_ids": [], "token_type_ids": []}
        texts = zip(
            self._ids([p.prompt for p in pairs]),
            self._ids([p.chosen for p in pairs]),
            self._ids([p.rejected for p in pairs]),
            strict=True,
        )
        for prompt, chosen, rejected in texts:
            prompt, chosen, rejected = fit_pair(prompt, chosen, rejected, self._window)
            for side, answer in ((side_a, chosen), (side_b, rejected)):
                ids, types = self._template.join(prompt, answer)
                side["input_ids"].append(ids)
                side["token_type_ids"].append(types)
        return side_a, side_b

    def encode(self, pairs: Sequence[PreferencePair]) -> PairBatch:
        side_a, side_b = self._sides(pairs)
        width = max(
            (len(ids) for ids in side_a["input_ids"] + side_b["input_ids"]),
            default=1,
        )
        rows = len(pairs)
        input_ids = torch.full((rows, 2 * width), self.tokenizer.pad_token_id, dtype=torch.long)
        token_type_ids = torch.zeros((rows, 2 * width), dtype=torch.long)
        position_ids = torch.zeros((rows, 2 * width), dtype=torch.long)
        half_ids = torch.full((rows, 2 * width), PAD_HALF, dtype=torch.long)
        for half, side in enumerate((side_a, side_b)):
            for row, (ids, types) in enumerate(
                zip(side["input_ids"], side["token_type_ids"], strict=True)
            ):
                start, length = half * width, len(ids)
                span = slice(start, start + length)
                input_ids[row, span] = torch.tensor(ids)
                token_type_ids[row, span] = torch.tensor(types)
                position_ids[row, span] = torch.arange(length)
                half_ids[row, span] = half
        return PairBatch(input_ids, token_type_ids, position_ids, half_ids)
