"""deploy/: the compose federation, Helm chart and systemd unit hold configs our loaders
accept, and wire ports, probes and grace periods consistently. External linters (helm,
systemd-analyze, hadolint) run where installed and are skipped, saying so, where not."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aggregator.config import AggregatorConfig, load_config
from privacy.pki import init_ca, issue_silo
from protos.operator_formats.config_files import load_model_file
from protos.plan import Plan
from silo.config import load_silo_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose"
CHART = DEPLOY / "helm" / "fedbiscuit-aggregator"
UNIT = DEPLOY / "systemd" / "fedbiscuit-silo@.service"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match[1])


def test_compose_runs_a_ca_job_an_aggregator_and_three_silos(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"setup", "aggregator", "silo-1", "silo-2", "silo-3"}
    assert services["aggregator"]["depends_on"]["setup"]["condition"] == (
        "service_completed_successfully"
    )
    for silo in ("silo-1", "silo-2", "silo-3"):
        # A silo may start before the aggregator: it waits for it by itself.
        assert services[silo]["depends_on"] == {
            "setup": {"condition": "service_completed_successfully"}
        }
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE / source).is_file(), f"{source} is mounted but missing"


def test_compose_aggregator_config_validates_with_its_environment(compose: dict) -> None:
    service = compose["services"]["aggregator"]
    config = load_config(COMPOSE / "aggregator.yaml", environ=service["environment"])
    plan = load_model_file(COMPOSE / "plan.yaml", Plan)

    assert plan.federation_id == "compose"
    health_port = config.health_address.rsplit(":", 1)[1]
    assert service["healthcheck"]["test"][-1] == f"127.0.0.1:{health_port}"
    assert _seconds(service["stop_grace_period"]) > config.shutdown_grace_s


def test_compose_silo_configs_validate(tmp_path: Path) -> None:
    """Paths under /federation (the shared volume) are re-rooted in tmp_path, with the files
    the setup job would have made there."""
    init_ca(tmp_path / "pki", "compose")
    for i in (1, 2, 3):
        issue_silo(tmp_path / "pki", f"silo-{i}")
        text = (COMPOSE / f"silo-{i}.yaml").read_text().replace("/federation", str(tmp_path))
        (tmp_path / "data" / f"silo-{i}").mkdir(parents=True)
        (tmp_path / "data" / f"silo-{i}" / "train.jsonl").write_text("")
        path = tmp_path / f"silo-{i}.yaml"
        path.write_text(text)

        config = load_silo_config(path)

        assert (config.silo_id, config.federation_id) == (f"silo-{i}", "compose")
        assert config.aggregator_address == "aggregator:50051"


def _chart_aggregator_config(values: dict, plan_path: Path) -> AggregatorConfig:
    """What templates/configmap.yaml writes, built from values in Python."""
    ports = values["ports"]
    return AggregatorConfig.model_validate(
        {
            "listen_address": f"0.0.0.0:{ports['grpc']}",
            "health_address": f"0.0.0.0:{ports['health']}",
            "metrics_address": f"0.0.0.0:{ports['metrics']}",
            "pki": {
                name: f"/etc/fedbiscuit/tls/{name}"
                for name in ("ca_cert", "server_cert", "server_key", "revocation_list")
            },
            "state_dir": "/var/lib/fedbiscuit/state",
            "plan_path": str(plan_path),
            **values["aggregator"],
        }
    )


def test_chart_values_hold_a_valid_plan_and_aggregator_config(tmp_path: Path) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    Plan.model_validate(values["plan"])
    config = _chart_aggregator_config(values, tmp_path / "plan.yaml")

    assert config.log_format == "json"


def test_helm_renders_a_statefulset_probing_the_health_port(tmp_path: Path) -> None:
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not installed here; values are checked by the test above")
    rendered = subprocess.run(
        [helm, "template", "fb", str(CHART)], check=True, capture_output=True, text=True
    ).stdout
    docs = {
        doc["kind"] + "/" + doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(rendered)
        if doc
    }
    stateful = docs["StatefulSet/fb-fedbiscuit-aggregator"]
    pod = stateful["spec"]["template"]["spec"]
    container = pod["containers"][0]
    configmap = docs["ConfigMap/fb-fedbiscuit-aggregator"]["data"]
    (tmp_path / "aggregator.yaml").write_text(configmap["aggregator.yaml"])
    config = load_config(tmp_path / "aggregator.yaml", environ={})
    health_port = int(config.health_address.rsplit(":", 1)[1])

    assert stateful["spec"]["replicas"] == 1 and stateful["spec"]["volumeClaimTemplates"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == health_port
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > config.shutdown_grace_s
    assert any(v.get("secret") for v in pod["volumes"])
    Plan.model_validate(yaml.safe_load(configmap["plan.yaml"]))


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    # verify insists the ExecStart binary exists: point it at this environment's one.
    fedbiscuit = Path(sys.executable).with_name("fedbiscuit")
    if not fedbiscuit.exists():
        pytest.skip(f"no fedbiscuit console script next to {sys.executable}")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/fedbiscuit/bin/fedbiscuit", str(fedbiscuit)))

    verified = subprocess.run(
        [analyze, "verify", str(tmp_path / "fedbiscuit-silo@example.service")],
        capture_output=True,
        text=True,
    )

    assert verified.returncode == 0, verified.stderr
    assert "Unknown" not in verified.stderr, verified.stderr


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed here")
    dockerfiles = sorted((DEPLOY / "docker").glob("Dockerfile*"))
    linted = subprocess.run([hadolint, *map(str, dockerfiles)], capture_output=True, text=True)

    assert linted.returncode == 0, linted.stdout
