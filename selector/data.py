"""Preference pairs: the JSONL file format silos keep locally, and their encoding for the model.

A pair becomes ONE model row, [prompt+answer_a | prompt+answer_b], so a row is one
example for DP-SGD's per-example clipping (a pair is the unit of privacy).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from protos.errors import InvalidInput

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


@dataclass(frozen=True)
class PairBatch:
    """Encoded pairs, one row each: side a in slots [0, L), side b in [L, 2L).

    `half_ids` says which side a slot belongs to (PAD_HALF for padding); positions restart
    at 0 in each half. All tensors are [B, 2L] int64; B may be 0 (an empty Poisson batch).
    """

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    position_ids: torch.Tensor
    half_ids: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: torch.Tensor | Sequence[int]) -> PairBatch:
        """The given rows (a Poisson sample), in order."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return PairBatch(
            self.input_ids[rows],
            self.token_type_ids[rows],
            self.position_ids[rows],
            self.half_ids[rows],
        )

    def to(self, device: torch.device) -> PairBatch:
        return PairBatch(
            self.input_ids.to(device),
            self.token_type_ids.to(device),
            self.position_ids.to(device),
            self.half_ids.to(device),
        )


class PairEncoder:
    """Tokenizes pairs with the chosen answer as side a (so the target logit is always +)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_tokens_per_answer: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens_per_answer = max_tokens_per_answer

    def _side(self, prompts: list[str], answers: list[str]) -> dict[str, list[list[int]]]:
        if not prompts:  # the tokenizer rejects an empty batch
            return {"input_ids": [], "token_type_ids": []}
        return self.tokenizer(
            prompts,
            answers,
            truncation="longest_first",
            max_length=self.max_tokens_per_answer,
            return_token_type_ids=True,
            return_attention_mask=False,
        )

    def encode(self, pairs: Sequence[PreferencePair]) -> PairBatch:
        prompts = [p.prompt for p in pairs]
        side_a = self._side(prompts, [p.chosen for p in pairs])
        side_b = self._side(prompts, [p.rejected for p in pairs])
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
