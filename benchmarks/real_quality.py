"""Selector quality on REAL preference data: centralized (non-private and DP), local-only,
FedBis and FedBiscuit, each without and with DP, on an IID split and a heterogeneous one.

The data is `../shared/data/hh_harmless_dev.jsonl.gz` (1,096 HH-RLHF harmless-base pairs;
unusable rows are skipped and counted by the reader). A seeded fifth is held out; the rest
is split into silos either IID or by dialogue length (silos of short, then longer
conversations: the test pairs go to the silo whose length range they fall in). Every
method trains with the recipe `fedbiscuit demo --data` uses (`fedbiscuit/recipe.py`, token
window from the data's length statistics). Columns as in `benchmarks/quality.py`.

Run from the repository root:

    OMP_NUM_THREADS=1 python benchmarks/real_quality.py [--backbone minilm] [--splits iid,length]
        [--methods centralized,local-only,FedBis,FedBiscuit] [--dp both|on|off] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from fedbiscuit.demo.layout import demo_plan, with_data_recipe
from fedbiscuit.quality.comparison import (
    QualityOptions,
    demo_options,
    format_table,
    run_methods,
)
from fedbiscuit.quality.methods import METHODS
from selector.benchmark.generator import SiloData
from selector.benchmark.partition import partition_iid
from selector.data import PreferencePair
from selector.formats import read_pairs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh_harmless_dev.jsonl.gz"
TEST_SHARE = 0.2
DP_MODES = {"both": (False, True), "on": (True,), "off": (False,)}


def _turns(pair: PreferencePair) -> tuple[int, int]:
    return pair.prompt.count("Human:"), len(pair.prompt)


def _by_length(
    train: list[PreferencePair], test: list[PreferencePair], silos: int
) -> dict[str, SiloData]:
    """Silo i holds the i-th range of dialogue lengths (turns, then characters)."""
    ordered = sorted(train, key=_turns)
    bounds = [_turns(ordered[len(ordered) * i // silos]) for i in range(1, silos)]
    names = [f"silo-{i + 1}" for i in range(silos)]
    parts: dict[str, SiloData] = {name: SiloData(train=[], test=[]) for name in names}
    for pairs, field in ((train, "train"), (test, "test")):
        for pair in pairs:
            index = sum(_turns(pair) >= bound for bound in bounds)
            getattr(parts[names[index]], field).append(dataclasses.replace(pair, silo=names[index]))
    return parts


def _iid(
    train: list[PreferencePair], test: list[PreferencePair], silos: int, seed: int
) -> dict[str, SiloData]:
    train_parts = partition_iid(train, silos, seed)
    test_parts = partition_iid(test, silos, seed + 1)
    return {
        silo: SiloData(
            train=train_parts[silo],
            test=[dataclasses.replace(pair, silo=silo) for pair in test_parts[silo]],
        )
        for silo in train_parts
    }


def dataset(path: Path, split: str, silos: int, seed: int) -> dict[str, SiloData]:
    pairs = read_pairs(path, "hh-rlhf")
    order = np.random.default_rng(seed).permutation(len(pairs))
    held_out = int(len(pairs) * TEST_SHARE)
    test = [pairs[i] for i in order[:held_out]]
    train = [pairs[i] for i in order[held_out:]]
    return _iid(train, test, silos, seed) if split == "iid" else _by_length(train, test, silos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", choices=("tiny", "minilm"), default="minilm")
    parser.add_argument("--silos", type=int, default=4)
    parser.add_argument("--clusters", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="FedBis rounds (as the demo)")
    parser.add_argument("--splits", default="iid,length")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument(
        "--dp", choices=tuple(DP_MODES), default="both", help="runs with DP, without, or both"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA, help="an HH-RLHF export")
    args = parser.parse_args()
    for split in args.splits.split(","):
        started = time.monotonic()
        data = dataset(args.data, split, args.silos, args.seed)
        quality = QualityOptions(
            backbone=args.backbone,
            silos=args.silos,
            clusters=args.clusters,
            rounds=args.rounds,
            seed=args.seed,
            methods=tuple(args.methods.split(",")),
            dp_modes=DP_MODES[args.dp],
        )
        base = demo_options(quality, min(len(d.train) for d in data.values()))
        options, note = with_data_recipe(base, [p for d in data.values() for p in d.train])
        plans = {
            "fedbis": demo_plan(options),
            "fedbiscuit": demo_plan(
                dataclasses.replace(
                    options, algorithm="fedbiscuit", rounds=args.clusters + args.rounds
                )
            ),
        }
        sizes = ", ".join(f"{len(d.train)}/{len(d.test)}" for _, d in sorted(data.items()))
        print(
            f"\nsplit {split}: {args.silos} silos (train/test pairs: {sizes}); window "
            f"{options.max_tokens_per_answer} tokens; {options.rounds} rounds x "
            f"{options.local_steps} steps, expected batch {options.expected_batch_size}, "
            f"backbone {args.backbone}\n{note}",
            flush=True,
        )
        rows = run_methods(plans, data, quality, log=lambda line: print(line, flush=True))
        print("\n" + format_table(rows) + f"\n({split}: {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
