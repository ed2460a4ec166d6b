"""What a silo agrees to, whatever the aggregator's plan says (DESIGN.md §3, §7).

Silos do not trust the aggregator with their privacy: the plan arrives over the wire and is
checked here against the silo operator's own limits before any data is touched. Each
refusal names the plan field and the policy (or budget) field that disagree, so the two
operators can settle it without reading code. Whether the silo agrees to the plan's
protection mode is each mode's own check (`silo.upload.admit`), run before this one.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from protos.errors import PolicyViolation
from protos.plan import Plan
from protos.strict_model import StrictModel


class PrivacyBudget(StrictModel):
    """The silo's total (epsilon, delta) for this federation, across every release it makes."""

    epsilon: float = Field(gt=0, description="Largest total epsilon the silo will ever spend.")
    delta: float = Field(
        gt=0, lt=1, description="Largest delta the silo accepts; plan.delta must not exceed it."
    )


class SiloPolicy(StrictModel):
    """Limits the silo's operator sets on any plan the silo will train under."""

    allow_insecure_plaintext: bool = Field(
        False,
        description="Accept plans whose updates reach the aggregator unprotected (it then sees "
        "each silo's individual delta). Development and demos only.",
    )
    allow_insecure_rng: bool = Field(
        False,
        description="Accept seeded (reproducible, hence predictable) DP sampling and noise when "
        "config.seed is set; the plan's dp.allow_insecure_rng must agree. Tests and demos only.",
    )
    allow_revealing_dataset_size: bool = Field(
        False,
        description="Accept plans without dp.sample_rate: the silo then samples at "
        "expected_batch_size / N, and every ledger entry reveals its number of pairs N.",
    )
    min_noise_multiplier: float = Field(
        0.5, gt=0, description="Smallest DP-SGD noise multiplier sigma the silo will train with."
    )
    max_local_steps_per_round: int = Field(
        1000, ge=1, description="Most DP-SGD steps the silo will run for one task."
    )
    max_rounds: int = Field(1000, ge=1, description="Longest federation (plan.rounds) accepted.")
    allowed_backbones: list[Literal["minilm", "tiny", "tiny_causal", "local"]] = Field(
        default_factory=lambda: ["minilm", "tiny", "tiny_causal"],
        min_length=1,
        description="Backbones (plan.selector.backbone.kind) the silo will load. 'local' (a "
        "folder the plan pins by digest) must be listed explicitly: the silo then reads a folder "
        "of its own machine (the one local_backbones maps the digest to, else the plan's path) "
        "because the aggregator asked it to.",
    )
    max_epsilon_per_round: float | None = Field(
        None, gt=0, description="Most epsilon one round may cost; null: only the budget limits."
    )
    required_protection: Literal["masking", "he"] | None = Field(
        None,
        description="Train only under plans whose updates are protected this way ('masking': "
        "SecAgg+ secure aggregation; 'he': CKKS encryption, the aggregator sees no plaintext "
        "model); null: any protection except plaintext (see allow_insecure_plaintext).",
    )


def check_plan(policy: SiloPolicy, plan: Plan, budget: PrivacyBudget) -> None:
    """Raise PolicyViolation if the silo must not train under `plan` at all (its protection
    mode aside: see silo.upload.admit)."""
    if plan.delta > budget.delta:
        raise PolicyViolation(f"plan.delta is {plan.delta:g} but budget.delta is {budget.delta:g}")
    kind = plan.selector.backbone.kind
    if kind not in policy.allowed_backbones:
        raise PolicyViolation(
            f"plan.selector.backbone.kind is {kind!r} but policy.allowed_backbones is "
            f"{policy.allowed_backbones}"
        )
    if plan.rounds > policy.max_rounds:
        raise PolicyViolation(
            f"plan.rounds is {plan.rounds} but policy.max_rounds is {policy.max_rounds}"
        )
    if plan.dp.sample_rate is None and not policy.allow_revealing_dataset_size:
        raise PolicyViolation(
            "plan.dp.sample_rate is not set, so this silo's ledger entries would reveal its "
            "number of training pairs (expected_batch_size / N), but "
            "policy.allow_revealing_dataset_size is false: ask for a plan with a fixed sample_rate"
        )
    check_local_steps(policy, plan.training.local_steps, "plan.training.local_steps")
    if plan.dp.noise_multiplier is not None:
        check_noise_multiplier(policy, plan.dp.noise_multiplier, "plan.dp.noise_multiplier")


def check_noise_source(policy: SiloPolicy, plan: Plan, seeded: bool) -> None:
    """A seeded silo's noise is predictable: both operators must have opted in to that."""
    if not seeded:
        return
    if not policy.allow_insecure_rng:
        raise PolicyViolation(
            "config.seed is set (seeded, predictable DP noise) but policy.allow_insecure_rng is "
            "false: unset the seed, or allow it for a test federation"
        )
    if not plan.dp.allow_insecure_rng:
        raise PolicyViolation(
            "config.seed is set (seeded, predictable DP noise) but the plan's "
            "dp.allow_insecure_rng is false: unset the seed"
        )


def check_local_steps(policy: SiloPolicy, steps: int, source: str) -> None:
    """Refuse more DP-SGD steps than the policy allows; `source` names where `steps` came from."""
    if steps > policy.max_local_steps_per_round:
        raise PolicyViolation(
            f"{source} is {steps} but policy.max_local_steps_per_round is "
            f"{policy.max_local_steps_per_round}"
        )


def check_noise_multiplier(policy: SiloPolicy, sigma: float, source: str) -> None:
    """Refuse a noise multiplier below the policy's floor, fixed by the plan or derived."""
    if sigma < policy.min_noise_multiplier:
        raise PolicyViolation(
            f"{source} is {sigma:.4g} but policy.min_noise_multiplier is "
            f"{policy.min_noise_multiplier:g}"
        )


def check_round_epsilon(policy: SiloPolicy, epsilon_before: float, epsilon_after: float) -> None:
    """Refuse a single round that costs more epsilon than policy.max_epsilon_per_round."""
    limit = policy.max_epsilon_per_round
    if limit is not None and epsilon_after - epsilon_before > limit:
        raise PolicyViolation(
            f"this round would cost epsilon {epsilon_after - epsilon_before:.4g} but "
            f"policy.max_epsilon_per_round is {limit:g}"
        )
