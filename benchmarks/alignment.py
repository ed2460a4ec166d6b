"""Alignment with federated selectors: does DPO on their labels make answers people prefer?

On the three-group benchmark (`selector.benchmark.generator.THREE_GROUPS`, 6/4/2 of 12 silos) FedBis
(one selector) and FedBiscuit (K = 3) are trained in-process under DP (ε = 8, δ = 1e-5 per
silo) exactly as `benchmarks/quality.py` trains them (`fedbiscuit.quality.methods`). Each
selector set then labels pairs of completions of the benchmark's base policy
(`selector.benchmark.tiny_lm`: a tiny causal LM over the benchmark's words), DPO tunes a
LoRA adapter on the policy, and the tuned policy is judged against the base: by the
selectors that labelled its data, and by the benchmark's own people
(`selector.benchmark.oracle`: the share of the population, groups weighted by share,
preferring the tuned answer; and each group's share). Intervals are seeded 95% bootstrap
intervals over the judged comparisons. Run from the repository root:

    python benchmarks/alignment.py [--backbone tiny|minilm] [--steps 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from fedbiscuit.demo.layout import DemoOptions, demo_plan
from fedbiscuit.quality.methods import run_fedbis, run_fedbiscuit
from selector.alignment.config import benchmark_align_config
from selector.alignment.pipeline import AlignmentReport, RateReport, run_alignment
from selector.backbone import load_tokenizer
from selector.benchmark.generator import THREE_GROUPS, make_federated_dataset
from selector.benchmark.oracle import OracleJudge
from selector.benchmark.tiny_lm import benchmark_prompts, make_benchmark_policy
from selector.checkpoint import load_selector_set, save_selector_set
from selector.data import PairEncoder
from selector.set_evaluation import set_agreement

METHODS = {"FedBis": ("fedbis", run_fedbis), "FedBiscuit": ("fedbiscuit", run_fedbiscuit)}


def _rate(rate: RateReport | None) -> str:
    if rate is None:
        return "—"
    return f"{rate.win_rate:.3f} [{rate.ci95[0]:.3f}, {rate.ci95[1]:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", choices=("tiny", "minilm"), default="tiny")
    parser.add_argument(
        "--silos", type=int, default=12, help="silos, split 6/4/2 into the groups (12)"
    )
    parser.add_argument(
        "--rounds", type=int, default=24, help="federated rounds; groupings settle by ~20 (24)"
    )
    parser.add_argument("--train-pairs", type=int, default=128, help="per silo (128)")
    parser.add_argument("--steps", type=int, default=100, help="DPO steps (100)")
    parser.add_argument("--copies", type=int, default=8, help="prompt file: questions × this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    started = time.monotonic()
    silos = args.silos
    dataset = make_federated_dataset(silos, args.train_pairs, 64, args.seed, THREE_GROUPS)
    test = [pair for silo in sorted(dataset) for pair in dataset[silo].test]
    options = DemoOptions(
        silos=silos,
        rounds=args.rounds,
        clusters=3,
        seed=args.seed,
        tiny=args.backbone == "tiny",
        train_pairs_per_silo=args.train_pairs,
        # In-process selector training: nothing travels, so no masking and no spare rounds.
        protection="insecure_plaintext",
    )
    oracle = OracleJudge(THREE_GROUPS)
    rows: dict[str, tuple[float, AlignmentReport, float]] = {}
    with tempfile.TemporaryDirectory(prefix="fedbiscuit-align-") as scratch:
        root = Path(scratch)
        policy = make_benchmark_policy(root / "policy", seed=args.seed)
        prompts = root / "prompts.jsonl"
        prompts.write_text(
            "".join(json.dumps({"prompt": p}) + "\n" for p in benchmark_prompts(args.copies))
        )
        print(f"base policy trained: {time.monotonic() - started:.0f} s", flush=True)
        for name, (algorithm, train) in METHODS.items():
            began = time.monotonic()
            plan = demo_plan(dataclasses.replace(options, algorithm=algorithm))
            encoder = PairEncoder(load_tokenizer(), plan.selector.max_tokens_per_answer)
            torch.manual_seed(args.seed)
            outcome = train(plan, encoder, dataset, options.epsilon, args.seed)
            epsilon = outcome.epsilon
            folder = root / name
            meta = {"method": name}
            save_selector_set(folder, plan.selector, outcome.states, outcome.clusters, meta)
            models, _, _, _ = load_selector_set(folder)
            agreement = set_agreement(models, encoder, test).overall
            print(f"{name}: selectors trained (ε {epsilon:.2f}, held-out agreement "
                  f"{agreement:.3f}) in {time.monotonic() - began:.0f} s", flush=True)  # fmt: skip
            config = benchmark_align_config(seed=args.seed, steps=args.steps)
            report = run_alignment(folder, policy, prompts, config, root / f"{name}-out", oracle)
            rows[name] = (agreement, report, time.monotonic() - began)
            print(f"{name}: aligned in {report.wall_time_s:.0f} s", flush=True)
    _print_table(rows)
    print(f"\nwall time {time.monotonic() - started:.0f} s")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    name: {"agreement": agreement, **report.model_dump(mode="json")}
                    for name, (agreement, report, _) in rows.items()
                },
                indent=2,
            )
            + "\n"
        )


def _print_table(rows: dict[str, tuple[float, AlignmentReport, float]]) -> None:
    groups = [group.name for group in THREE_GROUPS]
    print()
    print(f"{'selectors':<11} {'K':>2} {'agree':>6} {'pairs':>5} {'split':>5}  "
          f"{'win rate (selectors)':<24} {'win rate (oracle)':<24} "
          + " ".join(f"{g:>9}" for g in groups))  # fmt: skip
    for name, (agreement, report, _) in rows.items():
        per_group = " ".join(f"{report.by_oracle_group[g].win_rate:>9.3f}" for g in groups)
        print(f"{name:<11} {report.selectors:>2} {agreement:>6.3f} {report.pairs_labelled:>5} "
              f"{report.split_votes:>5}  {_rate(report.by_selectors):<24} "
              f"{_rate(report.by_oracle):<24} {per_group}")  # fmt: skip


if __name__ == "__main__":
    main()
