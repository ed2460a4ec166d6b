"""What `fedbiscuit align` does, as one validated config (YAML via `--config`, else defaults).

Defaults suit a real local causal LM on a GPU; `benchmark_align_config` is what the
synthetic benchmark's tiny policy needs to show an effect on a CPU in minutes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from protos.strict_model import StrictModel


class SamplingSpec(StrictModel):
    """How completions are drawn from the base policy (and, at evaluation, from both)."""

    temperature: float = Field(1.0, gt=0, le=10, description="Softmax temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (1: off).")
    max_new_tokens: int = Field(64, ge=1, le=4096, description="Longest completion, tokens.")
    completions_per_prompt: int = Field(
        2, ge=2, le=16, description="n completions per prompt; every pair of them is labelled."
    )


class LabellingSpec(StrictModel):
    ties: Literal["drop", "half"] = Field(
        "drop",
        description="Pairs the selectors' vote leaves level: 'drop' them, or keep them with "
        "label 1/2 ('half': the DPO loss then pulls their implicit reward margin to zero). "
        "Identical completions carry no preference and are always dropped.",
    )
    batch_size: int = Field(64, ge=1, le=4096, description="Pairs per selector forward pass.")


class LoraAdapterSpec(StrictModel):
    rank: int = Field(8, ge=1, le=256, description="LoRA rank r.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    target_modules: tuple[str, ...] = Field(
        ("q_proj", "v_proj"), min_length=1, description="Linear layers of the policy adapted."
    )


class DpoSpec(StrictModel):
    """DPO (Rafailov et al. 2023) on the labelled pairs, reference = the frozen base policy."""

    beta: float = Field(0.1, gt=0, le=100, description="KL strength β of the DPO objective.")
    learning_rate: float = Field(5e-4, gt=0, le=1, description="AdamW learning rate.")
    steps: int = Field(100, ge=1, le=1_000_000, description="Optimizer steps.")
    batch_size: int = Field(8, ge=1, le=4096, description="Pairs per step.")
    checkpoint_every: int = Field(20, ge=1, description="Steps between resumable checkpoints.")
    lora: LoraAdapterSpec = LoraAdapterSpec()


class EvaluationSpec(StrictModel):
    samples_per_prompt: int = Field(
        1, ge=1, le=64, description="Tuned-vs-base answer pairs judged per prompt."
    )
    bootstrap_resamples: int = Field(
        2000, ge=100, le=1_000_000, description="Resamples for the 95% bootstrap CI."
    )


class AlignConfig(StrictModel):
    seed: int = Field(0, ge=0, description="Seed of sampling, LoRA init, batch order, bootstrap.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto': the GPU when there is one, else the CPU."
    )
    sampling: SamplingSpec = SamplingSpec()
    labelling: LabellingSpec = LabellingSpec()
    dpo: DpoSpec = DpoSpec()
    evaluation: EvaluationSpec = EvaluationSpec()


def benchmark_align_config(seed: int = 0, steps: int = 100) -> AlignConfig:
    """Settings for the synthetic benchmark's tiny policy: short answers, four completions
    per prompt (six labelled pairs), adapters on every projection so the word choices the
    attributes hinge on can move, and β = 1 with a modest learning rate: with β = 0.5 and a
    5× larger rate the policy over-optimised the selectors into ungrammatical answers."""
    return AlignConfig(
        seed=seed,
        sampling=SamplingSpec(max_new_tokens=32, completions_per_prompt=4),
        dpo=DpoSpec(
            beta=1.0,
            learning_rate=1e-3,
            steps=steps,
            batch_size=32,
            checkpoint_every=max(1, steps // 4),
            lora=LoraAdapterSpec(
                rank=8,
                alpha=16.0,
                target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"),
            ),
        ),
        evaluation=EvaluationSpec(samples_per_prompt=2),
    )
