"""A silo loads a plan's 'local' backbone from where it keeps it, found by the plan's digest."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from protos.errors import FailedPrecondition
from protos.plan import BackboneSpec, HeSpec, Plan
from selector.local_backbone import folder_digest
from selector.model import adapter_state
from silo.local_backbones import silo_backbone
from silo.training_setup import build_training
from silo.upload.he_exchange import HeExchange
from tests.backbone_folders import pinned_backbone, save_backbone
from tests.silo.conftest import SiloConfigFactory, he_plan_of


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory) -> Path:
    return save_backbone("tiny", tmp_path_factory.mktemp("encoder"))


@pytest.fixture(scope="module")
def digest(encoder_folder: Path) -> str:
    return folder_digest(encoder_folder)


def _plan_on(plan: Plan, backbone: BackboneSpec) -> Plan:
    selector = plan.selector.model_copy(update={"backbone": backbone})
    return plan.model_copy(update={"selector": selector})


def test_a_silo_trains_from_the_folder_it_maps_to_the_plans_digest(
    encoder_folder: Path,
    digest: str,
    tiny_plan: Plan,
    silo_config: SiloConfigFactory,
    tmp_path: Path,
) -> None:
    plan = _plan_on(tiny_plan, pinned_backbone(tmp_path / "operator" / "encoder", digest))
    relocated = shutil.copytree(encoder_folder, tmp_path / "hospital-models" / "encoder")
    config = silo_config("silo-1", 1, local_backbones={digest: relocated})

    training = build_training(config, plan)
    delta = training.trainer.train_round(adapter_state(training.trainer.model), steps=1, release=0)

    assert not (tmp_path / "operator").exists()
    assert all(np.isfinite(value).all() for value in delta.values())
    assert any(np.any(value != 0) for value in delta.values())


def test_he_initial_globals_are_built_from_the_mapped_folder(
    encoder_folder: Path,
    digest: str,
    tiny_plan: Plan,
    silo_config: SiloConfigFactory,
    tmp_path: Path,
) -> None:
    backbone = pinned_backbone(tmp_path / "operator", digest)
    plan = he_plan_of(_plan_on(tiny_plan, backbone), HeSpec(key_custodian="silo-1"))
    config = silo_config("silo-1", 1, local_backbones={digest: encoder_folder})

    # Building the public initial globals needs neither the aggregator nor the HE key.
    _, initial = HeExchange(config, None, None, plan, None).initial(0)

    assert initial.size > 0


def test_a_mapped_folder_with_other_weights_is_refused_by_its_digest(
    encoder_folder: Path,
    digest: str,
    tiny_plan: Plan,
    silo_config: SiloConfigFactory,
    tmp_path: Path,
) -> None:
    plan = _plan_on(tiny_plan, pinned_backbone(encoder_folder, digest))
    other = save_backbone("tiny", tmp_path / "other", seed=4)
    config = silo_config("silo-1", 1, local_backbones={digest: other})

    with pytest.raises(FailedPrecondition, match=f"{other}.* but {digest} is pinned"):
        build_training(config, plan)


def test_without_a_mapping_the_silo_loads_the_plans_own_path(
    encoder_folder: Path, digest: str, silo_config: SiloConfigFactory
) -> None:
    plan_backbone = pinned_backbone(encoder_folder, digest)

    assert silo_backbone(silo_config("silo-1", 1), plan_backbone) == plan_backbone


def test_a_folder_neither_mapped_nor_at_the_plans_path_names_digest_path_and_field(
    silo_config: SiloConfigFactory, tmp_path: Path
) -> None:
    missing = tmp_path / "operator" / "encoder"
    digest = "ab" * 32

    with pytest.raises(FailedPrecondition) as caught:
        silo_backbone(silo_config("silo-1", 1), pinned_backbone(missing, digest))

    message = str(caught.value)
    assert digest in message and str(missing) in message and "local_backbones" in message


def test_a_mapped_folder_that_is_missing_is_not_replaced_by_the_plans_path(
    encoder_folder: Path, digest: str, silo_config: SiloConfigFactory, tmp_path: Path
) -> None:
    config = silo_config("silo-1", 1, local_backbones={digest: tmp_path / "moved"})

    with pytest.raises(FailedPrecondition, match=f"local_backbones maps .*{digest}"):
        silo_backbone(config, pinned_backbone(encoder_folder, digest))


def test_built_in_backbones_pass_through_unchanged(silo_config: SiloConfigFactory) -> None:
    spec = BackboneSpec(kind="tiny", seed=2)

    assert (
        silo_backbone(silo_config("silo-1", 1, local_backbones={"0" * 64: Path("/m")}), spec)
        is spec
    )
