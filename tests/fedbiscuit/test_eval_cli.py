"""`fedbiscuit eval` scores an exported selector (set) overall, per silo and worst silo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fedbiscuit.cli import main
from protos.plan import BackboneSpec, SelectorSpec
from selector.benchmark.generator import make_federated_dataset
from selector.checkpoint import save_selector, save_selector_set
from selector.data import read_jsonl, write_jsonl
from selector.evaluation import agreement
from selector.model import adapter_state, build_selector
from tests.backbone_folders import pinned_backbone, save_backbone


@pytest.fixture(scope="module")
def state(tiny_spec: SelectorSpec) -> dict[str, np.ndarray]:
    """A tiny selector whose head is non-zero (a fresh one's LoRA B is zero, not its head)."""
    return adapter_state(build_selector(tiny_spec, seed=3))


def _mirrored(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same selector with its head negated: every logit flips sign exactly."""
    return {name: -value if name == "head.weight" else value for name, value in state.items()}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test pairs of two benchmark silos, each pair tagged with its silo."""
    dataset = make_federated_dataset(num_silos=2, train_pairs=1, test_pairs=24, seed=5)
    path = tmp_path_factory.mktemp("eval") / "test.jsonl"
    write_jsonl(path, [pair for silo in dataset.values() for pair in silo.test])
    return path


def _eval(tmp_path: Path, selectors: Path, data: Path, *flags: str) -> tuple[int, dict | None]:
    out = tmp_path / "eval.json"
    out.unlink(missing_ok=True)
    argv = ["eval", "--selectors", str(selectors), "--data", str(data), "--json", str(out)]
    code = main([*argv, *flags])
    return code, json.loads(out.read_text()) if out.exists() else None


def _local_export(
    root: Path, tiny_spec: SelectorSpec, state: dict[str, np.ndarray]
) -> tuple[Path, Path]:
    """A FedBiscuit export (`state` and its mirror, one per silo) on a 'local' backbone the
    operator keeps in `root/operator-backbone`: the export's folder and that folder. Nothing
    loads the folder here: a process keeps a backbone it has loaded, which would hide a move."""
    folder = save_backbone("tiny", root / "operator-backbone")
    spec = tiny_spec.model_copy(update={"backbone": pinned_backbone(folder)})
    clusters = {"silo-1": 0, "silo-2": 1}
    save_selector_set(root / "export", spec, [state, _mirrored(state)], clusters, {})
    return root / "export", folder


def test_fedbis_export_reports_its_agreement_overall_and_per_silo(
    tmp_path, tiny_spec, tiny_encoder, state, data_file, capsys
):
    save_selector(tmp_path / "fedbis", tiny_spec, state, {"federation": "t"})

    code, report = _eval(tmp_path, tmp_path / "fedbis", data_file)

    assert code == 0
    pairs = read_jsonl(data_file)
    model = build_selector(tiny_spec, seed=3)
    assert report["pairs"] == 48
    assert report["overall"] == pytest.approx(agreement(model, tiny_encoder, pairs))
    assert sorted(report["per_silo"]) == ["silo-1", "silo-2"]
    expected = {
        silo: agreement(model, tiny_encoder, [p for p in pairs if p.silo == silo])
        for silo in ("silo-1", "silo-2")
    }
    assert report["per_silo"] == pytest.approx(expected)
    assert report["worst_silo"] == min(report["per_silo"].values())
    assert "worst silo" in capsys.readouterr().out


def test_fedbiscuit_export_scores_each_silo_with_its_own_cluster_and_the_rest_by_vote(
    tmp_path, tiny_spec, tiny_encoder, state, data_file
):
    save_selector(tmp_path / "one", tiny_spec, state, {})
    _, single = _eval(tmp_path, tmp_path / "one", data_file)
    # silo-1 is served by the selector, silo-2 by its mirror image; nobody else is grouped.
    save_selector_set(
        tmp_path / "set", tiny_spec, [state, _mirrored(state)], {"silo-1": 0, "silo-2": 1}, {}
    )

    code, report = _eval(tmp_path, tmp_path / "set", data_file)

    assert code == 0
    assert report["per_silo"]["silo-1"] == pytest.approx(single["per_silo"]["silo-1"])
    assert report["per_silo"]["silo-2"] == pytest.approx(1 - single["per_silo"]["silo-2"])
    assert report["overall"] == 0.5  # two mirrored selectors tie on every pair
    assert report["worst_silo"] == min(report["per_silo"].values())


def test_an_ungrouped_silo_is_scored_by_the_vote(tmp_path, tiny_spec, state, data_file):
    save_selector_set(tmp_path / "set", tiny_spec, [state, _mirrored(state)], {"silo-1": 0}, {})

    _, report = _eval(tmp_path, tmp_path / "set", data_file)

    assert report["per_silo"]["silo-2"] == 0.5


def test_a_missing_selector_folder_is_named(tmp_path, data_file, capsys):
    code, report = _eval(tmp_path, tmp_path / "nowhere", data_file)

    assert code == 2 and report is None
    assert f"--selectors {tmp_path / 'nowhere'}: no such folder" in capsys.readouterr().err


def test_a_folder_that_is_not_an_export_is_named(tmp_path, data_file, capsys):
    (tmp_path / "empty").mkdir()

    code, _ = _eval(tmp_path, tmp_path / "empty", data_file)

    assert code == 2
    assert "selector.json: missing" in capsys.readouterr().err


def test_a_broken_row_is_skipped_and_named(tmp_path, tiny_spec, state, data_file, capsys):
    save_selector(tmp_path / "fedbis", tiny_spec, state, {})
    broken = tmp_path / "broken.jsonl"
    lines = data_file.read_text().splitlines()
    broken.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")

    code, report = _eval(tmp_path, tmp_path / "fedbis", broken)

    assert code == 0 and report["pairs"] == len(lines)
    assert f"{broken}: {len(lines)} pairs from {len(lines) + 1} rows, skipped 1" in (
        capsys.readouterr().out
    )


def test_bad_rows_fail_names_the_file_and_line(tmp_path, tiny_spec, state, data_file, capsys):
    save_selector(tmp_path / "fedbis", tiny_spec, state, {})
    broken = tmp_path / "broken.jsonl"
    lines = data_file.read_text().splitlines()
    broken.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")

    code, report = _eval(tmp_path, tmp_path / "fedbis", broken, "--bad-rows", "fail")

    assert code == 2 and report is None
    assert f"{broken}:2: not valid JSON" in capsys.readouterr().err


def test_pairs_without_silos_are_one_population(tmp_path, tiny_spec, state, data_file):
    save_selector(tmp_path / "fedbis", tiny_spec, state, {})
    plain = tmp_path / "plain.jsonl"
    rows = [json.loads(line) for line in data_file.read_text().splitlines()]
    plain.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "silo"}) + "\n"
                             for r in rows))  # fmt: skip

    code, report = _eval(tmp_path, tmp_path / "fedbis", plain)

    assert code == 0
    assert report["per_silo"] == {} and report["worst_silo"] == report["overall"]


