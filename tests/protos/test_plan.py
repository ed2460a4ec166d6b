"""Plans: validated once at the edge, hashed identically on both sides of the wire."""

from __future__ import annotations

import re

import pytest

from protos.errors import InvalidInput
from protos.operator_formats.config_files import load_model_file, save_model_file
from protos.plan import (
    BackboneSpec,
    DpSpec,
    FedBiscuitSpec,
    HeSpec,
    LoraSpec,
    Plan,
    SecAggSpec,
    SelectorSpec,
)


def test_plan_hash_survives_the_wire():
    plan = Plan(federation_id="hospitals", rounds=7, silos_per_round=3, min_silos=3)
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
    fields.setdefault("protection", "insecure_plaintext")
    return Plan(**fields)


def test_fedbis_plans_hash_without_a_fedbiscuit_field():
    plan = Plan(federation_id="hospitals")
    assert b"fedbiscuit" not in plan.canonical_json().replace(b'"fedbis"', b"")
    assert plan.adapters == 1 and plan.grouping_rounds() == ()


def test_pair_encoder_plans_hash_as_before_the_selector_kind_existed():
    # The SHA-256 this plan had before SelectorSpec.kind was added (commit 47ef754), when its
    # defaults were min_silos 2, plaintext updates and insecure RNG allowed.
    before = "a7d846f4598cc528640c05180b3f9759dfacddefff46ce2fafeb89076d4a513b"
    old = {
        "federation_id": "hospitals",
        "min_silos": 2,
        "protection": "insecure_plaintext",
        "dp": DpSpec(allow_insecure_rng=True),
    }
    plan = Plan(**old)
    explicit = Plan(**old, selector=SelectorSpec(kind="pair_encoder"))
    assert plan.sha256() == explicit.sha256() == before


