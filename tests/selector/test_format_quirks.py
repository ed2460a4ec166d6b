"""Real exports have a few broken rows: the readers skip and report them, unless told not to.

The quirks are those of the published files: HH-RLHF rows whose final Assistant turn is
empty or whose two transcripts continue different dialogues (0.5% of its harmless-base test
split), duplicated lines, stray non-UTF-8 bytes, SHP and summarize-from-feedback rows with
missing fields or no preference (a tie), and very long texts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protos.errors import InvalidInput
from selector.formats import read_pair_file, read_pairs

LONG = "word " * 40_000  # ~200 kB: long posts exist; the encoder truncates, the reader must not


def _hh(question: str, answer: str, earlier: str = "") -> str:
    return f"\n\nHuman: {question}{earlier}\n\nAssistant: {answer}"


def _hh_row(index: int) -> dict[str, str]:
    question = f"Question number {index}?"
    return {"chosen": _hh(question, f"A careful answer {index}."), "rejected": _hh(question, "No.")}


def _write(path: Path, rows: list[dict | bytes]) -> Path:
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _hh_export(path: Path) -> Path:
    """20 good rows, then the four quirks at lines 21-24, then a long good row."""
    rows: list[dict | bytes] = [_hh_row(i) for i in range(20)]
    rows.append({"chosen": _hh("Why?", "Because."), "rejected": _hh("Why?", "")})  # empty turn
    rows.append({"chosen": _hh("Why?", "Because."), "rejected": _hh("How?", "Like so.")})
    rows.append(_hh_row(3))  # a duplicated line
    rows.append('{"chosen": "caf\u00e9", "rejected": "tea"}'.encode("latin-1"))
    rows.append({"chosen": _hh(LONG, "Yes."), "rejected": _hh(LONG, "No.")})
    return _write(path, rows)


def test_hh_rlhf_export_quirks_are_skipped_and_reported_by_line_and_reason(tmp_path):
    path = _hh_export(tmp_path / "harmless-base.jsonl")

    read = read_pair_file(path, "hh-rlhf")

    assert len(read.pairs) == 21 and read.rows == 25
    assert [(s.line, s.reason) for s in read.skipped] == [
        (21, "field 'rejected' ends with an empty Assistant turn"),
        (
            22,
            "fields 'chosen' and 'rejected' continue different dialogues (everything before "
            "the last Assistant turn must be the same)",
        ),
        (23, "duplicate of line 4 (same prompt and answers)"),
        (24, "not UTF-8 text"),
    ]
    assert read.summary().startswith(
        f"{path}: 21 pairs from 25 rows, skipped 4 (16.0%): field 'rejected' ends with an empty "
        "Assistant turn (line 21); fields 'chosen' and 'rejected' continue different"
    )
    assert read.pairs[-1].prompt.startswith("Human: word word")  # the long row, whole
    assert len(read.pairs[-1].prompt) > len(LONG)


def test_bad_rows_fail_stops_at_the_first_bad_row(tmp_path):
    path = _hh_export(tmp_path / "harmless-base.jsonl")

    with pytest.raises(InvalidInput, match="ends with an empty Assistant turn") as refused:
        read_pairs(path, "hh-rlhf", bad_rows="fail")

    assert str(refused.value).startswith(f"{path}:21: ")


def test_a_mostly_bad_file_fails_even_when_bad_rows_are_skipped(tmp_path):
    path = _hh_export(tmp_path / "harmless-base.jsonl")

    with pytest.raises(InvalidInput) as refused:
        read_pairs(path, "shp")  # the wrong format: no row has SHP's fields

    message = str(refused.value)
    assert message.startswith(f"{path}: 25 of 25 rows are unusable (more than 25%")
    assert message.endswith(
        "missing field 'history' (lines 1, 2, 3, 4, 5 and 19 more); not UTF-8 text (line 24)"
    )


def test_a_few_skipped_rows_are_logged_by_read_pairs(tmp_path, caplog):
    path = _hh_export(tmp_path / "harmless-base.jsonl")

    with caplog.at_level("WARNING"):
        pairs = read_pairs(path, "hh-rlhf")

    assert len(pairs) == 21
    assert "skipped 4 (16.0%): field 'rejected' ends with an empty Assistant turn (line 21)" in (
        caplog.text
    )


def _shp_row(index: int, **changes: object) -> dict[str, object]:
    row = {
        "post_id": f"p{index}",
        "domain": "askculinary_train",
        "history": f"Why is my bread dense, attempt {index}?",
        "human_ref_A": "Let it rise until doubled.",
        "human_ref_B": "Buy bread.",
        "labels": 1,
        "score_A": 10,
        "score_B": 2,
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not None}


def test_shp_rows_with_missing_fields_or_no_preference_are_skipped(tmp_path):
    rows: list[dict | bytes] = [_shp_row(i) for i in range(12)]
    rows.append(_shp_row(12, domain=None))  # missing field
    rows.append(_shp_row(13, human_ref_B="Let it rise until doubled."))  # a tie: same answer
    rows.append(_shp_row(14, labels=None))  # no label
    rows.append(_shp_row(15, history=LONG))
    path = _write(tmp_path / "shp.json", rows)

    read = read_pair_file(path, "shp")

    assert len(read.pairs) == 13
    assert [(s.line, s.reason) for s in read.skipped] == [
        (13, "missing field 'domain'"),
        (14, "fields 'human_ref_A' and 'human_ref_B' are identical, so there is no preference"),
        (15, "missing field 'labels'"),
    ]


def _comparison(index: int, worker: str = "w1", **changes: object) -> dict[str, object]:
    row = {
        "info": {"id": f"t3_{index}", "post": f"A long story number {index}.", "title": "t"},
        "summaries": [{"text": f" Story {index}, told well."}, {"text": " A story."}],
        "choice": 0,
        "worker": worker,
    }
    row.update(changes)
    return {k: v for k, v in row.items() if v is not None}


def test_summarize_quirks_are_skipped_but_two_workers_judging_one_pair_are_two_records(tmp_path):
    rows: list[dict | bytes] = [_comparison(i) for i in range(12)]
    rows.append(_comparison(0, worker="w2"))  # the same comparison by another labeller: kept
    rows.append(_comparison(1))  # the same labeller again: a duplicate
    rows.append(_comparison(13, choice=None))
    rows.append(_comparison(14, summaries=[{"text": " Same."}, {"text": " Same."}]))
    path = _write(tmp_path / "comparisons.json", rows)

    read = read_pair_file(path, "summarize-from-feedback")

    assert len(read.pairs) == 13 and read.pairs[-1].silo == "w2"
    assert [(s.line, s.reason) for s in read.skipped] == [
        (14, "duplicate of line 2 (same prompt and answers)"),
        (15, "missing field 'choice'"),
        (16, "the two summaries are identical, so there is no preference"),
    ]


def test_our_jsonl_skips_bad_rows_too(tmp_path):
    good = [{"prompt": f"p{i}", "chosen": "yes", "rejected": "no"} for i in range(9)]
    path = _write(tmp_path / "pairs.jsonl", [*good, {"prompt": "p", "chosen": "yes"}])

    read = read_pair_file(path, "jsonl")

    assert len(read.pairs) == 9
    assert read.skipped_lines() == "missing field 'rejected' (line 10)"
