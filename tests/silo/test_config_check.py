"""`fedbiscuit silo check-config`: what `silo run` would trip over, said before it dials."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbiscuit.cli import main
from protos.operator_formats.config_files import save_model_file
from protos.plan import Plan
from silo.config import SiloConfig
from silo.policy import SiloPolicy
from silo.privacy_state import ACCOUNTANT_FILE
from tests.silo.conftest import SiloConfigFactory


def _saved(config: SiloConfig, tmp_path: Path) -> Path:
    path = tmp_path / "silo.yaml"
    save_model_file(path, config)
    return path


def test_check_config_reports_certificate_data_privacy_backbones_and_plan(
    silo_config: SiloConfigFactory,
    tiny_plan: Plan,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = silo_config("silo-1", 50051)
    data = config.data.train_path
    data.write_text(data.read_text() + '{"prompt": "p", "chosen": "a"}\n')
    rows = len(data.read_text().splitlines())
    plan_path = tmp_path / "plan.yaml"
    save_model_file(plan_path, tiny_plan)

    code = main(["silo", "check-config", str(_saved(config, tmp_path)), "--plan", str(plan_path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "certificate: ok, issued by CN=fedbiscuit CA test-fed" in out
    assert f"{data}: {rows - 1} pairs from {rows} rows, skipped 1" in out
    assert f"missing field 'rejected' (line {rows})" in out
    assert "nothing spent yet of epsilon 50" in out
    assert "backbone:    tiny: built from the plan's config" in out
    assert "plan:        accepted by the policy (fedbis" in out
    assert not config.state_dir.exists()  # reads only


def test_check_config_refuses_a_plan_the_policy_refuses(
    silo_config: SiloConfigFactory,
    tiny_plan: Plan,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = silo_config(
        "silo-1", 50051, policy=SiloPolicy(allow_insecure_plaintext=True, max_rounds=1)
    )
    plan_path = tmp_path / "plan.yaml"
    save_model_file(plan_path, tiny_plan.model_copy(update={"rounds": 5}))

    code = main(["silo", "check-config", str(_saved(config, tmp_path)), "--plan", str(plan_path)])

    assert code == 2
    assert "plan.rounds is 5 but policy.max_rounds is 1" in capsys.readouterr().err


def test_check_config_names_a_lost_ledger(
    silo_config: SiloConfigFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = silo_config("silo-1", 50051)
    config.state_dir.mkdir()
    (config.state_dir / ACCOUNTANT_FILE).write_text(
        '{"accountant": "rdp", "version": 1, "events": [{"mechanism": "dp_sgd", '
        '"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 5}]}'
    )

    code = main(["silo", "check-config", str(_saved(config, tmp_path))])

    assert code == 2
    assert "records 1 past releases (epsilon " in capsys.readouterr().err
