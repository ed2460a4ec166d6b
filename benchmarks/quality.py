"""Selector quality on heterogeneous silos: centralized, local-only, FedBis and FedBiscuit,
each without DP and with DP (ε = 8, δ = 1e-5 per silo). What is run and why:
fedbiscuit/quality/comparison.py.

Run from the repository root (one table per seed, then the targets for every seed):

    OMP_NUM_THREADS=1 python benchmarks/quality.py --backbone tiny [--seeds 0,1,2] [--quick]

`--variant long`: answers of 3–6 sentences with what matters spread through them, 9 silos
in three equal groups (selector/benchmark/long_answers.py), trained with the recipe a
partner's data gets (`fedbiscuit/recipe.py` through `with_data_recipe`: adapters on the top
layer, its batch, steps and learning rate, a token window from the training pairs' length
statistics; `--window` and `--local-steps` still override), and its own targets with DP:
FedBiscuit's final clusters are the groups, its mean per-silo agreement ≥ 0.75.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from fedbiscuit.demo.layout import demo_plan, with_data_recipe
from fedbiscuit.quality.comparison import (
    QualityOptions,
    Row,
    demo_options,
    format_table,
    plans,
    run_methods,
    target_verdict,
)
from fedbiscuit.quality.methods import METHODS
from protos.plan import Plan
from selector.benchmark.bayes import bayes_rates
from selector.benchmark.generator import THREE_GROUPS, SiloData, make_federated_dataset
from selector.benchmark.long_answers import LONG_GROUPS, LONG_SILOS, make_long_dataset

LONG_MEAN_SILO_TARGET = 0.75


def variant_dataset(variant: str, options: QualityOptions) -> dict[str, SiloData]:
    """The federation of `variant` ('short': issue 3's 3:2:1 groups; 'long': issue 18's)."""
    if variant == "long":
        return make_long_dataset(
            options.silos, options.train_pairs, options.test_pairs, options.seed
        )
    return make_federated_dataset(
        options.silos, options.train_pairs, options.test_pairs, options.seed, THREE_GROUPS
    )


def recipe_plans(
    options: QualityOptions, dataset: dict[str, SiloData]
) -> tuple[dict[str, Plan], str]:
    """The FedBis and FedBiscuit plans a partner's data would get (`with_data_recipe`), and
    the line saying what the recipe chose."""
    demo = demo_options(options, min(len(data.train) for data in dataset.values()))
    chosen, note = with_data_recipe(demo, [p for data in dataset.values() for p in data.train])
    by_algorithm = {
        algorithm: demo_plan(dataclasses.replace(chosen, algorithm=algorithm))
        for algorithm in ("fedbis", "fedbiscuit")
    }
    return by_algorithm, note


def with_window(plan: Plan, window: int) -> Plan:
    selector = {**plan.selector.model_dump(), "max_tokens_per_answer": window}
    return Plan.model_validate({**plan.model_dump(), "selector": selector})


def with_local_steps(plan: Plan, steps: int) -> Plan:
    training = {**plan.training.model_dump(), "local_steps": steps}
    return Plan.model_validate({**plan.model_dump(), "training": training})


def long_verdict(rows: list[Row], dataset: dict[str, SiloData]) -> str | None:
    """The long variant's targets beside `target_verdict`'s: FedBiscuit (DP) ends with one
    group per cluster, and each silo's own selector agrees ≥ 0.75 on average."""
    cuit = next((r for r in rows if r.method == "FedBiscuit" and r.dp), None)
    if cuit is None:
        return None
    clusters: dict[int, set[str | None]] = {}
    for silo, k in cuit.outcome.clusters.items():
        clusters.setdefault(k, set()).add(dataset[silo].group)
    # No grouping (rounds all spent in warm-up) is not settling.
    settled = bool(clusters) and all(len(groups) == 1 for groups in clusters.values())
    per_silo = cuit.agreement.per_silo
    mean = sum(per_silo.values()) / len(per_silo)
    met = mean >= LONG_MEAN_SILO_TARGET
    return (
        f"target (DP, long): clusters are the groups -> {'met' if settled else 'NOT met'}; "
        f"FedBiscuit mean silo ≥ {LONG_MEAN_SILO_TARGET}: {mean:.3f} -> "
        f"{'met' if met else 'NOT met'}"
    )


