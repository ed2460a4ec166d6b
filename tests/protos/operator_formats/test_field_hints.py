"""A misspelt config field gets a suggestion; a missing file gets its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.config import load_config
from protos.errors import InvalidInput
from protos.operator_formats.config_files import load_model_file
from protos.plan import Plan


def test_a_misspelt_plan_field_gets_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("federation_id: f\nrounds: 2\ntraining:\n  local_stepz: 3\n")

    with pytest.raises(InvalidInput) as refused:
        load_model_file(path, Plan)

    assert str(refused.value) == (
        f"{path}:4: training.local_stepz: Extra inputs are not permitted "
        "(did you mean 'local_steps'?)"
    )


def test_a_field_unlike_any_lists_the_fields_allowed_there(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("federation_id: f\ndp:\n  zzz: 1\n")

    with pytest.raises(
        InvalidInput, match=r"dp.zzz: Extra inputs are not permitted \(fields here: clip_norm, "
    ):
        load_model_file(path, Plan)


def test_aggregator_config_typos_get_suggestions_inside_federations(tmp_path: Path) -> None:
    path = tmp_path / "aggregator.yaml"
    path.write_text("listen_address: 127.0.0.1:50051\nfederations:\n  - plan_pth: plan.yaml\n")

    with pytest.raises(InvalidInput, match=r"federations.0.plan_pth: .*did you mean 'plan_path'\?"):
        load_config(path, environ={})


def test_a_missing_relative_path_is_shown_with_the_directory_it_was_looked_for_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "plan.yaml"
    path.write_text("federation_id: f\nselector:\n  backbone:\n    kind: local\n    path: x\n")
    from silo.config import load_silo_config

    silo = tmp_path / "silo.yaml"
    silo.write_text(
        "silo_id: s\nfederation_id: f\naggregator_address: h:1\n"
        "pki: {ca_cert: ca.pem, cert: s.pem, key: s.key}\ndata: {train_path: t.jsonl}\n"
        "state_dir: st\nbudget: {epsilon: 1}\n"
    )

    with pytest.raises(InvalidInput) as refused:
        load_silo_config(silo)

    assert (
        f"pki.ca_cert: Path does not point to a file: ca.pem (relative to the working "
        f"directory {tmp_path})" in str(refused.value)
    )
