"""`fedbiscuit demo --align`: the alignment phase after the federation has trained selectors.

The demo's exported selectors label completion pairs of the benchmark's tiny base policy
(trained here, in the workdir), DPO tunes it, and the tuned policy is judged against the
base by those selectors and by the benchmark's people, the same population the silos'
data came from (one group for FedBis's IID silos, the three groups for FedBiscuit).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fedbiscuit.demo.layout import DemoLayout, DemoOptions
from fedbiscuit.demo.report import AlignmentSummary
from selector.alignment.config import benchmark_align_config
from selector.alignment.pipeline import run_alignment
from selector.benchmark.generator import DEFAULT_PREFERENCES, THREE_GROUPS, PreferenceGroup
from selector.benchmark.oracle import OracleJudge
from selector.benchmark.tiny_lm import benchmark_prompts, make_benchmark_policy

__all__ = ["align_demo"]


def align_demo(
    layout: DemoLayout, options: DemoOptions, say: Callable[[str], None]
) -> AlignmentSummary:
    """Train the base policy, align it with the exported selectors, summarise the result."""
    folder = layout.workdir / "alignment"
    say("alignment: training the benchmark's base policy")
    policy = make_benchmark_policy(folder / "policy", seed=options.seed)
    prompts = folder / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in benchmark_prompts(copies=8)),
        encoding="utf-8",
    )
    if options.algorithm == "fedbiscuit":
        groups = THREE_GROUPS
    else:
        groups = (PreferenceGroup("all", DEFAULT_PREFERENCES),)
    report = run_alignment(
        layout.selectors_dir,
        policy,
        prompts,
        benchmark_align_config(seed=options.seed),
        folder / "run",
        oracle=OracleJudge(groups),
        on_stage=lambda text: say(f"alignment: {text}"),
    )
    assert report.by_oracle is not None  # an oracle was given
    return AlignmentSummary(
        pairs_labelled=report.pairs_labelled,
        win_rate_selectors=report.by_selectors.win_rate,
        win_rate_oracle=report.by_oracle.win_rate,
        ci95=report.by_oracle.ci95,
    )
