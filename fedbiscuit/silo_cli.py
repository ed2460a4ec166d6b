"""`fedbiscuit silo`: run a silo agent, show what it has spent, or export a homomorphic
federation's selectors (silo.agent and silo.export do the work)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `fedbiscuit silo run|status|export --config FILE` on the top-level parser."""
    parser = subparsers.add_parser(
        "silo",
        help="run a silo agent or show its privacy spend",
        description="Take part in a federation as one silo, under its own privacy budget.",
    )
    actions = parser.add_subparsers(dest="silo_action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", required=True, type=Path, metavar="FILE", help="the silo's YAML config"
    )
    run = actions.add_parser(
        "run", parents=[common], help="join the federation and train until it is done"
    )
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="json: one object per line with federation/round/silo/phase fields",
    )
    run.set_defaults(func=_run)
    status = actions.add_parser(
        "status", parents=[common], help="epsilon spent vs budget, from the verified ledger"
    )
    status.set_defaults(func=_status)
    check = actions.add_parser(
        "check-config",
        help="check config, certificate and key, data, privacy state and backbones; dial nothing",
        description="Everything `silo run` would trip over, checked without dialling: the "
        "config, the certificate and key against the CA, the data file (rows read and "
        "skipped), the ledger, the backbones the policy allows, and with --plan the operator's "
        "plan against the policy. Exit 2 with the reason.",
    )
    check.add_argument("config", type=Path, metavar="CONFIG", help="the silo's YAML config")
    check.add_argument(
        "--plan",
        type=Path,
        metavar="FILE",
        help="the operator's plan.yaml, checked against the policy",
    )
    check.set_defaults(func=_check_config)
    export = actions.add_parser(
        "export",
        parents=[common],
        help="decrypt a finished 'he' federation's selectors into DIR (checked first)",
    )
    export.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="a new or empty folder"
    )
    export.set_defaults(func=_export)


def _run(args: argparse.Namespace) -> int:
    from fedbiscuit.startup import heavy_imports
    from protos.operator_formats.log_format import configure_logging
    from silo.config import load_silo_config

    with heavy_imports():
        from silo.agent import run_silo

    config = load_silo_config(args.config)
    configure_logging("INFO", args.log_format)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return run_silo(config, stop)


def _status(args: argparse.Namespace) -> int:
    from silo.agent import silo_status
    from silo.config import load_silo_config

    config = load_silo_config(args.config)
    status = silo_status(config)
    print(f"silo {config.silo_id} in federation {config.federation_id}")
    print(
        f"  epsilon spent: {status.epsilon_spent:.4f} of {status.budget_epsilon:g} "
        f"(delta {status.delta:g})"
    )
    print(f"  releases: {status.releases}")
    last = "none" if status.last_round is None else str(status.last_round)
    print(f"  last round trained: {last}")
    if status.cluster is not None:
        # Membership hiding: only the silos know this; it is read from this silo's state dir.
        print(f"  own cluster: {status.cluster} (grouping of round {status.grouping_round})")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from protos.operator_formats.config_files import load_model_file
    from protos.plan import Plan
    from silo.config import load_silo_config
    from silo.config_check import check_silo_config

    config = load_silo_config(args.config)
    plan = None if args.plan is None else load_model_file(args.plan, Plan)
    for line in check_silo_config(config, plan).lines():
        print(line)
    print(f"{args.config}: ok")
    return 0


def _export(args: argparse.Namespace) -> int:
    from silo.config import load_silo_config
    from silo.export import export_selectors

    config = load_silo_config(args.config)
    result = export_selectors(config, args.out)
    what = "selector" if result.adapters == 1 else f"{result.adapters} selectors"
    print(
        f"{what} of federation {config.federation_id} ({result.algorithm}, {result.rounds} "
        f"rounds) checked, decrypted and written to {args.out}"
    )
    return 0
