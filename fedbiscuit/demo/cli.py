"""`fedbiscuit demo`: flags of the end-to-end localhost federation (see fedbiscuit/demo/run.py)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from fedbiscuit.backbone_option import checked_backbone_option
from fedbiscuit.demo.modes import DEMO_MODES
from fedbiscuit.demo.workdir import check_new_workdir
from fedbiscuit.startup import heavy_imports
from protos.errors import InvalidInput

MAX_DEMO_SILOS = 16  # each silo is a training process on this one machine
FEDBISCUIT_ROUNDS_AFTER_WARMUP = 9  # five groupings at the demo plan's regroup_every = 2


def _silo_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_DEMO_SILOS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_DEMO_SILOS}, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a whole federation on localhost (aggregator + silos as processes)",
        description="Make a throw-away federation CA and certificates, start the aggregator "
        "and N silo agents as separate processes over mutual TLS, train a FedBis selector with "
        "DP-SGD on each silo and SecAgg+ masking (or CKKS encryption) of every update, and "
        "report held-out agreement and epsilon spent per silo.",
    )
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny config-built backbone (under a minute)"
    )
    parser.add_argument(
        "--backbone",
        type=Path,
        metavar="PATH",
        help="a local model folder written by save_pretrained (safetensors weights and its "
        "tokenizer) instead of MiniLM; a causal LM gets the causal-LM selector",
    )
    parser.add_argument("--workdir", type=Path, help="keep everything here (must be new/empty)")
    parser.add_argument("--report", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--silos",
        type=_silo_count,
        help="number of silos (fedbis: 4; fedbiscuit: 3 per cluster under masking or he, else 4)",
    )
    parser.add_argument(
        "--protection",
        choices=tuple(DEMO_MODES),
        default="masking",
        help="masking: SecAgg+ secure aggregation, the aggregator sees only sums (default); "
        "he: CKKS-encrypted updates, the aggregator sees neither updates nor the model, and a "
        "silo exports the selectors; insecure_plaintext: it sees each silo's update "
        "(development only)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        help="federated rounds (fedbis: 3; fedbiscuit: clusters + 9, five groupings)",
    )
    parser.add_argument(
        "--algorithm",
        choices=("fedbis", "fedbiscuit"),
        default="fedbis",
        help="fedbis: one selector; fedbiscuit: one selector per cluster of silos, on "
        "benchmark data with three latent preference groups (fedbis)",
    )
    parser.add_argument(
        "--clusters", type=_positive_int, default=3, help="fedbiscuit: clusters K (3)"
    )
    parser.add_argument(
        "--membership",
        choices=("hidden", "visible"),
        help="fedbiscuit: hidden: only the silos know who is in which cluster (the default "
        "under masking); visible: the aggregator computes the clusters (he, plaintext)",
    )
    parser.add_argument(
        "--epsilon", type=_positive_float, default=8.0, help="privacy budget per silo (8)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="train on your own pairs instead of the benchmark: one silo per value of the "
        "pairs' silo field, or --silos IID parts when there is none",
    )
    parser.add_argument(
        "--test", type=Path, help="with --data: held-out pairs, split the same way, to score on"
    )
    parser.add_argument(
        "--format",
        choices=("jsonl", "hh-rlhf", "shp", "summarize-from-feedback"),
        default="jsonl",
        help="format of --data and --test (jsonl)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of data, model and noise (0)")
    parser.add_argument(
        "--align",
        action="store_true",
        help="then DPO-align the benchmark's tiny base policy with the trained selectors and "
        "report its win rate over the base (benchmark data only)",
    )
    parser.add_argument(
        "--timeout-s", type=_positive_float, default=900.0, help="give up after this long (900)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    if args.workdir is not None:
        check_new_workdir(args.workdir)  # refused before torch loads, as are the flags below
    if args.report is not None and not args.report.parent.exists():
        raise InvalidInput(f"--report {args.report}: folder {args.report.parent} does not exist")
    if args.seed < 0:
        raise InvalidInput(f"--seed must be non-negative, got {args.seed}")
    if args.align and args.data is not None:
        raise InvalidInput(
            "--align needs the benchmark's data (its people judge the result): drop --data"
        )
    if args.tiny and args.backbone is not None:
        raise InvalidInput("--tiny and --backbone both choose the backbone: give one of them")
    checked_backbone_option(args.backbone)
    if (args.data is None) != (args.test is None):
        raise InvalidInput("--data and --test go together: training pairs and held-out pairs")
    if args.membership is not None and args.algorithm != "fedbiscuit":
        raise InvalidInput("--membership is a fedbiscuit option: add --algorithm fedbiscuit")
    if args.membership == "hidden" and args.protection != "masking":
        raise InvalidInput(
            f"--membership hidden needs --protection masking, not {args.protection!r}"
        )
    silos = args.silos
    if silos is None:
        per_cluster = args.algorithm == "fedbiscuit" and DEMO_MODES[args.protection].min_per_sum > 1
        silos = min(MAX_DEMO_SILOS, 3 * args.clusters) if per_cluster else 4
    if args.data is None and args.algorithm == "fedbiscuit" and not 2 <= args.clusters <= silos:
        raise InvalidInput(
            f"--clusters must be between 2 and --silos ({silos}), got {args.clusters}"
        )
    rounds = args.rounds
    if rounds is None:
        # FedBiscuit: a warm-up round per adapter, then five groupings (one every 2 rounds);
        # with two, the clusters had not yet settled on the latent groups.
        rounds = (
            args.clusters + FEDBISCUIT_ROUNDS_AFTER_WARMUP if args.algorithm == "fedbiscuit" else 3
        )
    with heavy_imports():
        from fedbiscuit.demo.layout import DemoOptions, check_silo_count
        from fedbiscuit.demo.run import run_demo
    console = Console()
    options = DemoOptions(
        silos=silos,
        protection=args.protection,
        rounds=rounds,
        algorithm=args.algorithm,
        clusters=args.clusters,
        membership=args.membership,
        epsilon=args.epsilon,
        seed=args.seed,
        tiny=args.tiny,
        backbone_path=args.backbone,
        train_data=args.data,
        test_data=args.test,
        data_format=args.format,
        align=args.align,
    )
    if args.data is None:
        check_silo_count(options, "--silos")
    # SIGTERM (`timeout`, `kill`, a CI runner) unwinds like Ctrl-C, so run_demo stops the
    # aggregator and silos it started (their own sessions do not get the signal) before exiting.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    report = run_demo(options, args.workdir, console, timeout_s=args.timeout_s)
    report.print_table(console)
    if args.report is not None:
        report.write_json(args.report)
        console.print(f"report written to {args.report}")
    return 0


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)
