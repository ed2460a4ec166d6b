"""`fedbiscuit aggregator`: run the aggregator service, or look at its state.

`run` serves until every hosted federation is DONE (exit 0) or one FAILED (exit 1, once all
finished); SIGTERM (exit 143) or Ctrl-C (exit 130) stop it gracefully (health NOT_SERVING,
calls in flight get shutdown_grace_s, then the stores are closed), and it resumes every
federation from its state dir when started again. `check-config` validates without
starting; `status` reads state dirs (one, or those of every federation in a config).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from aggregator.config import load_config
from aggregator.ops.status import FederationStatus, read_status
from aggregator.rounds.round_table import Phase


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `fedbiscuit aggregator` and its actions on the top-level parser."""
    parser = subparsers.add_parser(
        "aggregator",
        help="run the aggregator or show its state",
        description="Serve a federation to its silos over mutual TLS, or show its progress.",
    )
    actions = parser.add_subparsers(dest="aggregator_action", metavar="ACTION", required=True)

    run = actions.add_parser("run", help="serve until the federation is DONE or FAILED")
    run.add_argument("--config", required=True, type=Path, metavar="FILE", help="aggregator YAML")
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="override the config's log_format (json: one object per line)",
    )
    run.set_defaults(func=_run)

    check = actions.add_parser(
        "check-config",
        help="validate the config, its plan and PKI files; print a summary",
        description="Validate CONFIG (with FEDBISCUIT_AGGREGATOR__* variables applied), the plan "
        "and the PKI files it names, without starting anything. Exit 0 when it would start, 2 "
        "with the reason otherwise.",
    )
    check.add_argument("config", type=Path, metavar="CONFIG", help="aggregator YAML")
    check.set_defaults(func=_check_config)

    probe = actions.add_parser(
        "probe",
        help="ask a plaintext health port (health_address) whether the aggregator is SERVING",
        description="Exit 0 when the grpc.health.v1 service at ADDRESS answers SERVING, 1 "
        "otherwise: a container HEALTHCHECK or exec probe.",
    )
    probe.add_argument("address", metavar="ADDRESS", help="host:port of health_address")
    probe.add_argument("--timeout-s", type=float, default=5.0)
    probe.set_defaults(func=_probe)

    status = actions.add_parser(
        "status",
        help="show rounds, silos and budgets (read-only)",
        description="Show each federation's progress from its state dir: those given with "
        "--state-dir, or every federation of --config. JSON: one object for one federation, "
        "a list of them for several.",
    )
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--state-dir", action="append", type=Path, metavar="DIR")
    where.add_argument("--config", type=Path, metavar="FILE", help="aggregator YAML")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(func=_status)


def _run(args: argparse.Namespace) -> int:
    from fedbiscuit.startup import heavy_imports

    with heavy_imports():
        from aggregator.rpc.server import serve_forever  # imports torch: only when serving

    config = load_config(args.config)
    if args.log_format is not None:
        config = config.model_copy(update={"log_format": args.log_format})
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        phase = serve_forever(config, stop)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if phase == Phase.DONE:
        return 0
    if phase == Phase.FAILED:
        for federation in config.hosted():
            status = read_status(federation.state_dir)
            if status.phase == Phase.FAILED:
                print(f"fedbiscuit aggregator: federation {status.federation_id} failed: "
                      f"{status.reason}", file=sys.stderr)  # fmt: skip
        return 1
    print(f"fedbiscuit aggregator: stopped in phase {phase}; run again to resume", file=sys.stderr)
    return 128 + signal.SIGTERM


def _check_config(args: argparse.Namespace) -> int:
    from aggregator.ops.config_check import check_config

    summary = check_config(load_config(args.config))
    print(f"{args.config}: OK")
    print("\n".join(summary.lines()))
    return 0


def _probe(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(args.address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=args.timeout_s
            )
        except grpc.RpcError as exc:
            print(f"{args.address}: {exc.code().name}", file=sys.stderr)
            return 1
    state = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.address}: {state}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def _status(args: argparse.Namespace) -> int:
    if args.config is not None:
        state_dirs = [federation.state_dir for federation in load_config(args.config).hosted()]
    else:
        state_dirs = args.state_dir
    statuses = [read_status(state_dir) for state_dir in state_dirs]
    if args.json:
        documents = [status.to_dict() for status in statuses]
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
    else:
        for status in statuses:
            _print_table(status)
    return 0


COLUMNS = ("rounds", "last round", "epsilon", "budget", "declines", "exhausted")


def _print_table(status: FederationStatus) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"federation [bold]{status.federation_id}[/] ({status.algorithm}): {status.phase}, "
        f"round {status.rounds_completed}/{status.rounds_total} done"
        + (f", attempt {status.attempt}" if status.attempt else "")
        + (f" — {status.reason}" if status.reason else "")
    )
    if not status.finished:
        console.print(
            f"  in round {status.round}: {status.round_uploads} of {status.round_sampled} "
            "sampled silos uploaded"
        )
    if status.clusters:
        console.print(f"  clusters (grouped before round {status.grouped_round}):")
        for adapter, members in status.clusters:
            console.print(f"    adapter {adapter}: {', '.join(members)}")
    elif status.membership == "hidden" and status.grouped_silos:
        sizes = ", ".join(map(str, status.cluster_sizes)) or "not summed yet"
        console.print(
            f"  clusters hidden (grouped before round {status.grouped_round}): "
            f"{status.grouped_silos} silos, sizes {sizes}"
        )
    if status.declines_by_reason:
        declines = ", ".join(f"{reason} {n}" for reason, n in status.declines_by_reason)
        console.print(f"  declines: {declines}")
    # Silo ids and numbers are never cut (an operator greps for them): at 80 columns the
    # headers fold instead, and FedBis has no cluster column.
    clustered = status.algorithm == "fedbiscuit"
    rows = [
        (
            silo.id + (" *" if silo.sampled else ""),
            *(("-" if silo.cluster is None else str(silo.cluster),) * clustered),
            str(silo.rounds_participated),
            "-" if silo.last_round is None else str(silo.last_round),
            f"{silo.epsilon:.3f}",
            "-" if silo.budget_epsilon is None else f"{silo.budget_epsilon:.3f}",
            str(silo.declines),
            "yes" if silo.exhausted else "no",
        )
        for silo in status.silos
    ]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    headers = ("silo", *(("cluster",) * clustered), *COLUMNS)
    for index, header in enumerate(headers):
        widest = max((len(row[index]) for row in rows), default=1)
        table.add_column(
            header,
            justify="left" if index == 0 else "right",
            no_wrap=index == 0,
            overflow="fold",
            min_width=widest,
        )
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if any(silo.sampled for silo in status.silos):
        console.print("  * sampled in the attempt in progress")
