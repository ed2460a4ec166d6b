"""Plans: validated once at the edge, hashed identically on both sides of the wire."""

from __future__ import annotations

import pytest

from protos.config_files import load_model_file, save_model_file
from protos.errors import InvalidInput
from protos.plan import FedBiscuitSpec, Plan


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


def _fedbiscuit(**changes):
    fields = {"federation_id": "x", "algorithm": "fedbiscuit", "rounds": 10}
    fields.update(changes)
    fields.setdefault("fedbiscuit", FedBiscuitSpec(clusters=3, warmup_rounds_per_adapter=2))
    return Plan(**fields)


def test_fedbis_plans_hash_without_a_fedbiscuit_field():
    plan = Plan(federation_id="hospitals")
    assert b"fedbiscuit" not in plan.canonical_json().replace(b'"fedbis"', b"")
    assert plan.adapters == 1 and plan.grouping_rounds() == ()


def test_fedbiscuit_plan_survives_the_wire():
    plan = _fedbiscuit()
    assert Plan.from_canonical_json(plan.canonical_json()).sha256() == plan.sha256()


def test_warmup_schedule_trains_adapter_k_in_rounds_k_w_to_k_plus_1_w():
    plan = _fedbiscuit()
    assert [plan.warmup_adapter(r) for r in range(10)] == [0, 0, 1, 1, 2, 2] + [None] * 4


def test_groupings_follow_warmup_every_r_rounds():
    plan = _fedbiscuit(fedbiscuit=FedBiscuitSpec(clusters=2, regroup_every=3))
    assert plan.grouping_rounds() == (2, 5, 8)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"fedbiscuit": None}, "needs a `fedbiscuit` section"),
        ({"algorithm": "fedbis"}, "needs algorithm: fedbiscuit"),
        ({"rounds": 6}, "warm-up takes"),
        ({"weighting": "num_examples"}, "uniform"),
    ],
)
def test_inconsistent_fedbiscuit_plan_is_refused(changes, match):
    with pytest.raises(ValueError, match=match):
        _fedbiscuit(**changes)


def test_fedbiscuit_needs_at_least_two_clusters():
    with pytest.raises(ValueError, match="clusters"):
        FedBiscuitSpec(clusters=1)
