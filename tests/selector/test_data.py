import json

import pytest

from protos.errors import InvalidInput
from selector.data import PAD_HALF, PreferencePair, read_jsonl, write_jsonl

GOOD = '{"prompt": "p", "chosen": "yes", "rejected": "no"}'


def test_jsonl_round_trips_pairs_with_and_without_silo(tmp_path):
    pairs = [
        PreferencePair("How?", "Carefully.", "Somehow.", silo="silo-1"),
        PreferencePair("Why? ünïcode", "Because.", "Dunno.", silo=None),
    ]
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, pairs)
    assert read_jsonl(path) == pairs
    assert "silo" not in json.loads(path.read_text().splitlines()[1])


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(f"{GOOD}\n\n{GOOD}\n")
    assert len(read_jsonl(path)) == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "p", "chosen": "yes"', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"prompt": "p", "chosen": "yes"}', "missing field 'rejected'"),
        ('{"prompt": "p", "chosen": 3, "rejected": "no"}', "field 'chosen' must be a string"),
        ('{"prompt": "  ", "chosen": "yes", "rejected": "no"}', "field 'prompt' is empty"),
        ('{"prompt": "p", "chosen": "same", "rejected": "same"}', "'chosen' and 'rejected' are"),
        ('{"prompt": "p", "chosen": "a", "rejected": "b", "label": 1}', "unknown field 'label'"),
        ('{"prompt": "p", "chosen": "a", "rejected": "b", "silo": 7}', "field 'silo' must be"),
    ],
)
def test_broken_line_is_reported_with_file_and_line(tmp_path, line, message):
    path = tmp_path / "broken.jsonl"
    path.write_text(f"{GOOD}\n{GOOD}\n{line}\n")
    with pytest.raises(InvalidInput, match=message) as error:
        read_jsonl(path)
    assert str(error.value).startswith(f"{path}:3:")


def test_undecodable_line_and_missing_file_are_reported(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + '{"prompt": "caf\u00e9"}'.encode("latin-1") + b"\n")
    with pytest.raises(InvalidInput, match=f"{path}:2: not UTF-8"):
        read_jsonl(path)
    with pytest.raises(InvalidInput, match="cannot read"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(InvalidInput, match="no preference pairs"):
        read_jsonl(path)


def test_encoder_puts_chosen_first_and_restarts_positions(tiny_encoder):
    pair = PreferencePair("Hi there", "a long chosen answer", "no")
    batch = tiny_encoder.encode([pair])
    width = batch.input_ids.shape[1] // 2
    tokenizer = tiny_encoder.tokenizer
    side_a = batch.input_ids[0, :width][batch.half_ids[0, :width] == 0].tolist()
    assert side_a == tokenizer(pair.prompt, pair.chosen)["input_ids"]
    side_b = batch.input_ids[0, width:][batch.half_ids[0, width:] == 1]
    assert side_b.tolist() == tokenizer(pair.prompt, pair.rejected)["input_ids"]
    assert batch.position_ids[0, width] == 0
    assert batch.position_ids[0, width + len(side_b) - 1] == len(side_b) - 1
    assert (batch.half_ids[0, width + len(side_b) :] == PAD_HALF).all()


def test_encoder_truncates_each_side_to_max_tokens(tiny_encoder):
    long_text = " ".join(["word"] * 200)
    batch = tiny_encoder.encode([PreferencePair(long_text, long_text, "short")])
    limit = tiny_encoder.max_tokens_per_answer
    assert batch.input_ids.shape[1] == 2 * limit
    assert int((batch.half_ids == 0).sum()) == limit
