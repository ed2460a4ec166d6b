"""The alignment pipeline end to end on tiny models, and its resume after an interruption."""

import json

import pytest
from safetensors.numpy import load_file

from protos.errors import FailedPrecondition
from selector.alignment.config import AlignConfig
from selector.alignment.pipeline import run_alignment
from selector.benchmark.generator import THREE_GROUPS
from selector.benchmark.oracle import OracleJudge
from selector.benchmark.tiny_lm import benchmark_prompts, make_benchmark_policy
from selector.checkpoint import save_selector, save_selector_set
from selector.model import adapter_state, build_selector

CONFIG = AlignConfig.model_validate(
    {
        "seed": 3,
        "sampling": {"max_new_tokens": 16, "completions_per_prompt": 3},
        "dpo": {"beta": 1.0, "learning_rate": 1e-3, "steps": 5, "batch_size": 4,
                "checkpoint_every": 2},
        "evaluation": {"bootstrap_resamples": 200},
    }
)  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_spec):
    """A briefly trained benchmark policy, one FedBis selector, a set of three, 6 prompts."""
    root = tmp_path_factory.mktemp("align")
    policy = make_benchmark_policy(root / "policy", seed=0, steps=40)
    states = [adapter_state(build_selector(tiny_spec, seed=s)) for s in (3, 4, 5)]
    save_selector(root / "fedbis", tiny_spec, states[0], {})
    save_selector_set(root / "fedbiscuit", tiny_spec, states, {}, {})
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in benchmark_prompts(1)[:6]))
    return root, policy, prompts


def test_a_selector_set_labels_pairs_that_dpo_trains_on_and_the_result_is_judged(inputs, tmp_path):
    root, policy, prompts = inputs

    report = run_alignment(
        root / "fedbiscuit", policy, prompts, CONFIG, tmp_path / "out", OracleJudge(THREE_GROUPS)
    )

    assert report.selectors == 3 and report.prompts == 6
    assert report.pairs_considered == 6 * 3
    assert report.pairs_labelled + report.identical_dropped + report.ties_dropped == 18
    assert report.pairs_labelled > 0 and report.resumed_from_step == 0
    assert report.evaluated == 6
    for rate in (report.by_selectors, report.by_oracle):
        assert rate.ci95[0] <= rate.win_rate <= rate.ci95[1]
    assert sorted(report.by_oracle_group) == ["blunt", "gentle", "thorough"]
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["pairs_labelled"] == report.pairs_labelled
    pairs = json.loads((tmp_path / "out" / "pairs.json").read_text())["pairs"]
    assert all(p["votes_chosen"] + p["votes_rejected"] <= 3 for p in pairs)
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


def test_an_interrupted_run_resumes_from_its_checkpoint_and_ends_where_an_unbroken_run_does(
    inputs, tmp_path
):
    root, policy, prompts = inputs
    unbroken = run_alignment(root / "fedbis", policy, prompts, CONFIG, tmp_path / "unbroken")

    def interrupt_at_step_3(step):
        if step.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_alignment(
            root / "fedbis",
            policy,
            prompts,
            CONFIG,
            tmp_path / "broken",
            on_step=interrupt_at_step_3,
        )
    resumed = run_alignment(root / "fedbis", policy, prompts, CONFIG, tmp_path / "broken")

    assert resumed.resumed_from_step == 2  # the checkpoint after step 2 survived
    adapter = "adapter/adapter_model.safetensors"
    first, second = (
        load_file(tmp_path / "unbroken" / adapter),
        load_file(tmp_path / "broken" / adapter),
    )
    assert sorted(first) == sorted(second)
    assert all((first[name] == second[name]).all() for name in first)
    assert resumed.by_selectors == unbroken.by_selectors


def test_a_folder_holding_another_runs_files_is_not_resumed_with_other_settings(inputs, tmp_path):
    root, policy, prompts = inputs
    run_alignment(root / "fedbis", policy, prompts, CONFIG, tmp_path / "out")
    other = CONFIG.model_copy(update={"seed": 4})

    with pytest.raises(FailedPrecondition, match="holds a run with a different config"):
        run_alignment(root / "fedbis", policy, prompts, other, tmp_path / "out")
