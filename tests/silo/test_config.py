"""A silo operator's config mistakes are reported as file:line: field, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from protos.errors import InvalidInput
from silo.config import load_silo_config


def _write_material(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / name for name in ("ca.pem", "silo.pem", "silo.key", "train.jsonl")}
    for path in files.values():
        path.write_text("x\n")
    return files


def _config_text(files: dict[str, Path], *, epsilon: str = "4.0", extra: str = "") -> str:
    return (
        "silo_id: silo-1\n"
        "federation_id: fed-a\n"
        "aggregator_address: localhost:50051\n"
        "pki:\n"
        f"  ca_cert: {files['ca.pem']}\n"
        f"  cert: {files['silo.pem']}\n"
        f"  key: {files['silo.key']}\n"
        "data:\n"
        f"  train_path: {files['train.jsonl']}\n"
        f"state_dir: {files['ca.pem'].parent / 'state'}\n"
        "budget:\n"
        f"  epsilon: {epsilon}\n"
        "  delta: 1.0e-5\n" + extra
    )


def _assert_refused(tmp_path: Path, text: str, where: str) -> str:
    """Loading `text` as silo.yaml is refused, naming the file and then `where` (line and
    field); returns the message."""
    path = tmp_path / "silo.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load_silo_config(path)
    assert f"{path}:{where}" in str(caught.value)
    return str(caught.value)


def test_valid_config_loads_with_safe_defaults(tmp_path: Path) -> None:
    files = _write_material(tmp_path)
    path = tmp_path / "silo.yaml"
    path.write_text(_config_text(files))

    config = load_silo_config(path)

    assert config.silo_id == "silo-1"
    assert config.budget.epsilon == 4.0
    assert config.policy.allow_insecure_plaintext is False
    assert config.seed is None
    assert config.device == "auto"
    assert config.resolved_device() in {"cpu", "cuda"}


def test_bad_budget_is_reported_with_file_line_and_field(tmp_path: Path) -> None:
    files = _write_material(tmp_path)
    _assert_refused(tmp_path, _config_text(files, epsilon="0"), "12: budget.epsilon:")


def test_missing_key_file_names_the_pki_field(tmp_path: Path) -> None:
    files = _write_material(tmp_path)
    files["silo.key"].unlink()
    _assert_refused(tmp_path, _config_text(files), "7: pki.key:")


def test_unknown_policy_field_is_rejected_not_ignored(tmp_path: Path) -> None:
    files = _write_material(tmp_path)
    _assert_refused(
        tmp_path,
        _config_text(files, extra="policy:\n  allow_plaintext: true\n"),
        "15: policy.allow_plaintext: Extra inputs are not permitted",
    )


def test_address_without_port_is_rejected(tmp_path: Path) -> None:
    files = _write_material(tmp_path)
    _assert_refused(
        tmp_path,
        _config_text(files).replace("localhost:50051", "localhost"),
        "3: aggregator_address:",
    )


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("  ABCD: /models/encoder\n", "key 'ABCD' is not a backbone digest"),
        (f"  {'a' * 64}: models/encoder\n", "the path must be absolute"),
    ],
)
def test_a_bad_local_backbones_entry_names_the_field(
    tmp_path: Path, entry: str, problem: str
) -> None:
    files = _write_material(tmp_path)
    refusal = _assert_refused(
        tmp_path, _config_text(files, extra="local_backbones:\n" + entry), "15: local_backbones:"
    )
    assert problem in refusal


def test_local_backbones_map_digests_to_absolute_folders(tmp_path: Path) -> None:
    files = _write_material(tmp_path)
    path = tmp_path / "silo.yaml"
    path.write_text(_config_text(files, extra=f"local_backbones:\n  {'a' * 64}: /models/enc\n"))

    assert load_silo_config(path).local_backbones == {"a" * 64: Path("/models/enc")}