def test_a_mix_of_pairs_with_and_without_silo_is_refused(
    tmp_path, tiny_spec, state, data_file, capsys
):
    save_selector(tmp_path / "fedbis", tiny_spec, state, {})
    mixed = tmp_path / "mixed.jsonl"
    rows = [json.loads(line) for line in data_file.read_text().splitlines()]
    del rows[0]["silo"]
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))

    code, _ = _eval(tmp_path, tmp_path / "fedbis", mixed)

    assert code == 2
    assert "47 of 48 pairs name a silo" in capsys.readouterr().err


def test_a_causal_lm_export_is_scored_with_its_own_encoder(tmp_path, data_file):
    spec = SelectorSpec(
        kind="causal_lm",
        backbone=BackboneSpec(kind="tiny_causal", seed=0),
        max_tokens_per_answer=40,
    )
    save_selector(tmp_path / "lm", spec, adapter_state(build_selector(spec, seed=1)), {})

    code, report = _eval(tmp_path, tmp_path / "lm", data_file)

    assert code == 0
    assert report["pairs"] == 48 and sorted(report["per_silo"]) == ["silo-1", "silo-2"]
    assert report["worst_silo"] == min(report["per_silo"].values())


def test_a_local_backbone_export_scores_the_same_from_a_copy_given_by_backbone(
    tmp_path, tiny_spec, state, data_file
):
    export, operator_folder = _local_export(tmp_path, tiny_spec, state)
    copy = shutil.copytree(operator_folder, tmp_path / "partner" / "encoder")
    moved = operator_folder.rename(tmp_path / "moved-away")

    code, report = _eval(tmp_path, export, data_file, "--backbone", str(copy))

    assert code == 0
    # Scored after, not before: a process keeps a backbone it has loaded from a path.
    moved.rename(operator_folder)
    assert report == _eval(tmp_path, export, data_file)[1]


def test_a_local_backbone_missing_at_its_recorded_path_says_to_pass_backbone(
    tmp_path, tiny_spec, state, data_file, capsys
):
    export, operator_folder = _local_export(tmp_path, tiny_spec, state)
    operator_folder.rename(tmp_path / "moved-away")

    code, report = _eval(tmp_path, export, data_file)

    err = capsys.readouterr().err
    assert code == 2 and report is None
    assert f"backbone folder {operator_folder} does not exist" in err
    assert "pass --backbone PATH" in err


def test_a_backbone_with_other_weights_is_refused_by_the_exports_digest(
    tmp_path, tiny_spec, state, data_file, capsys
):
    export, _ = _local_export(tmp_path, tiny_spec, state)
    other = save_backbone("tiny", tmp_path / "other-encoder", seed=4)

    code, report = _eval(tmp_path, export, data_file, "--backbone", str(other))

    assert code == 2 and report is None
    assert "its files differ from the operator's" in capsys.readouterr().err


def test_backbone_is_refused_for_an_export_whose_backbone_is_not_local(
    tmp_path, tiny_spec, state, data_file, capsys
):
    save_selector(tmp_path / "fedbis", tiny_spec, state, {})
    folder = save_backbone("tiny", tmp_path / "encoder")

    code, report = _eval(tmp_path, tmp_path / "fedbis", data_file, "--backbone", str(folder))

    assert code == 2 and report is None
    assert "backbone is kind 'tiny', not 'local'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "message"), [("nowhere", "no such folder"), ("file", "not a folder")]
)
def test_a_backbone_path_that_is_no_folder_is_named(
    tmp_path, tiny_spec, state, data_file, capsys, name, message
):
    save_selector(tmp_path / "fedbis", tiny_spec, state, {})
    (tmp_path / "file").write_text("not a model\n")

    code, _ = _eval(tmp_path, tmp_path / "fedbis", data_file, "--backbone", str(tmp_path / name))

    assert code == 2
    assert f"--backbone {tmp_path / name}: {message}" in capsys.readouterr().err
