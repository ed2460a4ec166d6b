"""Anthropic HH-RLHF: `{"chosen": transcript, "rejected": transcript}` per line.

Each transcript is a dialogue ("\\n\\nHuman: …\\n\\nAssistant: …", possibly several turns)
and the two differ only in the last Assistant turn. The prompt is everything before the
last "\\n\\nAssistant:" (the dialogue so far, whitespace-trimmed), the answers are what
follows it. A line whose two transcripts do not share that prompt is refused: it is not a
comparison of two answers to one conversation. The format has no partition key, so
`silo` is left unset (partition with `selector.benchmark.partition.partition_iid`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from protos.errors import InvalidInput
from selector.data import PreferencePair
from selector.format_names import BadRows
from selector.formats._lines import pair, text
from selector.formats.rows import read_rows

FORMAT = "hh-rlhf"
ASSISTANT_TURN = "\n\nAssistant:"
_FIELDS = ("chosen", "rejected")


def _split(transcript: str, name: str, where: str) -> tuple[str, str]:
    cut = transcript.rfind(ASSISTANT_TURN)
    if cut < 0:
        raise InvalidInput(f"{where}: field {name!r} has no '\\n\\nAssistant:' turn")
    prompt, answer = transcript[:cut], transcript[cut + len(ASSISTANT_TURN) :].strip()
    if not prompt.strip():
        raise InvalidInput(f"{where}: field {name!r} has no dialogue before its last answer")
    if not answer:
        raise InvalidInput(f"{where}: field {name!r} ends with an empty Assistant turn")
    return prompt, answer


def parse_hh_rlhf(record: dict[str, Any], where: str) -> PreferencePair:
    """One HH-RLHF row as a pair; InvalidInput naming `where` and the field otherwise."""
    unknown = sorted(set(record) - set(_FIELDS))
    if unknown:
        raise InvalidInput(f"{where}: unknown field {unknown[0]!r} (HH-RLHF has {_FIELDS})")
    prompt, chosen = _split(text(record, "chosen", where), "chosen", where)
    other_prompt, rejected = _split(text(record, "rejected", where), "rejected", where)
    if prompt != other_prompt:
        raise InvalidInput(
            f"{where}: fields 'chosen' and 'rejected' continue different dialogues "
            "(everything before the last Assistant turn must be the same)"
        )
    answers = "the last Assistant turns of 'chosen' and 'rejected'"
    return pair(where, prompt.strip(), chosen, rejected, None, answers)


def read_hh_rlhf(path: str | Path, bad_rows: BadRows = "skip") -> list[PreferencePair]:
    """The pairs of an HH-RLHF file (`.jsonl` or `.jsonl.gz`); bad rows as `rows.read_rows`."""
    return read_rows(path, parse_hh_rlhf, bad_rows).pairs
