"""Reading a preference file row by row, skipping and reporting the rows that are unusable.

Real exports have a few broken rows (HH-RLHF: empty final Assistant turns, chosen and
rejected continuing different dialogues; duplicated lines; stray non-UTF-8 bytes). By
default such a row is skipped and the read reports how many and which (`PairFile.summary`);
`bad_rows="fail"` stops at the first, naming file:line and the field. Either way a file
where more than `MAX_SKIPPED_FRACTION` of the rows are unusable fails: that is the wrong
format or a damaged file, not a few quirks, and training on its remainder would mislead.

A duplicate row (same prompt, answers and partition key as an earlier one) is skipped: a
pair is the unit of privacy for DP-SGD, and a copy would count one record twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protos.errors import InvalidInput
from selector.data import PreferencePair
from selector.format_names import BadRows
from selector.formats._lines import json_object, numbered_lines

RowParser = Callable[[dict[str, Any], str], PreferencePair]

MAX_SKIPPED_FRACTION = 0.25
"""A file with more unusable rows than this fraction fails even when bad rows are skipped."""

SHOWN_REASONS = 5
SHOWN_LINES = 5
"""A summary names at most this many reasons, and this many line numbers for each."""


@dataclass(frozen=True)
class SkippedRow:
    """A row left out of the read: its 1-based line number and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class PairFile:
    """What a read yielded: the usable pairs, and the rows skipped with their reasons."""

    path: Path
    pairs: list[PreferencePair]
    skipped: list[SkippedRow]

    @property
    def rows(self) -> int:
        """Non-blank rows in the file."""
        return len(self.pairs) + len(self.skipped)

    def skipped_lines(self) -> str:
        """The skipped rows grouped by reason, with their first line numbers:
        "reason (lines 3, 9); other reason (line 12)"."""
        by_reason: dict[str, list[int]] = {}
        for row in self.skipped:
            by_reason.setdefault(row.reason, []).append(row.line)
        parts = []
        for reason, lines in list(by_reason.items())[:SHOWN_REASONS]:
            shown = ", ".join(str(line) for line in lines[:SHOWN_LINES])
            more = f" and {len(lines) - SHOWN_LINES} more" if len(lines) > SHOWN_LINES else ""
            parts.append(f"{reason} ({'line' if len(lines) == 1 else 'lines'} {shown}{more})")
        if len(by_reason) > SHOWN_REASONS:
            parts.append(f"and {len(by_reason) - SHOWN_REASONS} other reasons")
        return "; ".join(parts)

    def summary(self) -> str:
        """One line for logs and CLIs: pairs read, and the skipped rows if any."""
        head = f"{self.path}: {len(self.pairs)} pairs from {self.rows} rows"
        if not self.skipped:
            return head
        share = 100 * len(self.skipped) / self.rows
        return f"{head}, skipped {len(self.skipped)} ({share:.1f}%): {self.skipped_lines()}"


def read_rows(
    path: str | Path,
    parse: RowParser,
    bad_rows: BadRows = "skip",
    *,
    duplicates_are_bad: bool = True,
) -> PairFile:
    """Every pair `parse` makes of `path`'s JSON-object lines (`.gz` decompressed).

    Raises InvalidInput for an unreadable or empty file, for the first bad row when
    `bad_rows` is "fail", and when more than MAX_SKIPPED_FRACTION of the rows are bad.
    `duplicates_are_bad=False` keeps repeated rows: for files we wrote ourselves, where
    the synthetic benchmark can draw the same pair twice as two independent records.
    """
    path = Path(path)
    pairs: list[PreferencePair] = []
    skipped: list[SkippedRow] = []
    first_seen: dict[tuple[str, str, str, str | None], int] = {}
    for number, raw in numbered_lines(path):
        where = f"{path}:{number}"
        try:
            pair = parse(json_object(raw, where), where)
            key = (pair.prompt, pair.chosen, pair.rejected, pair.silo)
            if duplicates_are_bad and key in first_seen:
                raise InvalidInput(
                    f"{where}: duplicate of line {first_seen[key]} (same prompt and answers)"
                )
        except InvalidInput as exc:
            if bad_rows == "fail":
                raise
            skipped.append(SkippedRow(number, str(exc).removeprefix(f"{where}: ")))
            continue
        first_seen.setdefault(key, number)
        pairs.append(pair)
    read = PairFile(path, pairs, skipped)
    if not pairs and not skipped:
        raise InvalidInput(f"{path}: no preference pairs")
    if len(skipped) > MAX_SKIPPED_FRACTION * read.rows:
        raise InvalidInput(
            f"{path}: {len(skipped)} of {read.rows} rows are unusable (more than "
            f"{MAX_SKIPPED_FRACTION:.0%}; is this the right format?): {read.skipped_lines()}"
        )
    return read
