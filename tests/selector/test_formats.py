import gzip
import json
from pathlib import Path

import pytest

from protos.errors import InvalidInput
from selector.data import PreferencePair, read_jsonl
from selector.formats import (
    PARSERS,
    read_hh_rlhf,
    read_pairs,
    read_shp,
    read_summarize_comparisons,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def _write(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# --- valid files -------------------------------------------------------------------------


def test_hh_rlhf_splits_each_transcript_at_its_last_assistant_turn():
    pairs = read_hh_rlhf(FIXTURES / "hh_rlhf.jsonl")
    assert len(pairs) == 3
    assert pairs[0] == PreferencePair(
        "Human: How do I keep basil fresh?",
        "Trim the stems and keep it in a glass of water on the counter.",
        "Put it in the freezer.",
        None,
    )
    # Multi-turn: the earlier Assistant turn stays in the prompt.
    assert pairs[1].prompt == (
        "Human: What is a good first pet?\n\nAssistant: Do you have a lot of space?"
        "\n\nHuman: No, a small flat."
    )
    assert pairs[1].rejected == "A horse."


def test_hh_rlhf_reads_gzipped_files_as_published(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(gzip.compress((FIXTURES / "hh_rlhf.jsonl").read_bytes()))
    assert read_hh_rlhf(path) == read_hh_rlhf(FIXTURES / "hh_rlhf.jsonl")


def test_shp_label_one_prefers_a_and_the_domain_is_the_silo():
    pairs = read_shp(FIXTURES / "shp.jsonl")
    culinary, history = "askculinary_train", "askhistorians_train"
    assert [p.silo for p in pairs] == [culinary, culinary, history]
    assert pairs[0].chosen.startswith("Your dough is probably under-proofed")  # labels 1: A
    assert pairs[1].chosen.startswith("A short simmer")  # labels 0: B
    assert pairs[1].rejected == "Never, it will poison you."
    assert pairs[2].prompt == "How did medieval towns get clean water?"


def test_summarize_choice_picks_the_summary_and_the_worker_is_the_silo():
    pairs = read_summarize_comparisons(FIXTURES / "summarize_comparisons.jsonl")
    assert [p.silo for p in pairs] == ["worker-a", "worker-b", "worker-a"]
    assert pairs[0].chosen == " Moved for work, lonely on weekends, how do I meet people?"
    assert pairs[1].chosen.startswith(" Roommate skips dishes")  # choice 1
    assert pairs[1].rejected == " Roommate."
    assert pairs[2].prompt.startswith("The city council voted")  # CNN/DM: the article


def test_read_pairs_dispatches_by_format_and_reuses_our_jsonl_reader():
    assert read_pairs(FIXTURES / "pairs.jsonl", "jsonl") == read_jsonl(FIXTURES / "pairs.jsonl")
    assert read_pairs(FIXTURES / "shp.jsonl", "shp") == read_shp(FIXTURES / "shp.jsonl")
    assert set(PARSERS) == {"jsonl", "hh-rlhf", "shp", "summarize-from-feedback"}
    with pytest.raises(InvalidInput, match="unknown preference data format 'csv'"):
        read_pairs(FIXTURES / "pairs.jsonl", "csv")  # type: ignore[arg-type]


# --- broken fixture files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "format", "line", "message"),
    [
        ("hh_rlhf_broken.jsonl", "hh-rlhf", 2, "'chosen' and 'rejected' continue different"),
        ("shp_broken.jsonl", "shp", 3, "field 'labels' must be 1 \\(A preferred\\) or 0"),
        ("summarize_comparisons_broken.jsonl", "summarize-from-feedback", 2, "field 'choice'"),
    ],
)
def test_broken_fixture_is_refused_at_its_line_when_bad_rows_are_fatal(name, format, line, message):
    path = FIXTURES / name
    with pytest.raises(InvalidInput, match=message) as error:
        read_pairs(path, format, bad_rows="fail")
    assert str(error.value).startswith(f"{path}:{line}: ")


# --- broken lines, one field at a time ---------------------------------------------------

_HH = _lines("hh_rlhf.jsonl")[0]
_SHP = _lines("shp.jsonl")[0]
_SUMMARIZE = _lines("summarize_comparisons.jsonl")[0]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"chosen": _HH["chosen"]}, "missing field 'rejected'"),
        ({**_HH, "prompt": "x"}, "unknown field 'prompt'"),
        ({**_HH, "chosen": 3}, "field 'chosen' must be a string"),
        ({**_HH, "chosen": "Human: hi, no assistant"}, "field 'chosen' has no .*Assistant:' turn"),
        (
            {**_HH, "rejected": _HH["rejected"].split("Assistant:")[0] + "Assistant:  "},
            "field 'rejected' ends with an empty Assistant turn",
        ),
        ({**_HH, "chosen": "\n\nAssistant: hello"}, "field 'chosen' has no dialogue before"),
        ({**_HH, "rejected": _HH["chosen"]}, "are identical"),
    ],
)
def test_hh_rlhf_broken_lines_name_the_field(tmp_path, record, message):
    path = _write(tmp_path / "hh.jsonl", [_HH, record])
    with pytest.raises(InvalidInput, match=message) as error:
        read_hh_rlhf(path, bad_rows="fail")
    assert str(error.value).startswith(f"{path}:2: ")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({k: v for k, v in _SHP.items() if k != "history"}, "missing field 'history'"),
        ({**_SHP, "human_ref_B": ""}, "field 'human_ref_B' is empty"),
        ({**_SHP, "labels": True}, "field 'labels' must be 1"),
        ({**_SHP, "labels": "1"}, "field 'labels' must be 1"),
        ({k: v for k, v in _SHP.items() if k != "domain"}, "missing field 'domain'"),
        ({**_SHP, "human_ref_B": _SHP["human_ref_A"]}, "'human_ref_A' and 'human_ref_B' are"),
    ],
)
def test_shp_broken_lines_name_the_field(tmp_path, record, message):
    path = _write(tmp_path / "shp.jsonl", [_SHP, record])
    with pytest.raises(InvalidInput, match=message) as error:
        read_shp(path, bad_rows="fail")
    assert str(error.value).startswith(f"{path}:2: ")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({**_SUMMARIZE, "info": {"title": "t"}}, "missing field 'info.post'"),
        ({**_SUMMARIZE, "info": "a post"}, "field 'info' must be an object"),
        ({**_SUMMARIZE, "summaries": _SUMMARIZE["summaries"][:1]}, "list of two summaries"),
        (
            {**_SUMMARIZE, "summaries": [{"text": "a"}, {"policy": "ref"}]},
            "missing field 'summaries\\[1\\].text'",
        ),
        ({**_SUMMARIZE, "summaries": [{"text": "a"}, "b"]}, "'summaries\\[1\\]' must be an object"),
        ({**_SUMMARIZE, "choice": 2}, "field 'choice' must be 0 or 1"),
        ({**_SUMMARIZE, "worker": None}, "field 'worker' must be a string"),
        ({**_SUMMARIZE, "summaries": [{"text": "same"}, {"text": "same"}]}, "are identical"),
    ],
)
def test_summarize_broken_lines_name_the_field(tmp_path, record, message):
    path = _write(tmp_path / "comparisons.json", [_SUMMARIZE, record])
    with pytest.raises(InvalidInput, match=message) as error:
        read_summarize_comparisons(path, bad_rows="fail")
    assert str(error.value).startswith(f"{path}:2: ")


@pytest.mark.parametrize("format", sorted(PARSERS))
def test_every_reader_reports_bad_json_bad_bytes_and_empty_files(tmp_path, format):
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('\n{"chosen": \n')
    with pytest.raises(InvalidInput, match=f"{bad_json}:2: not valid JSON"):
        read_pairs(bad_json, format, bad_rows="fail")
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes('{"history": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(InvalidInput, match=f"{latin1}:1: not UTF-8"):
        read_pairs(latin1, format, bad_rows="fail")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InvalidInput, match="no preference pairs"):
        read_pairs(empty, format)
    with pytest.raises(InvalidInput, match="cannot read"):
        read_pairs(tmp_path / "absent.jsonl", format)


def test_a_truncated_gzip_file_is_reported(tmp_path):
    path = tmp_path / "train.jsonl.gz"
    path.write_bytes(gzip.compress((FIXTURES / "hh_rlhf.jsonl").read_bytes())[:-8])
    with pytest.raises(InvalidInput, match="not a complete gzip file"):
        read_hh_rlhf(path)
