"""Selector quality on heterogeneous silos: centralized, local-only, FedBis and FedBiscuit,
each without DP and with DP (ε = 8, δ = 1e-5 per silo). What is run and why:
fedbiscuit/quality/comparison.py.

Run from the repository root (one table per seed, then the targets for every seed):

    OMP_NUM_THREADS=1 python benchmarks/quality.py --backbone tiny [--seeds 0,1,2] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from fedbiscuit.quality.comparison import QualityOptions, format_table, run_quality, target_verdict
from fedbiscuit.quality.methods import METHODS


def main() -> None:
    defaults = QualityOptions()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", choices=("tiny", "minilm"), default=defaults.backbone)
    parser.add_argument("--rounds", type=int, help=f"default {defaults.rounds}; quick: 12")
    parser.add_argument("--quick", action="store_true", help="fewer pairs and rounds")
    parser.add_argument("--silos", type=int, default=defaults.silos)
    parser.add_argument("--clusters", type=int, default=defaults.clusters)
    parser.add_argument("--local-steps", type=int, default=defaults.local_steps)
    parser.add_argument("--train-pairs", type=int, help="per silo (default 256; quick: 96)")
    parser.add_argument("--test-pairs", type=int, help="per silo (default 128; quick: 64)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds of data and noise")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--dp-only", action="store_true", help="skip the runs without DP")
    args = parser.parse_args()
    options = QualityOptions(
        backbone=args.backbone,
        silos=args.silos,
        clusters=args.clusters,
        rounds=args.rounds or (12 if args.quick else defaults.rounds),
        local_steps=args.local_steps,
        train_pairs=args.train_pairs or (96 if args.quick else defaults.train_pairs),
        test_pairs=args.test_pairs or (64 if args.quick else defaults.test_pairs),
        methods=tuple(args.methods.split(",")),
        dp_modes=(True,) if args.dp_only else (False, True),
    )
    print(
        f"benchmark: {options.silos} silos (groups 3:2:1), {options.train_pairs} train / "
        f"{options.test_pairs} test pairs per silo; {options.rounds} rounds of "
        f"{options.local_steps} DP-SGD steps; backbone {options.backbone}; DP: "
        f"epsilon={options.epsilon:g} per silo",
        flush=True,
    )
    verdicts = {}
    for seed in (int(text) for text in args.seeds.split(",")):
        started = time.monotonic()
        print(f"\nseed {seed}", flush=True)
        rows = run_quality(
            dataclasses.replace(options, seed=seed), log=lambda line: print(line, flush=True)
        )
        print("\n" + format_table(rows) + f"\n(seed {seed}: {time.monotonic() - started:.0f} s)")
        verdicts[seed] = target_verdict(rows)
    if len(verdicts) > 1:
        print()
        for seed, verdict in verdicts.items():
            print(f"seed {seed}: {verdict[0] if verdict else 'no FedBis/FedBiscuit DP rows'}")


if __name__ == "__main__":
    main()
