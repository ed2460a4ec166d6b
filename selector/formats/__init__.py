"""Readers for preference data formats, each returning `selector.data.PreferencePair`s.

`read_pairs(path, format)` dispatches by format name. Every reader validates every line and
stops at the first problem with an `InvalidInput` naming file:line and the field. Where a
format has a natural partition key it lands in `PreferencePair.silo`: the worker for
summarize-from-feedback, the domain for SHP, the `silo` field for our JSONL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from protos.errors import InvalidInput
from selector.data import PreferencePair
from selector.formats.hh_rlhf import read_hh_rlhf
from selector.formats.jsonl import read_jsonl
from selector.formats.shp import read_shp
from selector.formats.summarize import read_summarize_comparisons

PairFormat = Literal["jsonl", "hh-rlhf", "shp", "summarize-from-feedback"]

READERS: dict[str, Callable[[str | Path], list[PreferencePair]]] = {
    "jsonl": read_jsonl,
    "hh-rlhf": read_hh_rlhf,
    "shp": read_shp,
    "summarize-from-feedback": read_summarize_comparisons,
}

__all__ = [
    "READERS",
    "PairFormat",
    "read_hh_rlhf",
    "read_jsonl",
    "read_pairs",
    "read_shp",
    "read_summarize_comparisons",
]


def read_pairs(path: str | Path, format: PairFormat) -> list[PreferencePair]:
    """All pairs of `path` read as `format` (one of `READERS`)."""
    reader = READERS.get(format)
    if reader is None:
        raise InvalidInput(
            f"unknown preference data format {format!r}: use one of {', '.join(READERS)}"
        )
    return reader(path)
