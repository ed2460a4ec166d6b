"""`fedbiscuit aggregator check-config`: a summary when it would start, exit 2 with why not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fedbiscuit.cli import main
from privacy.pki import FederationPaths, init_ca, issue_aggregator
from protos.operator_formats.config_files import save_model_file

from ..conftest import Federation


def check(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, str, str]:
    code = main(["aggregator", "check-config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def write_config(federation: Federation) -> Path:
    path = federation.root / "aggregator.yaml"
    save_model_file(path, federation.config())
    return path


def test_valid_config_prints_a_summary(federation: Federation, capsys) -> None:
    code, out, _ = check(capsys, write_config(federation))

    assert code == 0
    assert "federation fed-test (fedbis, 2 rounds" in out
    assert "metrics (HTTP):     off" in out
    assert "state:              new" in out


def test_config_resuming_a_state_dir_says_which_round(federation: Federation, capsys) -> None:
    federation.start().stop(0)

    code, out, _ = check(capsys, write_config(federation))

    assert code == 0 and "resumes round 0 attempt 0 (WAITING_FOR_SILOS)" in out


def test_server_key_of_another_certificate_is_refused(
    federation: Federation, tmp_path: Path, capsys
) -> None:
    other = FederationPaths(init_ca(tmp_path / "other", "fed-test").root)
    issue_aggregator(other.root)
    config = federation.config().model_copy(
        update={
            "pki": federation.config().pki.model_copy(update={"server_key": other.aggregator_key})
        }
    )
    path = tmp_path / "aggregator.yaml"
    save_model_file(path, config)

    code, _, err = check(capsys, path)

    assert code == 2
    assert f"{other.aggregator_key}: this key does not belong to the server certificate" in err


def test_server_certificate_of_another_ca_is_refused(
    federation: Federation, tmp_path: Path, capsys
) -> None:
    other = FederationPaths(init_ca(tmp_path / "other", "fed-test").root)
    issue_aggregator(other.root)
    pki = federation.config().pki.model_copy(
        update={"server_cert": other.aggregator_cert, "server_key": other.aggregator_key}
    )
    path = tmp_path / "aggregator.yaml"
    save_model_file(path, federation.config().model_copy(update={"pki": pki}))

    code, _, err = check(capsys, path)

    assert code == 2 and "not issued by the federation CA" in err


def test_world_readable_key_is_refused(federation: Federation, tmp_path: Path, capsys) -> None:
    key = tmp_path / "aggregator.key"
    shutil.copy(federation.pki.aggregator_key, key)
    key.chmod(0o644)
    pki = federation.config().pki.model_copy(update={"server_key": key})
    path = tmp_path / "aggregator.yaml"
    save_model_file(path, federation.config().model_copy(update={"pki": pki}))

    code, _, err = check(capsys, path)

    assert code == 2 and "readable by others (mode 644); chmod 600 it" in err


def test_missing_config_file_is_exit_2(tmp_path: Path, capsys) -> None:
    code, _, err = check(capsys, tmp_path / "nope.yaml")

    assert code == 2 and "nope.yaml: cannot read" in err
