"""Readers for preference data formats, each returning `selector.data.PreferencePair`s.

`read_pair_file(path, format)` reads a file as one of `PARSERS`' formats and says what it
skipped; `read_pairs` returns only the pairs and logs that. Every reader validates every row;
by default a bad row is skipped and reported (file:line and why), with
`bad_rows="fail"` the first stops the read, and a file that is mostly bad fails either way
(`selector.formats.rows`). Where a format has a natural partition key it lands in
`PreferencePair.silo`: the worker for summarize-from-feedback, the domain for SHP, the
`silo` field for our JSONL.
"""

from __future__ import annotations

import logging
from pathlib import Path

from protos.errors import InvalidInput
from selector.data import PreferencePair, parse_pair_record
from selector.format_names import BadRows, PairFormat
from selector.formats.hh_rlhf import parse_hh_rlhf, read_hh_rlhf
from selector.formats.rows import PairFile, RowParser, SkippedRow, read_rows
from selector.formats.shp import parse_shp, read_shp
from selector.formats.summarize import parse_summarize_comparison, read_summarize_comparisons

PARSERS: dict[str, RowParser] = {
    "jsonl": parse_pair_record,
    "hh-rlhf": parse_hh_rlhf,
    "shp": parse_shp,
    "summarize-from-feedback": parse_summarize_comparison,
}

__all__ = [
    "PARSERS",
    "BadRows",
    "PairFile",
    "PairFormat",
    "SkippedRow",
    "read_hh_rlhf",
    "read_pair_file",
    "read_pairs",
    "read_shp",
    "read_summarize_comparisons",
]

_log = logging.getLogger(__name__)


def read_pair_file(path: str | Path, format: PairFormat, bad_rows: BadRows = "skip") -> PairFile:
    """`path` read as `format` (one of `PARSERS`), with the rows it skipped."""
    parse = PARSERS.get(format)
    if parse is None:
        raise InvalidInput(
            f"unknown preference data format {format!r}: use one of {', '.join(PARSERS)}"
        )
    return read_rows(path, parse, bad_rows)


def read_pairs(
    path: str | Path, format: PairFormat, bad_rows: BadRows = "skip"
) -> list[PreferencePair]:
    """The pairs of `path` read as `format`; skipped rows are logged as a warning."""
    read = read_pair_file(path, format, bad_rows)
    if read.skipped:
        _log.warning("%s", read.summary())
    return read.pairs
