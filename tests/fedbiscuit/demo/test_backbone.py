"""`fedbiscuit demo --backbone PATH`: a local model folder, pinned in the plan by digest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fedbiscuit.demo.layout import DemoOptions, demo_plan, lay_out
from protos.errors import InvalidInput
from protos.operator_formats.config_files import load_model_file
from selector.local_backbone import folder_digest
from silo.config import SiloConfig
from tests.backbone_folders import save_backbone


@pytest.fixture(scope="module")
def causal_folder(tmp_path_factory) -> Path:
    return save_backbone("tiny_causal", tmp_path_factory.mktemp("tiny-llama"), seed=1)


def test_a_causal_lm_folder_gets_the_causal_selector_pinned_by_digest(causal_folder):
    plan = demo_plan(DemoOptions(backbone_path=causal_folder))
    backbone = plan.selector.backbone
    assert plan.selector.kind == "causal_lm"
    assert (backbone.kind, backbone.path) == ("local", str(causal_folder.resolve()))
    assert backbone.sha256 == folder_digest(causal_folder)


def test_each_demo_silo_consents_to_exactly_the_local_backbone(causal_folder, tmp_path):
    layout = lay_out(tmp_path / "work", DemoOptions(silos=3, backbone_path=causal_folder))
    for path in layout.silo_configs.values():
        assert load_model_file(path, SiloConfig).policy.allowed_backbones == ["local"]


def test_a_missing_backbone_folder_is_named_before_anything_starts(tmp_path):
    with pytest.raises(InvalidInput, match=f"backbone folder {tmp_path / 'nope'} does not exist"):
        demo_plan(DemoOptions(backbone_path=tmp_path / "nope"))


def test_the_cli_says_what_is_wrong_with_the_backbone_without_a_traceback(tmp_path):
    (tmp_path / "notes").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "fedbiscuit", "demo", "--backbone", str(tmp_path / "notes")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "--backbone: backbone folder" in result.stderr + result.stdout
    assert "has no config.json: not a model folder" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
