"""`fedbiscuit demo --tiny` as a user runs it: real processes, mTLS, DP-SGD, a report."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from privacy.ledger import Ledger
from selector.benchmark.generator import make_federated_dataset
from selector.data import write_jsonl

pytestmark = pytest.mark.slow


def _fedbiscuit(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fedbiscuit", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    root = tmp_path_factory.mktemp("demo")
    workdir, report_path = root / "work", root / "report.json"
    result = _fedbiscuit("demo", "--tiny", "--workdir", str(workdir), "--report", str(report_path))
    assert result.returncode == 0, result.stderr + result.stdout
    return workdir, json.loads(report_path.read_text()), result.stdout


def test_report_names_algorithm_protection_and_every_silo(tiny_demo):
    _, report, stdout = tiny_demo
    assert report["algorithm"] == "fedbis"
    assert report["rounds"] == 3
    assert report["protection"] == "masking"
    assert [silo["id"] for silo in report["silos"]] == [f"silo-{i}" for i in range(1, 5)]
    assert "held-out agreement" in stdout and "masking" in stdout
    assert "plaintext" not in stdout


def test_each_silo_spent_within_its_budget_at_the_plan_delta(tiny_demo):
    _, report, _ = tiny_demo
    for silo in report["silos"]:
        assert silo["delta"] == 1e-5
        assert 0 < silo["epsilon"] <= silo["budget_epsilon"] == 8.0
        assert silo["rounds_participated"] == 3


def test_federated_selector_beats_the_untrained_one(tiny_demo):
    _, report, _ = tiny_demo
    agreement = report["agreement"]
    assert 0 <= agreement["worst_silo"] <= agreement["overall"] <= 1
    assert agreement["overall"] > agreement["initial_overall"] + 0.1


def test_workdir_keeps_pki_state_ledgers_and_the_exported_selector(tiny_demo):
    workdir, report, _ = tiny_demo
    assert (workdir / "selectors" / "adapters.safetensors").is_file()
    assert (workdir / "aggregator" / "state").is_dir()
    assert (workdir / "pki" / "ca.pem").is_file()
    for silo in report["silos"]:
        ledger = Ledger.open(
            workdir / "silos" / silo["id"] / "state" / "ledger.jsonl",
            federation_id="demo",
            silo_id=silo["id"],
        )
        assert [entry.round for entry in ledger.entries] == [0, 1, 2]
        assert ledger.entries[-1].epsilon_after == pytest.approx(silo["epsilon"])


def test_demo_refuses_a_workdir_that_is_not_empty(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = _fedbiscuit("demo", "--tiny", "--workdir", str(tmp_path), timeout_s=60)
    assert result.returncode == 2
    assert "is not empty" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_audit_of_the_demo_workdir_verifies_both_sides_and_agrees(tiny_demo):
    workdir, report, _ = tiny_demo
    out = workdir.parent / "audit.json"

    result = _fedbiscuit(
        "audit", "--ledger", str(workdir), "--ca", str(workdir / "pki" / "ca.pem"),
        "--json", str(out),
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    audit = json.loads(out.read_text())
    assert audit["ok"]
    for silo, reported in zip(audit["silos"], report["silos"], strict=True):
        assert silo["epsilon_recorded"] == pytest.approx(reported["epsilon"])
        assert silo["epsilon_pld"] < silo["epsilon_rdp"]
        assert silo["max_disagreement"] < 0.01 * silo["epsilon_rdp"]


@pytest.fixture(scope="module")
def fedbiscuit_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("fedbiscuit-demo")
    workdir, report_path = root / "work", root / "report.json"
    result = _fedbiscuit(
        "demo", "--tiny", "--algorithm", "fedbiscuit", "--clusters", "2", "--rounds", "4",
        "--silos", "4", "--protection", "insecure_plaintext",
        "--workdir", str(workdir), "--report", str(report_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "the aggregator saw each silo's individual delta" in " ".join(result.stdout.split())
    return workdir, json.loads(report_path.read_text())


def test_fedbiscuit_demo_reports_clusters_and_exports_one_selector_per_cluster(fedbiscuit_demo):
    workdir, report = fedbiscuit_demo
    assert report["algorithm"] == "fedbiscuit"
    clusters = report["clusters"]
    assert [c["index"] for c in clusters] == [0, 1]
    assert sorted(m for c in clusters for m in c["members"]) == [f"silo-{i}" for i in range(1, 5)]
    assert [c["size"] for c in clusters] == [2, 2]  # balanced
    assert all(silo["cluster"] in (0, 1) for silo in report["silos"])
    by_silo = {silo["id"]: silo for silo in report["silos"]}
    for cluster in clusters:  # its selector on its members' pairs (128 per silo) pooled
        assert all(by_silo[m]["cluster"] == cluster["index"] for m in cluster["members"])
        own = [by_silo[m]["agreement"] for m in cluster["members"]]
        assert cluster["agreement"] == pytest.approx(sum(own) / len(own))
    assert all(0 < silo["epsilon"] <= silo["budget_epsilon"] for silo in report["silos"])
    selectors = json.loads((workdir / "selectors" / "selectors.json").read_text())
    assert selectors["selectors"] == ["adapter-0", "adapter-1"]
    assert (workdir / "selectors" / "adapter-1" / "adapters.safetensors").is_file()
    ledger = Ledger.open(
        workdir / "silos" / "silo-1" / "state" / "ledger.jsonl", federation_id="demo",
        silo_id="silo-1",
    )  # fmt: skip
    assert [e.mechanism for e in ledger.entries].count("gaussian") == 1  # grouping at round 2


def test_demo_on_a_partners_own_files_gives_one_silo_per_silo_field_value(tmp_path):
    dataset = make_federated_dataset(num_silos=2, train_pairs=48, test_pairs=16, seed=1)
    renamed = {"north": dataset["silo-1"], "south": dataset["silo-2"]}
    train, test, report_path = (
        tmp_path / "train.jsonl",
        tmp_path / "test.jsonl",
        tmp_path / "r.json",
    )
    write_jsonl(train, [replace(p, silo=s) for s, d in renamed.items() for p in d.train])
    write_jsonl(test, [replace(p, silo=s) for s, d in renamed.items() for p in d.test])

    refused = _fedbiscuit("demo", "--tiny", "--data", str(train), "--test", str(test))
    result = _fedbiscuit(
        "demo", "--tiny", "--data", str(train), "--test", str(test), "--rounds", "2",
        "--protection", "insecure_plaintext", "--report", str(report_path),
    )  # fmt: skip

    assert refused.returncode == 2
    assert "2 silo(s), but masking needs at least 3 silos" in refused.stderr

    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(report_path.read_text())
    assert [silo["id"] for silo in report["silos"]] == ["north", "south"]
    assert report["test_pairs"] == 32
    assert all(silo["rounds_participated"] == 2 for silo in report["silos"])


def test_he_demo_trains_blind_and_a_silo_exports_the_selector_it_evaluates(tmp_path):
    workdir, report_path = tmp_path / "work", tmp_path / "report.json"

    result = _fedbiscuit(
        "demo", "--tiny", "--protection", "he", "--silos", "3", "--rounds", "2",
        "--workdir", str(workdir), "--report", str(report_path),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(report_path.read_text())
    assert report["protection"] == "he"
    assert "silo-3 checked, decrypted and exported the selectors" in result.stdout
    assert report["agreement"]["overall"] > report["agreement"]["initial_overall"] + 0.1
    assert all(silo["rounds_participated"] == 2 for silo in report["silos"])
    meta = json.loads((workdir / "selectors" / "selector.json").read_text())["meta"]
    assert (meta["federation_id"], meta["rounds"]) == ("demo", 2)
    assert "export_dir: null" in (workdir / "aggregator" / "aggregator.yaml").read_text()