def test_new_plans_mask_updates_and_commit_to_the_secagg_settings():
    plan = Plan(federation_id="hospitals")
    assert plan.protection == "masking" and plan.secagg == SecAggSpec()
    assert b'"secagg":{"phase_timeout_s":60.0,"preset":"small"}' in plan.canonical_json()
    assert Plan.from_canonical_json(plan.canonical_json()).sha256() == plan.sha256()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_silos": 2}, "raise min_silos to 3"),
        ({"silos_per_round": 17}, "more than the 16 silos secagg preset 'small'"),
        ({"weighting": "num_examples"}, "weighting must be 'uniform'"),
        (
            {"protection": "insecure_plaintext", "secagg": SecAggSpec()},
            "a `secagg` section needs protection: masking",
        ),
    ],
)
def test_plans_that_masking_cannot_protect_are_refused(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Plan(federation_id="x", **changes)


def test_masked_fedbiscuit_clusters_must_be_big_enough_to_hide_a_silo():
    with pytest.raises(ValueError, match="min_cluster_silos is 1"):
        _fedbiscuit(silos_per_round=9, protection="masking")
    plan = _fedbiscuit(
        silos_per_round=9,
        protection="masking",
        fedbiscuit=FedBiscuitSpec(clusters=3, warmup_rounds_per_adapter=2, min_cluster_silos=3),
    )
    assert plan.secagg is not None


def test_causal_lm_plan_survives_the_wire_with_its_kind():
    selector = SelectorSpec(kind="causal_lm", backbone=BackboneSpec(kind="tiny_causal"))
    plan = Plan(federation_id="hospitals", selector=selector)
    assert b'"kind":"causal_lm"' in plan.canonical_json()
    received = Plan.from_canonical_json(plan.canonical_json())
    assert received == plan and received.sha256() == plan.sha256()
    assert selector.lora.target_modules == ("q_proj", "v_proj")  # a causal LM's projections


@pytest.mark.parametrize(
    ("kind", "backbone"), [("causal_lm", "minilm"), ("pair_encoder", "tiny_causal")]
)
def test_selector_kind_and_backbone_must_fit(kind, backbone):
    with pytest.raises(ValueError, match=f"a {kind} selector needs backbone.kind"):
        SelectorSpec(kind=kind, backbone=BackboneSpec(kind=backbone))


def test_causal_lm_fills_in_only_unset_lora_targets():
    causal = {"kind": "causal_lm", "backbone": BackboneSpec(kind="tiny_causal")}
    written = LoraSpec(target_modules=("q_proj", "k_proj", "v_proj", "o_proj"))
    assert SelectorSpec(**causal, lora=written).lora == written
    ranked = SelectorSpec(**causal, lora=LoraSpec(rank=2)).lora
    assert ranked == LoraSpec(rank=2, target_modules=("q_proj", "v_proj"))
    from_yaml = SelectorSpec.model_validate({**causal, "lora": {"rank": 2}}).lora
    assert from_yaml == ranked


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


def _he(**changes):
    fields = {"federation_id": "x", "protection": "he", "he": HeSpec(key_custodian="silo-1")}
    fields.update(changes)
    return Plan(**fields)


def test_he_plans_commit_to_their_he_section_and_others_hash_without_it():
    plan = _he()
    assert plan.secagg is None and plan.he == HeSpec(key_custodian="silo-1")
    assert b'"he":{"key_custodian":"silo-1","key_epoch":0,' in plan.canonical_json()
    assert b'"he"' not in Plan(federation_id="x").canonical_json()
    assert Plan.from_canonical_json(plan.canonical_json()) == plan


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"he": None}, "protection 'he' needs an `he` section"),
        ({"protection": "insecure_plaintext"}, "an `he` section needs it"),
        ({"weighting": "num_examples"}, "protection 'he' hides each silo's example count"),
        ({"min_silos": 2}, "he.min_contributors is 3"),
        ({"he": {"key_custodian": "a", "min_contributors": 1}}, "min_contributors"),
        ({"he": {"key_custodian": "A b"}}, "key_custodian"),
    ],
)
def test_inconsistent_he_plans_are_refused(changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _he(**changes)


def test_he_fedbiscuit_clusters_must_hold_min_contributors():
    with pytest.raises(ValueError, match="min_cluster_silos is 2"):
        _he(
            algorithm="fedbiscuit",
            rounds=5,
            silos_per_round=6,
            fedbiscuit=FedBiscuitSpec(clusters=2, min_cluster_silos=2),
        )


def _masked_fedbiscuit(**spec):
    fields = {"clusters": 3, "warmup_rounds_per_adapter": 2, "min_cluster_silos": 3, **spec}
    return _fedbiscuit(silos_per_round=9, protection="masking", fedbiscuit=FedBiscuitSpec(**fields))


def test_visible_fedbiscuit_plans_hash_as_before_membership_hiding_existed():
    # The SHA-256 this plan had before FedBiscuitSpec.membership was added (when
    # dp.allow_insecure_rng defaulted to true, so it is set here as it was then).
    before = "665f6e38321558bc37edd601e06d7306f6ceb2c825262ad1b9ee26b61d30b06d"
    plan = Plan(
        federation_id="hospitals", algorithm="fedbiscuit", rounds=10, silos_per_round=9,
        fedbiscuit=FedBiscuitSpec(clusters=3, warmup_rounds_per_adapter=2, min_cluster_silos=3),
        dp=DpSpec(allow_insecure_rng=True),
    )  # fmt: skip
    assert plan.fedbiscuit.membership == "visible" and plan.sha256() == before
    assert b"membership" not in plan.canonical_json()
    assert _masked_fedbiscuit(membership="visible").sha256() == _masked_fedbiscuit().sha256()


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (
            lambda: _fedbiscuit(fedbiscuit=FedBiscuitSpec(membership="hidden")),
            "needs protection 'masking'",
        ),
        (
            lambda: _fedbiscuit(
                silos_per_round=8,
                protection="masking",
                fedbiscuit=FedBiscuitSpec(min_cluster_silos=3, membership="hidden"),
            ),
            "must be at least clusters x min_cluster_silos (9)",
        ),
        (
            lambda: _he(
                algorithm="fedbiscuit",
                rounds=5,
                silos_per_round=6,
                fedbiscuit=FedBiscuitSpec(clusters=2, min_cluster_silos=3, membership="hidden"),
            ),
            "with protection 'he' is not available in this version",
        ),
    ],
)
def test_hidden_membership_needs_masking_and_room_for_every_cluster(plan, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plan()


def test_a_masked_fedbiscuit_plan_may_hide_membership_and_hashes_differently():
    hidden = _masked_fedbiscuit(membership="hidden")
    assert hidden.fedbiscuit.membership == "hidden"
    assert b'"membership":"hidden"' in hidden.canonical_json()
    assert hidden.sha256() != _masked_fedbiscuit().sha256()
