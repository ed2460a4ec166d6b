"""The aggregator's config: YAML plus FEDBISCUIT_AGGREGATOR__* variables, faults located."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.config import load_config
from protos.errors import InvalidInput

CONFIG = """\
listen_address: 127.0.0.1:50051
pki:
  ca_cert: /pki/ca.pem
  server_cert: /pki/aggregator.pem
  server_key: /pki/aggregator.key
  revocation_list: /pki/revoked.json
state_dir: /var/lib/fedbiscuit/state
plan_path: /etc/fedbiscuit/plan.yaml
max_long_poll_s: 10
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "aggregator.yaml"
    path.write_text(CONFIG)
    return path


def test_environment_overrides_the_file_including_nested_fields(config_file: Path) -> None:
    config = load_config(
        config_file,
        environ={
            "FEDBISCUIT_AGGREGATOR__LISTEN_ADDRESS": "0.0.0.0:7000",
            "FEDBISCUIT_AGGREGATOR__PKI__CA_CERT": "/secrets/ca.pem",
            "FEDBISCUIT_AGGREGATOR__METRICS_ADDRESS": "0.0.0.0:9100",
            "UNRELATED": "ignored",
        },
    )

    assert config.listen_address == "0.0.0.0:7000"
    assert config.pki.ca_cert == Path("/secrets/ca.pem")
    assert config.pki.server_key == Path("/pki/aggregator.key")  # the file's, untouched
    assert config.metrics_address == "0.0.0.0:9100"


def test_bad_value_in_the_file_names_file_line_and_field(config_file: Path) -> None:
    config_file.write_text(CONFIG.replace("max_long_poll_s: 10", "max_long_poll_s: -1"))

    with pytest.raises(InvalidInput, match=rf"^{config_file}:9: max_long_poll_s: Input should"):
        load_config(config_file, environ={})


def test_bad_value_from_the_environment_names_the_variable(config_file: Path) -> None:
    with pytest.raises(
        InvalidInput,
        match=r"^environment FEDBISCUIT_AGGREGATOR__MAX_LONG_POLL_S: max_long_poll_s: ",
    ):
        load_config(config_file, environ={"FEDBISCUIT_AGGREGATOR__MAX_LONG_POLL_S": "soon"})


def test_misspelt_variable_is_refused_rather_than_ignored(config_file: Path) -> None:
    with pytest.raises(InvalidInput, match="FEDBISCUIT_AGGREGATOR__LISTEN_ADDRES: no such"):
        load_config(config_file, environ={"FEDBISCUIT_AGGREGATOR__LISTEN_ADDRES": "0.0.0.0:1"})


def test_unknown_field_in_the_file_is_refused(config_file: Path) -> None:
    config_file.write_text(CONFIG + "metrics_port: 9100\n")

    with pytest.raises(InvalidInput, match=rf"{config_file}:10: metrics_port: Extra inputs"):
        load_config(config_file, environ={})


def test_metrics_port_must_differ_from_the_service_port(config_file: Path) -> None:
    with pytest.raises(InvalidInput, match="ports must differ"):
        load_config(
            config_file, environ={"FEDBISCUIT_AGGREGATOR__METRICS_ADDRESS": "0.0.0.0:50051"}
        )


def test_two_federations_sharing_a_state_dir_are_refused(tmp_path: Path) -> None:
    pki = "\n".join(f"      {line}" for line in CONFIG.splitlines()[2:6])
    federation = f"  - pki:\n{pki}\n    state_dir: /var/lib/fedbiscuit/{{}}\n    plan_path: p.yaml"
    path = tmp_path / "aggregator.yaml"
    path.write_text(
        "federations:\n" + federation.format("shared") + "\n" + federation.format("shared/")
    )

    with pytest.raises(InvalidInput, match=r"federations\.1\.state_dir: .* federations\.0\."):
        load_config(path, environ={})
