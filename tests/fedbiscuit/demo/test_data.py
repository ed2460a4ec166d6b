"""`demo --data/--test` splits a partner's files into silos and refuses what it cannot score."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fedbiscuit.demo.data import partner_dataset
from protos.errors import InvalidInput
from selector.benchmark.generator import make_federated_dataset
from selector.data import PreferencePair, write_jsonl


@pytest.fixture(scope="module")
def pairs() -> list[PreferencePair]:
    data = make_federated_dataset(num_silos=1, train_pairs=30, test_pairs=0, seed=2)
    return [replace(pair, silo=None) for pair in data["silo-1"].train]


def _files(tmp_path: Path, train: list[PreferencePair], test: list[PreferencePair]):
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "test.jsonl", test)
    return tmp_path / "train.jsonl", tmp_path / "test.jsonl"


def _tag(pairs: list[PreferencePair], *silos: str) -> list[PreferencePair]:
    return [replace(pair, silo=silos[i % len(silos)]) for i, pair in enumerate(pairs)]


def test_one_silo_per_value_of_the_silo_field(tmp_path, pairs):
    train, test = _files(tmp_path, _tag(pairs[:20], "a", "b"), _tag(pairs[20:], "a"))

    data = partner_dataset(train, test, silos=4, seed=0, max_silos=16)

    assert sorted(data) == ["a", "b"]
    assert [len(data["a"].train), len(data["b"].train)] == [10, 10]
    assert [len(data["a"].test), len(data["b"].test)] == [10, 0]


def test_files_without_a_silo_field_are_split_iid_into_silos(tmp_path, pairs):
    train, test = _files(tmp_path, pairs[:20], pairs[20:])

    data = partner_dataset(train, test, silos=3, seed=0, max_silos=16)

    assert sorted(data) == ["silo-1", "silo-2", "silo-3"]
    assert sorted(len(d.train) for d in data.values()) == [6, 7, 7]
    assert sum(len(d.test) for d in data.values()) == 10


def test_a_test_silo_without_training_data_is_refused(tmp_path, pairs):
    train, test = _files(tmp_path, _tag(pairs[:20], "a"), _tag(pairs[20:], "a", "c"))

    with pytest.raises(InvalidInput, match="silo 'c' has test pairs but no training pairs"):
        partner_dataset(train, test, silos=4, seed=0, max_silos=16)


def test_a_file_where_only_some_pairs_name_a_silo_is_refused(tmp_path, pairs):
    train, test = _files(tmp_path, [*_tag(pairs[:5], "a"), *pairs[5:20]], pairs[20:])

    with pytest.raises(InvalidInput, match=r"train.jsonl: 5 of 20 pairs have a 'silo' field"):
        partner_dataset(train, test, silos=4, seed=0, max_silos=16)


def test_a_silo_value_that_cannot_be_a_silo_id_is_named(tmp_path, pairs):
    train, test = _files(tmp_path, _tag(pairs[:20], "Bad Silo"), _tag(pairs[20:], "Bad Silo"))

    with pytest.raises(InvalidInput, match=r"train.jsonl: field 'silo': invalid silo id"):
        partner_dataset(train, test, silos=4, seed=0, max_silos=16)


def test_more_silo_values_than_the_demo_runs_are_refused(tmp_path, pairs):
    train, test = _files(tmp_path, _tag(pairs[:20], *"abc"), _tag(pairs[20:], "a"))

    with pytest.raises(InvalidInput, match="3 distinct silo values, but the demo runs at most 2"):
        partner_dataset(train, test, silos=4, seed=0, max_silos=2)


def test_a_broken_training_row_is_skipped_and_its_line_logged(tmp_path, pairs, caplog):
    train, test = _files(tmp_path, pairs[:20], pairs[20:])
    train.write_text(train.read_text() + "{oops\n")

    with caplog.at_level("WARNING"):
        parts = partner_dataset(train, test, silos=2, seed=0, max_silos=16)

    assert sum(len(part.train) for part in parts.values()) == 20
    assert "skipped 1 (4.8%): not valid JSON" in caplog.text and "(line 21)" in caplog.text
