"""Plans: validated once at the edge, hashed identically on both sides of the wire."""

from __future__ import annotations

import pytest

from protos.config_files import load_model_file, save_model_file
from protos.errors import InvalidInput
from protos.plan import Plan


def test_plan_hash_survives_the_wire():
    plan = Plan(federation_id="hospitals", rounds=7, silos_per_round=3, min_silos=2)
    received = Plan.from_canonical_json(plan.canonical_json())
    assert received == plan and received.sha256() == plan.sha256()


def test_any_change_changes_the_hash():
    plan = Plan(federation_id="hospitals")
    changed = plan.model_copy(update={"delta": 1e-6})
    assert changed.sha256() != plan.sha256()


def test_inconsistent_plan_is_refused():
    with pytest.raises(ValueError, match="min_silos"):
        Plan(federation_id="x", silos_per_round=2, min_silos=3)


def test_plan_file_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("federation_id: demo\nrounds: 3\ndp:\n  clip_norm: -1\n  colour: blue\n")
    with pytest.raises(InvalidInput) as excinfo:
        load_model_file(path, Plan)
    message = str(excinfo.value)
    assert f"{path}:4: dp.clip_norm" in message
    assert f"{path}:5: dp.colour" in message


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("federation_id: demo\nrounds: [3\n")
    with pytest.raises(InvalidInput, match=r"plan\.yaml:\d+: not valid YAML"):
        load_model_file(path, Plan)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidInput, match="cannot read"):
        load_model_file(tmp_path / "absent.yaml", Plan)


def test_saved_plan_reloads_identically(tmp_path):
    plan = Plan(federation_id="banks", rounds=5)
    save_model_file(tmp_path / "plan.yaml", plan)
    assert load_model_file(tmp_path / "plan.yaml", Plan).sha256() == plan.sha256()
