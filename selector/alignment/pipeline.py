"""Alignment (DESIGN.md §1, phase 3): selectors label completion pairs, DPO tunes the policy.

Stages, each resumable from `out` (selector/alignment/files.py):
1. sample `completions_per_prompt` completions per prompt from the base policy;
2. label every pair of distinct completions by the selectors' majority vote;
3. DPO fine-tune a LoRA adapter on the policy (reference: the adapter disabled);
4. judge the tuned policy against the base (selectors; the oracle on the benchmark).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from protos.errors import FailedPrecondition, InvalidInput
from selector.alignment.base_policy import (
    add_lora,
    load_policy,
    pick_device,
    prompt_ids,
    sample_completions,
)
from selector.alignment.config import AlignConfig
from selector.alignment.dpo_training import StepReport, train_dpo
from selector.alignment.evaluation import evaluate_policy
from selector.alignment.files import (
    claim_run,
    read_labelling,
    read_prompts,
    read_samples,
    write_json,
    write_labelling,
    write_samples,
)
from selector.alignment.labelling import label_completions
from selector.alignment.win_rate import WinRate
from selector.benchmark.oracle import OracleJudge
from selector.checkpoint import load_selector_set
from selector.model import build_encoder

__all__ = ["AlignmentReport", "RateReport", "run_alignment"]


class RateReport(BaseModel):
    win_rate: float = Field(description="Mean score of tuned over base (tie = 1/2).")
    ci95: tuple[float, float] = Field(description="Seeded 95% percentile bootstrap interval.")

    @classmethod
    def of(cls, rate: WinRate) -> RateReport:
        return cls(win_rate=rate.mean, ci95=rate.ci95)


class AlignmentReport(BaseModel):
    selectors: int = Field(description="K: selectors voting (FedBis: 1).")
    device: str
    prompts: int
    pairs_considered: int = Field(description="Pairs of completions, identical ones included.")
    identical_dropped: int
    ties_dropped: int
    pairs_labelled: int = Field(description="Pairs DPO trained on.")
    ties_kept: int = Field(description="Labelled pairs that are kept ties (label 1/2).")
    split_votes: int = Field(description="Labelled pairs on which the selectors disagreed.")
    dpo_steps: int
    resumed_from_step: int = Field(description="0: DPO started afresh.")
    evaluated: int = Field(description="Tuned-vs-base comparisons judged.")
    by_selectors: RateReport
    by_oracle: RateReport | None = Field(
        None, description="The benchmark's people, groups weighted by share (null: no oracle)."
    )
    by_oracle_group: dict[str, RateReport] = Field(default_factory=dict)
    wall_time_s: float


def run_alignment(
    selectors_dir: Path,
    policy_dir: Path,
    prompts_path: Path,
    config: AlignConfig,
    out: Path,
    oracle: OracleJudge | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    backbone_path: Path | None = None,
) -> AlignmentReport:
    """Run (or resume) every stage in `out` and write `out/report.json`. `backbone_path`:
    this machine's copy of the selectors' 'local' backbone (`load_selector_set`)."""
    started = time.monotonic()
    say = on_stage or (lambda _: None)
    if not selectors_dir.is_dir():
        raise InvalidInput(f"--selectors {selectors_dir}: no such folder")
    prompts = read_prompts(prompts_path)
    try:
        selectors, spec, _, _ = load_selector_set(selectors_dir, backbone_path)
    except InvalidInput as exc:  # its subclass kept: the CLI hints at a missing backbone
        raise type(exc)(f"--selectors {selectors_dir}: {exc}") from None
    device = pick_device(config.device)
    policy, tokenizer = load_policy(policy_dir, device)
    for selector in selectors:
        selector.to(device)
    encoder = build_encoder(spec)
    claim_run(out, config, selectors_dir, policy_dir, prompts_path)

    samples_path, pairs_path = out / "samples.json", out / "pairs.json"
    if not samples_path.is_file():
        say(f"sampling {config.sampling.completions_per_prompt} completions for each of "
            f"{len(prompts)} prompts")  # fmt: skip
        samples = sample_completions(
            policy,
            tokenizer,
            prompts,
            config.sampling,
            config.sampling.completions_per_prompt,
            config.seed,
        )
        write_samples(samples_path, prompts, samples)
    if not pairs_path.is_file():
        say(f"labelling pairs with {len(selectors)} selector(s)")
        samples = read_samples(samples_path)
        labelling = label_completions(selectors, encoder, prompts, samples, config.labelling)
        write_labelling(pairs_path, labelling)
    labelling = read_labelling(pairs_path)
    if not labelling.pairs:
        raise FailedPrecondition(
            f"no pair left to train on: {labelling.identical} identical and "
            f"{labelling.ties_dropped} tied of {labelling.candidates}; sample more or hotter "
            "completions, or keep ties (labelling.ties: half)"
        )

    say(f"DPO on {len(labelling.pairs)} labelled pairs")
    model = add_lora(policy, config.dpo.lora, config.seed)
    resumed = train_dpo(
        model,
        labelling.pairs,
        lambda prompt: prompt_ids(tokenizer, prompt),
        tokenizer.pad_token_id,
        config.dpo,
        config.seed,
        out / "checkpoints",
        on_step,
    )
    model.save_pretrained(str(out / "adapter"))

    say("judging the tuned policy against the base")
    evaluation = evaluate_policy(model, tokenizer, selectors, encoder, prompts, config, oracle)
    write_json(out / "evaluation.json", [vars(c) for c in evaluation.comparisons])
    report = AlignmentReport(
        selectors=len(selectors),
        device=str(device),
        prompts=len(prompts),
        pairs_considered=labelling.candidates,
        identical_dropped=labelling.identical,
        ties_dropped=labelling.ties_dropped,
        pairs_labelled=len(labelling.pairs),
        ties_kept=sum(p.label == 0.5 for p in labelling.pairs),
        split_votes=sum(p.votes_rejected > 0 for p in labelling.pairs),
        dpo_steps=config.dpo.steps,
        resumed_from_step=resumed,
        evaluated=len(evaluation.comparisons),
        by_selectors=RateReport.of(evaluation.selectors),
        by_oracle=None if evaluation.oracle is None else RateReport.of(evaluation.oracle),
        by_oracle_group={k: RateReport.of(v) for k, v in evaluation.oracle_per_group.items()},
        wall_time_s=time.monotonic() - started,
    )
    write_json(out / "report.json", report.model_dump(mode="json"))
    return report