def main() -> None:
    defaults = QualityOptions()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", choices=("tiny", "minilm"), default=defaults.backbone)
    parser.add_argument("--rounds", type=int, help=f"default {defaults.rounds}; quick: 12")
    parser.add_argument("--quick", action="store_true", help="fewer pairs and rounds")
    parser.add_argument("--variant", choices=("short", "long"), default="short")
    parser.add_argument("--silos", type=int, help=f"default {defaults.silos}; long: {LONG_SILOS}")
    parser.add_argument(
        "--window",
        type=int,
        help="tokens per side (default: short 32; long: "
        "from the data's lengths, as the demo chooses for a partner's data)",
    )
    parser.add_argument("--clusters", type=int, default=defaults.clusters)
    parser.add_argument(
        "--local-steps", type=int, help=f"default {defaults.local_steps}; long: the recipe's"
    )
    parser.add_argument("--train-pairs", type=int, help="per silo (default 256; quick: 96)")
    parser.add_argument("--test-pairs", type=int, help="per silo (default 128; quick: 64)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds of data and noise")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--dp-only", action="store_true", help="skip the runs without DP")
    only.add_argument("--no-dp-only", action="store_true", help="skip the runs with DP")
    args = parser.parse_args()
    options = QualityOptions(
        backbone=args.backbone,
        silos=args.silos or (LONG_SILOS if args.variant == "long" else defaults.silos),
        clusters=args.clusters,
        rounds=args.rounds or (12 if args.quick else defaults.rounds),
        local_steps=args.local_steps or defaults.local_steps,
        train_pairs=args.train_pairs or (96 if args.quick else defaults.train_pairs),
        test_pairs=args.test_pairs or (64 if args.quick else defaults.test_pairs),
        methods=tuple(args.methods.split(",")),
        dp_modes=(True,) if args.dp_only else (False,) if args.no_dp_only else (False, True),
    )
    groups = LONG_GROUPS if args.variant == "long" else THREE_GROUPS
    shares = ":".join(f"{group.share:g}" for group in groups)
    print(
        f"benchmark ({args.variant} answers): {options.silos} silos (groups {shares}), "
        f"{options.train_pairs} train / "
        f"{options.test_pairs} test pairs per silo; {options.rounds} rounds; "
        f"backbone {options.backbone}; DP: "
        f"epsilon={options.epsilon:g} per silo",
        flush=True,
    )
    print(f"Bayes rates: {bayes_rates(groups).describe()}", flush=True)
    verdicts = {}
    for seed in (int(text) for text in args.seeds.split(",")):
        started = time.monotonic()
        print(f"\nseed {seed}", flush=True)
        seeded = dataclasses.replace(options, seed=seed)
        dataset = variant_dataset(args.variant, seeded)
        if args.variant == "long":
            by_algorithm, note = recipe_plans(seeded, dataset)
            print(note, flush=True)
            if args.local_steps is not None:
                by_algorithm = {
                    name: with_local_steps(p, args.local_steps) for name, p in by_algorithm.items()
                }
        else:
            by_algorithm = plans(seeded)
        if args.window is not None:
            by_algorithm = {name: with_window(p, args.window) for name, p in by_algorithm.items()}
        fedbis = by_algorithm["fedbis"]
        print(
            f"window {fedbis.selector.max_tokens_per_answer} tokens per side; "
            f"{fedbis.training.local_steps} DP-SGD steps a round, expected batch "
            f"{fedbis.dp.expected_batch_size}; adapters on "
            f"{', '.join(fedbis.selector.lora.target_modules)}",
            flush=True,
        )
        rows = run_methods(by_algorithm, dataset, seeded, log=lambda line: print(line, flush=True))
        print("\n" + format_table(rows) + f"\n(seed {seed}: {time.monotonic() - started:.0f} s)")
        if args.variant == "long" and (verdict := long_verdict(rows, dataset)) is not None:
            print(verdict)
        verdicts[seed] = target_verdict(rows)
    if len(verdicts) > 1:
        print()
        for seed, verdict in verdicts.items():
            print(f"seed {seed}: {verdict[0] if verdict else 'no FedBis/FedBiscuit DP rows'}")


if __name__ == "__main__":
    main()
