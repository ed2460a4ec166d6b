"""Stanford SHP: a Reddit post (`history`) and two comments, `labels` 1 when A is preferred.

Fields read: `history` (the prompt), `human_ref_A`, `human_ref_B` (the answers), `labels`
(exactly 1 → A preferred, 0 → B preferred) and `domain` (the subreddit, e.g.
"askculinary_train"), which becomes the pair's `silo` so `partition_by_field` gives one
silo per domain. SHP's other fields (scores, ids, timestamps) are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protos.errors import InvalidInput
from selector.data import PreferencePair
from selector.format_names import BadRows
from selector.formats._lines import field, pair, text
from selector.formats.rows import read_rows

FORMAT = "shp"


def parse_shp(record: dict[str, Any], where: str) -> PreferencePair:
    """One SHP row as a pair; InvalidInput naming `where` and the field otherwise."""
    prompt = text(record, "history", where)
    answer_a = text(record, "human_ref_A", where)
    answer_b = text(record, "human_ref_B", where)
    label = field(record, "labels", where)
    # bool is an int in Python; `true` is not a label SHP writes.
    if isinstance(label, bool) or label not in (0, 1):
        raise InvalidInput(f"{where}: field 'labels' must be 1 (A preferred) or 0 (B)")
    domain = text(record, "domain", where)
    chosen, rejected = (answer_a, answer_b) if label == 1 else (answer_b, answer_a)
    return pair(where, prompt, chosen, rejected, domain, "fields 'human_ref_A' and 'human_ref_B'")


def read_shp(path: str | Path, bad_rows: BadRows = "skip") -> list[PreferencePair]:
    """The pairs of an SHP file (one JSON object per line); bad rows as `rows.read_rows`."""
    return read_rows(path, parse_shp, bad_rows).pairs
