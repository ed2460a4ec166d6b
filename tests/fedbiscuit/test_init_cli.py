"""`fedbiscuit init` writes commented configs that load as they are, and overwrites nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.config import load_config
from fedbiscuit.cli import main
from fedbiscuit.recipe import LORA_RANK, top_layer_targets
from privacy.pki import init_ca, issue_aggregator, issue_silo
from protos.operator_formats.config_files import load_model_file
from protos.plan import Plan
from silo.config import load_silo_config


def test_init_aggregator_writes_a_commented_plan_and_config_that_load(tmp_path: Path) -> None:
    pki = init_ca(tmp_path / "pki", "hospitals")
    issue_aggregator(pki.root)
    directory = tmp_path / "aggregator"

    code = main(["init", "aggregator", "--federation", "hospitals", "--dir", str(directory),
                 "--pki", str(pki.root), "--tiny"])  # fmt: skip

    assert code == 0
    plan = load_model_file(directory / "plan.yaml", Plan)
    config = load_config(directory / "aggregator.yaml", environ={})
    assert (plan.federation_id, plan.protection, plan.silos_per_round) == (
        "hospitals",
        "masking",
        3,
    )
    assert plan.selector.backbone.kind == "tiny"
    assert config.plan_path == directory.resolve() / "plan.yaml"
    assert config.pki.server_key == pki.aggregator_key.resolve()
    assert "# " in (directory / "plan.yaml").read_text()  # commented for the operator


def test_a_minilm_plan_puts_the_adapters_where_the_recipe_says(tmp_path: Path) -> None:
    directory = tmp_path / "aggregator"

    code = main(["init", "aggregator", "--federation", "hospitals", "--dir", str(directory),
                 "--pki", str(tmp_path / "pki")])  # fmt: skip

    assert code == 0
    plan = load_model_file(directory / "plan.yaml", Plan)
    assert plan.selector.backbone.kind == "minilm"
    assert plan.selector.lora.target_modules == top_layer_targets(6)
    assert plan.selector.lora.rank == LORA_RANK


def test_init_silo_writes_a_commented_config_that_loads_once_its_files_are_there(
    tmp_path: Path,
) -> None:
    pki = init_ca(tmp_path / "pki", "hospitals")
    issue_silo(pki.root, "hospital-a")
    directory = tmp_path / "hospital-a"

    code = main(["init", "silo", "hospital-a", "--federation", "hospitals", "--dir",
                 str(directory), "--pki", str(pki.root),
                 "--aggregator", "agg.example.org:50051"])  # fmt: skip
    (directory / "train.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')

    assert code == 0
    config = load_silo_config(directory / "silo.yaml")
    assert (config.silo_id, config.aggregator_address) == ("hospital-a", "agg.example.org:50051")
    assert config.pki.cert == pki.silo_cert("hospital-a").resolve()
    assert config.policy.required_protection == "masking" and config.aggregator_wait_s is None


def test_init_refuses_to_overwrite_and_masking_with_too_few_silos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["init", "aggregator", "--federation", "f", "--dir", str(tmp_path)]

    assert main([*args, "--silos", "2"]) == 2
    assert "masking sums over at least 3 silos" in capsys.readouterr().err
    assert main(args) == 0
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
