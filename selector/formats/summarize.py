"""OpenAI summarize-from-feedback comparisons: a post, two summaries, the worker's choice.

Fields read: `info.post` (the prompt; CNN/DM lines, which carry `info.article` and no post,
use the article), `summaries` (exactly two objects with a `text`), `choice` (0 or 1, the
index of the preferred summary) and `worker` (the labeller's id), which becomes the pair's
`silo` so `partition_by_field` gives one silo per labeller, the natural federated split of
this dataset. Other fields (`split`, `batch`, `extra`, policies) are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protos.errors import InvalidInput
from selector.data import PreferencePair
from selector.format_names import BadRows
from selector.formats._lines import field, pair, text
from selector.formats.rows import read_rows

FORMAT = "summarize-from-feedback"


def _prompt(record: dict[str, Any], where: str) -> str:
    info = field(record, "info", where)
    if not isinstance(info, dict):
        raise InvalidInput(f"{where}: field 'info' must be an object")
    if info.get("post") is None and info.get("article") is not None:
        return text(record, "info.article", where)
    return text(record, "info.post", where)


def parse_summarize_comparison(record: dict[str, Any], where: str) -> PreferencePair:
    """One comparison row as a pair; InvalidInput naming `where` and the field otherwise."""
    prompt = _prompt(record, where)
    summaries = field(record, "summaries", where)
    if not isinstance(summaries, list) or len(summaries) != 2:
        raise InvalidInput(f"{where}: field 'summaries' must be a list of two summaries")
    answers = []
    for index, summary in enumerate(summaries):
        if not isinstance(summary, dict):
            raise InvalidInput(f"{where}: field 'summaries[{index}]' must be an object")
        answers.append(text(summary, "text", where, label=f"summaries[{index}].text"))
    choice = field(record, "choice", where)
    if isinstance(choice, bool) or choice not in (0, 1):
        raise InvalidInput(f"{where}: field 'choice' must be 0 or 1 (the preferred summary)")
    worker = text(record, "worker", where)
    return pair(where, prompt, answers[choice], answers[1 - choice], worker, "the two summaries")


def read_summarize_comparisons(
    path: str | Path, bad_rows: BadRows = "skip"
) -> list[PreferencePair]:
    """The pairs of a comparisons file (one JSON object per line); bad rows as
    `rows.read_rows`."""
    return read_rows(path, parse_summarize_comparison, bad_rows).pairs
