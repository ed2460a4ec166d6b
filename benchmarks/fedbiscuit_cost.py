"""What a FedBiscuit round costs against a FedBis round, on the same silos and backbone.

Runs `fedbiscuit demo` twice as a user does (separate processes, mutual TLS, DP-SGD, SecAgg+
masking by default): FedBiscuit with the demo's schedule (K = 3 clusters, 9 silos, a warm-up
round per adapter, then a grouping every 2 rounds), and FedBis on as many silos of the same
size for as many rounds. A round's time is read from the aggregator's state: from the first
task of the round (a grouping's EVALUATE tasks included) to the first task of the next one,
the last round ending at its last upload. Prints the mean round time of each, their ratio
(issue 17's target: ≤ 1.3), the groupings' share, and the demos' wall times. Under masking,
FedBiscuit hides membership by default (issue 16); a third run with `--membership visible`
gives the hidden/visible round ratio (issue 16's target: ≤ 1.5).

Both runs share the machine with whatever else runs: compare the ratio, and note the load.
`python benchmarks/fedbiscuit_cost.py [--rounds N] [--backbone minilm]`
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_wall_time import run_variant  # noqa: E402

CLUSTERS = 3
SILOS = 9  # the demo's default for FedBiscuit under masking: 3 per cluster
ROUNDS = CLUSTERS + 9  # the demo's default: warm-up, then five groupings


def round_times(state_dir: Path) -> tuple[list[float], list[float]]:
    """Each round's seconds, and each round's grouping seconds (0 where none), from the
    aggregator's SQLite state (read-only)."""
    db = sqlite3.connect(f"file:{state_dir / 'aggregator.sqlite3'}?mode=ro", uri=True)
    try:
        starts = dict(db.execute("SELECT round, MIN(issued_at_s) FROM tasks GROUP BY round"))
        training = dict(
            db.execute(
                "SELECT round, MIN(issued_at_s) FROM tasks WHERE kind = 'train' GROUP BY round"
            )
        )
        last = db.execute("SELECT MAX(received_at_s) FROM submissions").fetchone()[0]
    finally:
        db.close()
    rounds = sorted(starts)
    ends = [starts.get(r + 1, last) for r in rounds]
    return (
        [end - starts[r] for r, end in zip(rounds, ends, strict=True)],
        [training[r] - starts[r] for r in rounds],
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _ratio(rounds: dict[str, list[float]], over: str, under: str) -> str:
    return (
        f"{_mean(rounds[over]) / _mean(rounds[under]):.2f}, "
        f"{_mean(rounds[over][1:]) / _mean(rounds[under][1:]):.2f} without round 1 (the silos' "
        "start-up)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--backbone", choices=("tiny", "minilm"), default="tiny")
    parser.add_argument("--protection", default="masking")
    args = parser.parse_args()
    common = ["--silos", str(SILOS), "--rounds", str(args.rounds)]
    common += ["--protection", args.protection]
    if args.backbone == "tiny":
        common.append("--tiny")
    fedbiscuit = [*common, "--algorithm", "fedbiscuit", "--clusters", str(CLUSTERS)]
    variants = {"fedbis": common, "fedbiscuit": fedbiscuit}
    if args.protection == "masking":
        # Masked FedBiscuit hides membership by default (issue 16): also time the visible mode.
        variants["fb-visible"] = [*fedbiscuit, "--membership", "visible"]
    load = os.getloadavg()[0]
    results = {}
    for name, flags in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp) / "work"
            seconds, _, report = run_variant([*flags, "--workdir", str(workdir)], Path(tmp))
            rounds, groupings = round_times(workdir / "aggregator" / "state")
        results[name] = (seconds, report, rounds, groupings)
    load = max(load, os.getloadavg()[0])
    print(f"{args.backbone} backbone, {SILOS} silos, {args.rounds} rounds, {args.protection}")
    print(f"{'algorithm':11} {'demo s':>7} {'round s':>8} {'after round 1':>14} ", end="")
    print(f"{'groupings s':>12} {'agreement':>10}")
    for name, (seconds, report, rounds, groupings) in results.items():
        print(
            f"{name:11} {seconds:7.1f} {_mean(rounds):8.2f} {_mean(rounds[1:]):14.2f} "
            f"{sum(groupings):12.1f} {report['agreement']['overall']:10.3f}"
        )
    rounds_of = {name: rounds for name, (_, _, rounds, _) in results.items()}
    print(
        f"FedBiscuit/FedBis round-time ratio: {_ratio(rounds_of, 'fedbiscuit', 'fedbis')}; "
        "target <= 1.3"
    )
    if "fb-visible" in rounds_of:
        print(
            "FedBiscuit hidden/visible membership round-time ratio: "
            f"{_ratio(rounds_of, 'fedbiscuit', 'fb-visible')}; target <= 1.5 (issue 16)"
        )
    print(f"load average (1 min, max of start and end): {load:.1f}")


if __name__ == "__main__":
    main()
