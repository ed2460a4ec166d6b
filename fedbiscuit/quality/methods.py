"""The four methods `fedbiscuit.quality.comparison` compares, trained in-process with the
federation's own parts (no gRPC): `silo.trainer.LocalTrainer` for DP-SGD,
`aggregator.rounds.fedavg` (FedAvg, aggregate-on-model), the DP loss report of
`privacy.loss_report`, the plan's balanced assignment and its schedule
(`Plan.warmup_adapter`, `Plan.grouping_rounds`).

Every party derives its σ as `silo/training_setup.py` does (the planned rounds plus the
planned loss reports fit ε = `epsilon` at the plan's δ); without DP, σ = 0 (per-pair
clipping only) and loss reports are exact. Centralized pools all training pairs in one
party with the same budget and a batch as large as one federated round's; local-only trains
each silo alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from aggregator.rounds.fedavg import aggregate_on_model, fedavg
from privacy.accounting import PrivacyAccountant, derive_noise_multiplier
from privacy.balanced_assignment import assign_clusters
from privacy.loss_report import evaluation_sample, loss_report_event, noised_mean_losses
from privacy.secure_noise import NoiseSource
from protos.plan import DpSpec, Plan
from selector.benchmark.generator import SiloData
from selector.model import Encoder, adapter_state, build_selector
from silo.trainer import LocalTrainer
from silo.training_setup import reserved_loss_reports

State = dict[str, np.ndarray]

__all__ = ["METHODS", "Outcome", "State"]


@dataclass(frozen=True)
class Outcome:
    """What a method trained: its selectors' adapters, each silo's own selector (empty: all
    silos are served by the one selector), every grouping's assignment, the largest ε spent
    (inf without DP)."""

    states: list[State]
    clusters: dict[str, int]
    groupings: list[dict[str, int]]
    epsilon: float


def _flat(state: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([state[name].ravel() for name in sorted(state)])


def _unflat(vector: np.ndarray, like: Mapping[str, np.ndarray]) -> State:
    out, offset = {}, 0
    for name in sorted(like):
        size = like[name].size
        out[name] = vector[offset : offset + size].reshape(like[name].shape).astype(np.float32)
        offset += size
    return out


class _Party:
    """One data holder: its DP-SGD trainer and the accountant of what it released."""

    def __init__(
        self,
        plan: Plan,
        encoder: Encoder,
        data: SiloData,
        epsilon: float | None,
        seed: int,
        batch_size: int | None = None,
    ) -> None:
        spec = (
            plan.dp
            if batch_size is None
            else plan.dp.model_copy(update={"expected_batch_size": batch_size})
        )
        self.plan, self.pairs = plan, list(data.train)
        # The rate the trainer samples at: the plan's public q when it fixes one.
        sample_rate = (
            spec.sample_rate
            if spec.sample_rate is not None
            else min(1.0, spec.expected_batch_size / len(self.pairs))
        )
        steps = plan.participations_budgeted * plan.training.local_steps
        # As silo/training_setup.py: the smallest σ whose planned rounds, plus one loss report
        # per planned grouping, fit the budget (a hair under it, as there).
        sigma = (
            derive_noise_multiplier(
                epsilon * (1 - 1e-9), plan.delta, sample_rate, steps, reserved_loss_reports(plan)
            )
            if epsilon is not None
            else 0.0
        )
        self.dp = epsilon is not None
        self.trainer = LocalTrainer(
            build_selector(plan.selector, plan.seed),
            encoder,
            self.pairs,
            # An offline comparison, seeded for reproducible figures: never a silo's noise.
            DpSpec.model_validate({**spec.model_dump(), "allow_insecure_rng": True}),
            plan.training,
            noise_multiplier=sigma,
            device=torch.device("cpu"),
            noise=NoiseSource(seed, context="quality"),
        )
        self.accountant = PrivacyAccountant()
        self._releases = 0

    def _next_release(self) -> int:
        self._releases += 1
        return self._releases

    def train(self, state: State) -> State:
        steps = self.plan.training.local_steps
        if self.dp:
            self.accountant.record(self.trainer.dp_event(steps))
        return self.trainer.train_round(state, steps, release=self._next_release())

    def loss_report(self, states: Sequence[State]) -> np.ndarray:
        """FedBiscuit's report: per adapter, the mean clipped loss over the evaluation sample,
        Gaussian-noised and accounted under DP (exact without)."""
        fb = self.plan.fedbiscuit
        keys = [f"{p.prompt}\x00{p.chosen}\x00{p.rejected}".encode() for p in self.pairs]
        rows = evaluation_sample(keys, fb.loss_report.sample_size, b"quality")
        losses = np.stack([self.trainer.example_losses(state, rows) for state in states])
        if not self.dp:
            return np.clip(losses, 0.0, fb.loss_report.clip).mean(axis=1)
        self.accountant.record(loss_report_event(len(states), fb.loss_report.noise_multiplier))
        stream = self.trainer.noise.stream(self._next_release(), "loss_report")
        return noised_mean_losses(
            losses, fb.loss_report.clip, fb.loss_report.noise_multiplier, stream
        )

    def epsilon(self) -> float:
        return self.accountant.epsilon(self.plan.delta) if self.dp else math.inf


def _initial(plan: Plan, adapter: int = 0) -> State:
    return adapter_state(build_selector(plan.selector, seed=plan.seed + adapter))


def _average(globals_: State, deltas: Sequence[State]) -> State:
    vector = fedavg(_flat(globals_), [_flat(d) for d in deltas], [1.0] * len(deltas))
    return _unflat(vector, globals_)


def _parties(
    plan: Plan, encoder: Encoder, dataset: Mapping[str, SiloData], epsilon: float | None, seed: int
) -> list[_Party]:
    return [
        _Party(plan, encoder, dataset[silo], epsilon, seed * 1000 + index)
        for index, silo in enumerate(sorted(dataset))
    ]


def run_centralized(
    plan: Plan, encoder: Encoder, dataset: Mapping[str, SiloData], epsilon: float | None, seed: int
) -> Outcome:
    pooled = SiloData(train=[pair for data in dataset.values() for pair in data.train], test=[])
    batch = plan.dp.expected_batch_size * len(dataset)
    party = _Party(plan, encoder, pooled, epsilon, seed, batch_size=batch)
    state = _initial(plan)
    for _ in range(plan.rounds):
        state = _average(state, [party.train(state)])
    return Outcome([state], {}, [], party.epsilon())


def run_local(
    plan: Plan, encoder: Encoder, dataset: Mapping[str, SiloData], epsilon: float | None, seed: int
) -> Outcome:
    states = []
    parties = _parties(plan, encoder, dataset, epsilon, seed)
    for party in parties:
        state = _initial(plan)
        for _ in range(plan.rounds):
            state = _average(state, [party.train(state)])
        states.append(state)
    clusters = {silo: index for index, silo in enumerate(sorted(dataset))}
    return Outcome(states, clusters, [], max(party.epsilon() for party in parties))


def run_fedbis(
    plan: Plan, encoder: Encoder, dataset: Mapping[str, SiloData], epsilon: float | None, seed: int
) -> Outcome:
    parties = _parties(plan, encoder, dataset, epsilon, seed)
    state = _initial(plan)
    for _ in range(plan.rounds):
        state = _average(state, [party.train(state) for party in parties])
    return Outcome([state], {}, [], max(party.epsilon() for party in parties))


def run_fedbiscuit(
    plan: Plan, encoder: Encoder, dataset: Mapping[str, SiloData], epsilon: float | None, seed: int
) -> Outcome:
    silos = sorted(dataset)
    parties = _parties(plan, encoder, dataset, epsilon, seed)
    states = [_initial(plan, k) for k in range(plan.adapters)]
    clusters: list[int] = []
    groupings = []
    for round_ in range(plan.rounds):
        if round_ in plan.grouping_rounds():
            losses = np.stack([party.loss_report(states) for party in parties])
            clusters = list(assign_clusters(losses, plan.fedbiscuit.assignment))
            groupings.append(dict(zip(silos, clusters, strict=True)))
        warmup = plan.warmup_adapter(round_)
        if warmup is not None:
            states[warmup] = _average(
                states[warmup], [party.train(states[warmup]) for party in parties]
            )
            continue
        for k in range(plan.adapters):
            members = [p for p, c in zip(parties, clusters, strict=True) if c == k]
            if members:
                deltas = [_flat(party.train(states[k])) for party in members]
                states[k] = _unflat(
                    aggregate_on_model(_flat(states[k]), deltas, len(members)), states[k]
                )
    final = groupings[-1] if groupings else {}
    return Outcome(states, final, groupings, max(p.epsilon() for p in parties))


Method = Callable[[Plan, Encoder, Mapping[str, SiloData], float | None, int], Outcome]

METHODS: dict[str, Method] = {
    "centralized": run_centralized,
    "local-only": run_local,
    "FedBis": run_fedbis,
    "FedBiscuit": run_fedbiscuit,
}
"""name → method(plan, encoder, dataset, epsilon or None for no DP, seed)."""
