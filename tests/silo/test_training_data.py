"""A silo trains on an institution's export as it comes: a few bad rows are skipped and
logged by line and reason (never their content), or refused when its config says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protos.errors import InvalidInput
from silo.training_data import read_training_pairs
from tests.silo.conftest import SiloConfigFactory

SECRET = "a private question only this institution knows"


def _hh_export(path: Path) -> Path:
    rows = []
    for index in range(9):
        question = f"\n\nHuman: Question {index}?\n\nAssistant:"
        rows.append({"chosen": f"{question} Yes, because.", "rejected": f"{question} No."})
    rows.append({"chosen": f"\n\nHuman: {SECRET}\n\nAssistant: ", "rejected": "\n\nAssistant: x"})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_silo_reads_an_hh_rlhf_export_and_logs_the_skipped_row_without_its_text(
    silo_config: SiloConfigFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = silo_config("silo-1", 50051)
    data = {"train_path": _hh_export(tmp_path / "export.jsonl"), "format": "hh-rlhf"}
    config = base.model_copy(update={"data": base.data.model_validate(data)})

    with caplog.at_level("WARNING"):
        pairs = read_training_pairs(config)

    assert len(pairs) == 9
    assert (
        "silo=silo-1" in caplog.text
        and "skipped 1 (10.0%): field 'chosen' ends with an empty Assistant turn (line 10)"
        in caplog.text
    )
    assert SECRET not in caplog.text


def test_silo_configured_to_fail_on_bad_rows_refuses_the_file(
    silo_config: SiloConfigFactory, tmp_path: Path
) -> None:
    base = silo_config("silo-1", 50051)
    export = _hh_export(tmp_path / "export.jsonl")
    data = {"train_path": export, "format": "hh-rlhf", "bad_rows": "fail"}
    config = base.model_copy(update={"data": base.data.model_validate(data)})

    with pytest.raises(InvalidInput, match=f"^{export}:10: field 'chosen' ends with an empty"):
        read_training_pairs(config)
