"""`fedbiscuit align` end to end on tiny models, and the clear errors its inputs can cause."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fedbiscuit.cli import main
from selector.benchmark.tiny_lm import benchmark_prompts, make_benchmark_policy
from selector.checkpoint import save_selector
from selector.model import adapter_state, build_selector
from tests.backbone_folders import pinned_backbone, save_backbone

CONFIG_YAML = """\
seed: 1
sampling:
  max_new_tokens: 12
  completions_per_prompt: 2
dpo:
  steps: 3
  batch_size: 4
  checkpoint_every: 2
evaluation:
  bootstrap_resamples: 200
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_spec) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("align-cli")
    save_selector(root / "selector", tiny_spec, adapter_state(build_selector(tiny_spec, 3)), {})
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in benchmark_prompts(1)[:4]))
    config = root / "align.yaml"
    config.write_text(CONFIG_YAML)
    return {
        "selectors": root / "selector",
        "policy": make_benchmark_policy(root / "policy", seed=0, steps=20),
        "prompts": prompts,
        "config": config,
    }


def _align(tmp_path: Path, **overrides: Path) -> int:
    argv = ["align", "--out", str(tmp_path / "out"), "--oracle", "three-groups"]
    for flag, value in overrides.items():
        argv += [f"--{flag}", str(value)]
    return main(argv)


def _refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str], inputs: dict) -> str:
    """`align` with `inputs` exits 2 (a usage error); returns what it wrote to stderr."""
    code = _align(tmp_path, **inputs)
    err = capsys.readouterr().err
    assert code == 2
    return err


def test_align_tunes_the_policy_and_prints_and_writes_its_win_rates(inputs, tmp_path, capsys):
    code = _align(tmp_path, **inputs)

    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["prompts"] == 4 and report["dpo_steps"] == 3
    assert 0 <= report["by_oracle"]["win_rate"] <= 1
    out = capsys.readouterr().out
    assert "selectors (vote of 1)" in out and "oracle: population" in out and "95% CI" in out


def test_align_labels_the_same_pairs_from_a_local_backbone_copy_given_by_backbone(
    inputs, tmp_path, tiny_spec
):
    operator_folder = save_backbone("tiny", tmp_path / "operator-backbone")
    spec = tiny_spec.model_copy(update={"backbone": pinned_backbone(operator_folder)})
    selector = tmp_path / "selector"
    save_selector(selector, spec, adapter_state(build_selector(tiny_spec, 3)), {})
    copy = shutil.copytree(operator_folder, tmp_path / "partner" / "encoder")
    moved = operator_folder.rename(tmp_path / "moved-away")

    code = _align(tmp_path / "copy", **{**inputs, "selectors": selector, "backbone": copy})

    assert code == 0
    # Run after, not before: a process keeps a backbone it has loaded from a path.
    moved.rename(operator_folder)
    assert _align(tmp_path / "operator", **{**inputs, "selectors": selector}) == 0
    pairs = [(tmp_path / run / "out" / "pairs.json").read_text() for run in ("copy", "operator")]
    assert pairs[0] == pairs[1]


def test_a_missing_model_folder_is_named(inputs, tmp_path, capsys):
    err = _refusal(tmp_path, capsys, {**inputs, "policy": tmp_path / "no-model"})
    assert f"--policy {tmp_path / 'no-model'}: no such folder" in err


def test_a_folder_that_is_not_a_causal_lm_is_named(inputs, tmp_path, capsys):
    (tmp_path / "not-lm").mkdir()
    (tmp_path / "not-lm" / "config.json").write_text('{"model_type": "bert"}')

    err = _refusal(tmp_path, capsys, {**inputs, "policy": tmp_path / "not-lm"})
    assert f"--policy {tmp_path / 'not-lm'}: not a loadable causal LM" in err


def test_an_empty_prompt_file_is_named(inputs, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")

    err = _refusal(tmp_path, capsys, {**inputs, "prompts": empty})
    assert f"--prompts {empty}: no prompts" in err


def test_a_bad_prompt_line_is_named_by_file_and_line(inputs, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "How do I cook rice?"}\n{"question": "hi"}\n')

    err = _refusal(tmp_path, capsys, {**inputs, "prompts": bad})
    assert f"{bad}:2: expected an object with one field" in err


def test_a_selector_whose_adapters_do_not_fit_its_backbone_is_refused(inputs, tmp_path, capsys):
    # The saved adapters belong to a tiny pair encoder; the spec now names a causal LM.
    mismatched = tmp_path / "mismatched"
    shutil.copytree(inputs["selectors"], mismatched)
    document = json.loads((mismatched / "selector.json").read_text())
    document["spec"] = {"kind": "causal_lm", "backbone": {"kind": "tiny_causal", "seed": 0}}
    (mismatched / "selector.json").write_text(json.dumps(document))

    err = _refusal(tmp_path, capsys, {**inputs, "selectors": mismatched})
    assert f"--selectors {mismatched}: " in err and "adapters.safetensors: adapter state" in err


def test_a_bad_config_field_is_named_with_its_line(inputs, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("dpo:\n  beta: -1\n  stepz: 3\n")

    err = _refusal(tmp_path, capsys, {**inputs, "config": config})
    assert f"{config}:2: dpo.beta: Input should be greater than 0" in err
    assert f"{config}:3: dpo.stepz: Extra inputs are not permitted" in err


def test_the_demo_refuses_to_align_on_a_partners_own_files(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')

    code = main(["demo", "--align", "--data", str(pairs), "--test", str(pairs)])

    assert code == 2
    assert "--align needs the benchmark's data" in capsys.readouterr().err


def test_the_demo_report_carries_the_alignment_summary():
    from fedbiscuit.demo.report import AlignmentSummary, DemoReport

    fields = DemoReport.model_fields["alignment"]
    summary = AlignmentSummary(
        pairs_labelled=3, win_rate_selectors=0.7, win_rate_oracle=0.6, ci95=(0.5, 0.7)
    )

    assert fields.default is None
    assert summary.model_dump(mode="json") == {
        "pairs_labelled": 3,
        "win_rate_selectors": 0.7,
        "win_rate_oracle": 0.6,
        "ci95": [0.5, 0.7],
    }
