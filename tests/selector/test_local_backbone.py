"""A backbone from a local save_pretrained folder: pinned by digest, validated, loaded offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import BackboneSpec, LoraSpec, Plan, SelectorSpec
from selector.benchmark.generator import make_federated_dataset
from selector.local_backbone import folder_digest, local_model_kind
from selector.model import build_encoder, build_selector
from selector.vote import selector_logits
from tests.backbone_folders import pinned_backbone, save_backbone

LORA = LoraSpec(rank=4, alpha=8.0, target_modules=("query", "value"))


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory) -> Path:
    return save_backbone("tiny", tmp_path_factory.mktemp("tiny-bert"))


def test_local_encoder_scores_exactly_like_the_weights_it_was_saved_from(encoder_folder):
    pairs = make_federated_dataset(1, 6, 0, seed=0)["silo-1"].train
    built = SelectorSpec(backbone=BackboneSpec(kind="tiny", seed=3), lora=LORA)
    local = SelectorSpec(backbone=pinned_backbone(encoder_folder), lora=LORA)
    assert local_model_kind(encoder_folder) == "pair_encoder"
    logits = [
        selector_logits([build_selector(spec, seed=5)], build_encoder(spec), pairs)
        for spec in (built, local)
    ]
    torch.testing.assert_close(logits[0], logits[1])


def test_local_causal_lm_builds_a_choice_selector(tmp_path):
    folder = save_backbone("tiny_causal", tmp_path / "llama")
    spec = SelectorSpec(kind="causal_lm", backbone=pinned_backbone(folder))
    pairs = make_federated_dataset(1, 3, 0, seed=0)["silo-1"].train
    assert local_model_kind(folder) == "causal_lm"
    logits = selector_logits([build_selector(spec, seed=0)], build_encoder(spec), pairs)
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()


def test_a_changed_file_is_refused_before_loading(encoder_folder, tmp_path):
    copy = shutil.copytree(encoder_folder, tmp_path / "copy")
    pinned = pinned_backbone(copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    with pytest.raises(FailedPrecondition, match="differ from the operator's"):
        build_selector(SelectorSpec(backbone=pinned, lora=LORA), seed=0)


def test_the_digest_ignores_where_the_folder_lives_but_not_an_added_file(encoder_folder, tmp_path):
    moved = shutil.copytree(encoder_folder, tmp_path / "elsewhere")
    assert folder_digest(moved) == folder_digest(encoder_folder)
    shutil.copy(moved / "config.json", moved / "config copy.json")
    assert folder_digest(moved) != folder_digest(encoder_folder)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: _touch(root / "file.bin"), "is not a folder"),
        (lambda root: _mkdir(root / "empty"), "no config.json"),
        (lambda root: _pickled_only(root / "pickled"), "no \\*.safetensors weights"),
    ],
)
def test_a_folder_that_is_not_a_model_is_named_in_the_error(tmp_path, make, message):
    with pytest.raises(InvalidInput, match=message):
        folder_digest(make(tmp_path))


def test_a_local_backbone_needs_an_absolute_path_and_a_digest():
    with pytest.raises(ValidationError, match="needs both"):
        BackboneSpec(kind="local", path="/models/encoder")
    with pytest.raises(ValidationError, match="must be absolute"):
        BackboneSpec(kind="local", path="models/encoder", sha256="0" * 64)
    with pytest.raises(ValidationError, match="for kind 'local'"):
        BackboneSpec(kind="tiny", path="/models/encoder")


def test_a_local_backbone_travels_in_the_plan_with_its_digest(encoder_folder):
    plan = Plan(
        federation_id="hospitals", selector=SelectorSpec(backbone=pinned_backbone(encoder_folder))
    )
    received = Plan.from_canonical_json(plan.canonical_json())
    assert received.selector.backbone.sha256 == folder_digest(encoder_folder)
    assert received.sha256() == plan.sha256()


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _pickled_only(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "pytorch_model.bin").write_bytes(b"")
    return path
