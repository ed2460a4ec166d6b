"""What a silo trains with in a federation: its data, the plan's selector and a fixed sigma.

Built once per run, after the plan was accepted and before the first task is pulled, so a
sigma the silo's policy forbids stops the agent before anything is released.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from privacy.accounting import DpEvent, derive_noise_multiplier
from privacy.loss_report import evaluation_sample, loss_report_event
from privacy.secure_noise import NoiseSource
from protos.errors import FailedPrecondition
from protos.plan import Plan
from selector.model import build_encoder, build_selector
from silo.config import SiloConfig
from silo.local_backbones import silo_selector
from silo.policy import check_noise_multiplier, check_noise_source
from silo.trainer import LocalTrainer
from silo.training_data import read_training_pairs

_DERIVATION_MARGIN = 1e-9


@dataclass(frozen=True)
class TrainingSetup:
    """What the loop trains with, built once per run after the plan was accepted."""

    trainer: LocalTrainer
    sigma: float
    num_examples: int
    secure_rng: bool
    evaluation_rows: tuple[int, ...] = ()
    """FedBiscuit: the fixed m training pairs every loss report averages over."""


def reserved_loss_reports(plan: Plan, made: int = 0) -> tuple[DpEvent, ...]:
    """The loss reports a silo must be able to afford besides DP-SGD: one per planned
    grouping (FedBis: none) beyond the `made` ones already spent, as one event of equal RDP."""
    fb = plan.fedbiscuit
    groupings = max(0, len(plan.grouping_rounds()) - made)
    if fb is None or groupings == 0:
        return ()
    one = loss_report_event(plan.adapters, fb.loss_report.noise_multiplier)
    return (DpEvent("gaussian", one.noise_multiplier, 1.0, one.steps * groupings),)


def build_training(config: SiloConfig, plan: Plan, spent: Sequence[DpEvent] = ()) -> TrainingSetup:
    """Load the silo's data and the plan's selector (its backbone from where this silo keeps
    it, silo.local_backbones); fix sigma, checked against the policy.

    A plan without a fixed sigma gets the smallest one whose `participations_budgeted`
    rounds, plus one loss report per planned FedBiscuit grouping, fit what is left of the
    silo's budget after the releases already `spent` (a restart or a plan change mid-way), so
    every round and grouping the silo is asked for is affordable.
    """
    pairs = read_training_pairs(config)
    rows: tuple[int, ...] = ()
    if plan.fedbiscuit is not None:
        keys = [f"{p.prompt}\x00{p.chosen}\x00{p.rejected}".encode() for p in pairs]
        salt = f"{plan.federation_id}/{config.silo_id}".encode()
        rows = tuple(evaluation_sample(keys, plan.fedbiscuit.loss_report.sample_size, salt))
    sample_rate = plan.dp.sample_rate or min(1.0, plan.dp.expected_batch_size / len(pairs))
    if plan.dp.noise_multiplier is not None:
        sigma, source = plan.dp.noise_multiplier, "plan.dp.noise_multiplier"
    else:
        # What the ledger spent stays spent; what is planned beyond it must fit what is left.
        rounds_made = sum(1 for event in spent if event.mechanism == "dp_sgd")
        reports_made = len(spent) - rounds_made
        rounds_left = max(1, plan.participations_budgeted - rounds_made)
        steps = rounds_left * plan.training.local_steps
        reserved = (*spent, *reserved_loss_reports(plan, reports_made))
        # Derived for one event of all steps, spent as one event per round: the RDP sums agree
        # only up to rounding, so aim a hair under the budget or the last round may not fit.
        target = config.budget.epsilon * (1 - _DERIVATION_MARGIN)
        sigma = derive_noise_multiplier(target, plan.delta, sample_rate, steps, reserved)
        source = f"the noise multiplier derived for budget.epsilon={config.budget.epsilon:g}"
    check_noise_multiplier(config.policy, sigma, source)
    check_noise_source(config.policy, plan, seeded=config.seed is not None)
    noise = NoiseSource(config.seed, context=f"{plan.federation_id}/{config.silo_id}")
    selector = silo_selector(config, plan.selector)
    trainer = LocalTrainer(
        build_selector(selector, plan.seed),
        build_encoder(selector),
        pairs,
        plan.dp,
        plan.training,
        noise_multiplier=sigma,
        device=torch.device(config.resolved_device()),
        noise=noise,
    )
    if not math.isclose(trainer.sample_rate, sample_rate):
        raise FailedPrecondition(
            f"trainer samples at rate {trainer.sample_rate:g}; sigma assumed {sample_rate:g}"
        )
    return TrainingSetup(
        trainer, sigma, len(pairs), secure_rng=trainer.secure_rng, evaluation_rows=rows
    )
