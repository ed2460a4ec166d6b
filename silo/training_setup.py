"""What a silo trains with in a federation: its data, the plan's selector and a fixed sigma.

Built once per run, after the plan was accepted and before the first task is pulled, so a
sigma the silo's policy forbids stops the agent before anything is released.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from privacy.accounting import DpEvent, derive_noise_multiplier
from privacy.loss_report import evaluation_sample, loss_report_event
from protos.errors import FailedPrecondition
from protos.plan import Plan
from selector.model import build_encoder, build_selector
from silo.config import SiloConfig
from silo.local_backbones import silo_selector
from silo.policy import check_noise_multiplier
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


def reserved_loss_reports(plan: Plan) -> tuple[DpEvent, ...]:
    """The loss reports a silo must be able to afford besides DP-SGD: one per planned
    grouping (FedBis: none), as one event of equal RDP."""
    fb = plan.fedbiscuit
    groupings = len(plan.grouping_rounds())
    if fb is None or groupings == 0:
        return ()
    one = loss_report_event(plan.adapters, fb.loss_report.noise_multiplier)
    return (DpEvent("gaussian", one.noise_multiplier, 1.0, one.steps * groupings),)


def build_training(config: SiloConfig, plan: Plan) -> TrainingSetup:
    """Load the silo's data and the plan's selector (its backbone from where this silo keeps
    it, silo.local_backbones); fix sigma, checked against the policy.

    A plan without a fixed sigma gets the smallest one whose `participations_budgeted`
    rounds, plus one loss report per planned FedBiscuit grouping, fit the silo's whole
    budget, so every round and grouping the silo is asked for is affordable.
    """
    pairs = read_training_pairs(config)
    rows: tuple[int, ...] = ()
    if plan.fedbiscuit is not None:
        keys = [f"{p.prompt}\x00{p.chosen}\x00{p.rejected}".encode() for p in pairs]
        salt = f"{plan.federation_id}/{config.silo_id}".encode()
        rows = tuple(evaluation_sample(keys, plan.fedbiscuit.loss_report.sample_size, salt))
    sample_rate = min(1.0, plan.dp.expected_batch_size / len(pairs))
    if plan.dp.noise_multiplier is not None:
        sigma, source = plan.dp.noise_multiplier, "plan.dp.noise_multiplier"
    else:
        steps = plan.participations_budgeted * plan.training.local_steps
        # Derived for one event of all steps, spent as one event per round: the RDP sums agree
        # only up to rounding, so aim a hair under the budget or the last round may not fit.
        target = config.budget.epsilon * (1 - _DERIVATION_MARGIN)
        sigma = derive_noise_multiplier(
            target, plan.delta, sample_rate, steps, reserved_loss_reports(plan)
        )
        source = f"the noise multiplier derived for budget.epsilon={config.budget.epsilon:g}"
    check_noise_multiplier(config.policy, sigma, source)
    selector = silo_selector(config, plan.selector)
    trainer = LocalTrainer(
        build_selector(selector, plan.seed),
        build_encoder(selector),
        pairs,
        plan.dp,
        plan.training,
        noise_multiplier=sigma,
        device=torch.device(config.resolved_device()),
        seed=config.seed,
    )
    if not math.isclose(trainer.sample_rate, sample_rate):
        raise FailedPrecondition(
            f"trainer samples at rate {trainer.sample_rate:g}; sigma assumed {sample_rate:g}"
        )
    return TrainingSetup(
        trainer, sigma, len(pairs), secure_rng=trainer.secure_rng, evaluation_rows=rows
    )
