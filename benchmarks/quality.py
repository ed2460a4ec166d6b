"""Selector quality on heterogeneous silos: centralized, local-only, FedBis and FedBiscuit.

On the synthetic benchmark with three latent preference groups of unequal size
(`selector.benchmark.THREE_GROUPS`, 5/3/2 of 10 silos) each method is trained in-process
with the federation's own parts (no gRPC): `silo.trainer.LocalTrainer` for DP-SGD,
`aggregator.fedavg` (FedAvg, aggregate-on-model), the DP loss report of
`privacy.loss_report` and `privacy.balanced_assignment.assign_clusters` for grouping, and
the plan's own schedule (`Plan.warmup_adapter`, `Plan.grouping_rounds`) from the demo's
plan. Every method runs without DP (σ = 0: per-pair clipping only, exact loss reports) and
with DP (ε = 8, δ = 1e-5 per silo; σ derived as `silo/training_setup.py` does, reserving
the planned loss reports). Centralized pools all training pairs in one party with the
same budget and a batch as large as one federated round's; local-only trains each silo
alone (its population row is the vote of all silos' selectors).

Columns: population agreement (majority vote of the method's selectors on every silo's
held-out pairs pooled), mean and worst per-silo agreement (FedBiscuit and local-only: each
silo with its own selector) and the largest ε any silo spent. Run from the repository root:

    python benchmarks/quality.py --backbone tiny [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from aggregator.fedavg import aggregate_on_model, fedavg
from fedbiscuit.demo_setup import DemoOptions, demo_plan
from privacy.accounting import PrivacyAccountant, derive_noise_multiplier
from privacy.balanced_assignment import assign_clusters
from privacy.loss_report import evaluation_sample, loss_report_event, noised_mean_losses
from protos.plan import DpSpec, Plan
from selector.backbone import load_tokenizer
from selector.benchmark import THREE_GROUPS, SiloData, make_federated_dataset
from selector.data import PairEncoder, PreferencePair
from selector.model import PairwiseSelector, adapter_state, build_selector, load_adapter_state
from selector.set_evaluation import SetAgreement, set_agreement
from silo.trainer import LocalTrainer
from silo.training_setup import reserved_loss_reports

State = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Row:
    method: str
    dp: bool
    agreement: SetAgreement
    epsilon: float
    seconds: float


def _flat(state: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([state[name].ravel() for name in sorted(state)])


def _unflat(vector: np.ndarray, like: Mapping[str, np.ndarray]) -> State:
    out, offset = {}, 0
    for name in sorted(like):
        size = like[name].size
        out[name] = vector[offset : offset + size].reshape(like[name].shape).astype(np.float32)
        offset += size
    return out


class Party:
    """One data holder: its DP-SGD trainer and the accountant of what it released."""

    def __init__(
        self,
        plan: Plan,
        encoder: PairEncoder,
        pairs: Sequence[PreferencePair],
        dp: bool,
        seed: int,
        batch_size: int | None = None,
    ) -> None:
        spec = (
            plan.dp
            if batch_size is None
            else plan.dp.model_copy(update={"expected_batch_size": batch_size})
        )
        self.plan, self.pairs = plan, list(pairs)
        sample_rate = min(1.0, spec.expected_batch_size / len(self.pairs))
        steps = plan.participations_budgeted * plan.training.local_steps
        # As silo/training_setup.py: the smallest σ whose planned rounds, plus one loss report
        # per planned grouping, fit the budget (a hair under it, as there).
        sigma = (
            derive_noise_multiplier(
                EPSILON * (1 - 1e-9), plan.delta, sample_rate, steps, reserved_loss_reports(plan)
            )
            if dp
            else 0.0
        )
        self.dp = dp
        self.trainer = LocalTrainer(
            build_selector(plan.selector, plan.seed),
            encoder,
            self.pairs,
            DpSpec.model_validate(spec.model_dump()),
            plan.training,
            noise_multiplier=sigma,
            device=torch.device("cpu"),
            seed=seed,
        )
        self.accountant = PrivacyAccountant()
        self.rng = np.random.default_rng(seed)

    def train(self, state: State) -> State:
        steps = self.plan.training.local_steps
        if self.dp:
            self.accountant.record(self.trainer.dp_event(steps))
        return self.trainer.train_round(state, steps)

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
        return noised_mean_losses(
            losses, fb.loss_report.clip, fb.loss_report.noise_multiplier, self.rng
        )

    def epsilon(self) -> float:
        return self.accountant.epsilon(self.plan.delta) if self.dp else math.inf


EPSILON = 8.0


def _initial(plan: Plan, adapter: int = 0) -> State:
    return adapter_state(build_selector(plan.selector, seed=plan.seed + adapter))


def _average(globals_: State, deltas: Sequence[State]) -> State:
    vector = fedavg(_flat(globals_), [_flat(d) for d in deltas], [1.0] * len(deltas))
    return _unflat(vector, globals_)


def run_centralized(plan: Plan, encoder, dataset, dp: bool, seed: int):
    pooled = [pair for data in dataset.values() for pair in data.train]
    party = Party(
        plan, encoder, pooled, dp, seed, batch_size=plan.dp.expected_batch_size * len(dataset)
    )
    state = _initial(plan)
    for _ in range(plan.rounds):
        state = _average(state, [party.train(state)])
    return [state], {}, party.epsilon()


def run_local(plan: Plan, encoder, dataset, dp: bool, seed: int):
    states, clusters, epsilons = [], {}, []
    for index, (silo, data) in enumerate(sorted(dataset.items())):
        party = Party(plan, encoder, data.train, dp, seed * 1000 + index)
        state = _initial(plan)
        for _ in range(plan.rounds):
            state = _average(state, [party.train(state)])
        states.append(state)
        clusters[silo] = index
        epsilons.append(party.epsilon())
    return states, clusters, max(epsilons)


def run_fedbis(plan: Plan, encoder, dataset, dp: bool, seed: int):
    parties = [
        Party(plan, encoder, data.train, dp, seed * 1000 + index)
        for index, (_, data) in enumerate(sorted(dataset.items()))
    ]
    state = _initial(plan)
    for _ in range(plan.rounds):
        state = _average(state, [party.train(state) for party in parties])
    return [state], {}, max(party.epsilon() for party in parties)


def run_fedbiscuit(plan: Plan, encoder, dataset, dp: bool, seed: int):
    silos = sorted(dataset)
    parties = [
        Party(plan, encoder, dataset[silo].train, dp, seed * 1000 + index)
        for index, silo in enumerate(silos)
    ]
    states = [_initial(plan, k) for k in range(plan.adapters)]
    clusters: list[int] = []
    for round_ in range(plan.rounds):
        if round_ in plan.grouping_rounds():
            losses = np.stack([party.loss_report(states) for party in parties])
            clusters = list(assign_clusters(losses, plan.fedbiscuit.assignment))
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
    return states, dict(zip(silos, clusters, strict=True)), max(p.epsilon() for p in parties)


METHODS = {
    "centralized": run_centralized,
    "local-only": run_local,
    "FedBis": run_fedbis,
    "FedBiscuit": run_fedbiscuit,
}


def _models(plan: Plan, states: Sequence[State]) -> list[PairwiseSelector]:
    models = []
    for state in states:
        model = build_selector(plan.selector, seed=plan.seed)
        load_adapter_state(model, state)
        models.append(model)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", choices=("tiny", "minilm"), default="minilm")
    parser.add_argument("--rounds", type=int, help="federated rounds (default 12; quick: 7)")
    parser.add_argument("--quick", action="store_true", help="fewer pairs and rounds")
    parser.add_argument("--silos", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--train-pairs", type=int, help="per silo (default 256; quick: 96)")
    parser.add_argument("--test-pairs", type=int, help="per silo (default 128; quick: 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    args = parser.parse_args()
    rounds = args.rounds or (7 if args.quick else 12)
    train_pairs = args.train_pairs or (96 if args.quick else 256)
    test_pairs = args.test_pairs or (64 if args.quick else 128)

    options = DemoOptions(
        silos=args.silos,
        rounds=rounds,
        clusters=args.clusters,
        epsilon=EPSILON,
        seed=args.seed,
        tiny=args.backbone == "tiny",
        train_pairs_per_silo=train_pairs,
    )
    plans = {
        "fedbis": demo_plan(dataclasses.replace(options, algorithm="fedbis")),
        "fedbiscuit": demo_plan(dataclasses.replace(options, algorithm="fedbiscuit")),
    }
    dataset: dict[str, SiloData] = make_federated_dataset(
        args.silos, train_pairs, test_pairs, seed=args.seed, groups=THREE_GROUPS
    )
    groups = {silo: data.group for silo, data in dataset.items()}
    test = [pair for silo in sorted(dataset) for pair in dataset[silo].test]
    encoder = PairEncoder(load_tokenizer(), plans["fedbis"].selector.max_tokens_per_answer)
    print(
        f"benchmark: {args.silos} silos in groups "
        + ", ".join(f"{g.name}={sum(v == g.name for v in groups.values())}" for g in THREE_GROUPS)
        + f"; {train_pairs} train / {test_pairs} test pairs per silo; {rounds} rounds of "
        f"{options.local_steps} DP-SGD steps (batch {options.expected_batch_size}); "
        f"backbone {args.backbone}; DP: epsilon={EPSILON:g}, delta={options.delta:g} per silo",
        flush=True,
    )
    rows = []
    for name in args.methods.split(","):
        plan = plans["fedbiscuit" if name == "FedBiscuit" else "fedbis"]
        for dp in (False, True):
            started = time.monotonic()
            torch.manual_seed(args.seed)
            states, clusters, epsilon = METHODS[name](plan, encoder, dataset, dp, args.seed)
            result = set_agreement(_models(plan, states), encoder, test, clusters)
            rows.append(Row(name, dp, result, epsilon, time.monotonic() - started))
            worst = min(result.per_silo, key=result.per_silo.__getitem__)
            print(f"  {name} {'DP' if dp else 'no DP'} worst silo: {worst} ({groups[worst]})")
            if name == "FedBiscuit":
                by_cluster = {}
                for silo, k in sorted(clusters.items()):
                    by_cluster.setdefault(k, []).append(f"{silo}:{groups[silo]}")
                print(f"  FedBiscuit {'DP' if dp else 'no DP'} clusters: {by_cluster}")
            print(f"  {name} {'DP' if dp else 'no DP'}: {time.monotonic() - started:.0f} s",
                  flush=True)  # fmt: skip
    _print_table(rows)


def _print_table(rows: Sequence[Row]) -> None:
    print()
    header = f"{'method':<12} {'DP':<6} {'population':>10} {'mean silo':>10} {'worst silo':>10}"
    print(header + f" {'ε spent':>8} {'time s':>7}")
    print("-" * (len(header) + 17))
    for row in rows:
        a = row.agreement
        mean = float(np.mean(list(a.per_silo.values())))
        eps = "—" if math.isinf(row.epsilon) else f"{row.epsilon:.2f}"
        print(
            f"{row.method:<12} {'ε=8' if row.dp else 'none':<6} {a.overall:>10.3f} "
            f"{mean:>10.3f} {a.worst_silo:>10.3f} {eps:>8} {row.seconds:>7.0f}"
        )
    by = {(r.method, r.dp): r.agreement for r in rows}
    if ("FedBis", True) in by and ("FedBiscuit", True) in by:
        bis, cuit = by[("FedBis", True)], by[("FedBiscuit", True)]
        worst_gain = 100 * (cuit.worst_silo - bis.worst_silo)
        print()
        print(
            f"target (DP): FedBiscuit worst silo ≥ FedBis + 10 points: {worst_gain:+.1f} points "
            f"-> {'met' if worst_gain >= 10 else 'NOT met'}; population ≥ FedBis: "
            f"{cuit.overall:.3f} vs {bis.overall:.3f} -> "
            f"{'met' if cuit.overall >= bis.overall else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
