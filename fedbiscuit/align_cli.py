"""`fedbiscuit align`: DPO fine-tuning of a local causal LM on the selectors' labels.

Runs `selector.alignment.pipeline.run_alignment` (sample → label → DPO → judge) with a
progress bar, resumes a run interrupted in the same `--out`, and prints the win-rate table.
`--oracle` also judges by the synthetic benchmark's people (only for the benchmark's prompts).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from fedbiscuit.backbone_option import (
    add_backbone_option,
    checked_backbone_option,
    missing_backbone_hint,
)
from protos.errors import InvalidInput

if TYPE_CHECKING:
    from selector.alignment.pipeline import AlignmentReport
    from selector.benchmark.oracle import OracleJudge

ORACLES = ("iid", "three-groups")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "align",
        help="DPO fine-tune a local causal LM on pairs labelled by exported selectors",
        description="Sample completion pairs from a local causal LM for unlabeled prompts, "
        "label them by the majority vote of a selector export (FedBis: one selector; "
        "FedBiscuit: K), DPO fine-tune a LoRA adapter on the LM, and report the tuned LM's "
        "win rate over the base. Re-running with the same --out resumes an interrupted run.",
    )
    parser.add_argument("--selectors", type=Path, required=True, help="the selector export")
    parser.add_argument("--policy", type=Path, required=True, help="folder of a causal LM")
    parser.add_argument(
        "--prompts", type=Path, required=True, help='JSONL, one {"prompt": "..."} per line'
    )
    parser.add_argument(
        "--out", type=Path, default=Path("fedbiscuit-align"), help="run folder (fedbiscuit-align)"
    )
    parser.add_argument("--config", type=Path, help="YAML alignment config (defaults if absent)")
    parser.add_argument(
        "--oracle",
        choices=ORACLES,
        help="also judge by the synthetic benchmark's people: 'iid' (one population) or "
        "'three-groups' (the heterogeneous benchmark); needs the benchmark's prompts",
    )
    add_backbone_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from protos.operator_formats.config_files import load_model_file
    from selector.alignment.config import AlignConfig
    from selector.alignment.pipeline import run_alignment

    config = AlignConfig() if args.config is None else load_model_file(args.config, AlignConfig)
    if args.out.exists() and not args.out.is_dir():
        raise InvalidInput(f"--out {args.out}: not a folder")
    backbone = checked_backbone_option(args.backbone)
    console = Console()
    with Progress(
        TextColumn("DPO"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f} · reward accuracy {task.fields[accuracy]:.2f}"),
        console=console,
    ) as progress:
        bar = progress.add_task("dpo", total=config.dpo.steps, loss=float("nan"), accuracy=0.0)
        with missing_backbone_hint():
            report = run_alignment(
                args.selectors,
                args.policy,
                args.prompts,
                config,
                args.out,
                oracle=_oracle(args.oracle),
                on_stage=console.print,
                on_step=lambda step: progress.update(
                    bar, completed=step.step, loss=step.loss, accuracy=step.reward_accuracy
                ),
                backbone_path=backbone,
            )
        progress.update(bar, completed=config.dpo.steps)
    print_table(report, console, title=f"{args.policy} tuned vs base")
    console.print(f"report written to {args.out / 'report.json'}")
    return 0


def _oracle(name: str | None) -> OracleJudge | None:
    if name is None:
        return None
    from selector.benchmark.generator import DEFAULT_PREFERENCES, THREE_GROUPS, PreferenceGroup
    from selector.benchmark.oracle import OracleJudge

    groups = (
        THREE_GROUPS if name == "three-groups" else (PreferenceGroup("all", DEFAULT_PREFERENCES),)
    )
    return OracleJudge(groups)


def print_table(report: AlignmentReport, console: Console, title: str) -> None:
    """Win rates with their intervals, and what the selectors labelled."""
    table = Table(title=title)
    table.add_column("judge")
    table.add_column("win rate", justify="right")
    table.add_column("95% CI", justify="right")
    rows = [(f"selectors (vote of {report.selectors})", report.by_selectors)]
    if report.by_oracle is not None:
        rows.append(("oracle: population", report.by_oracle))
        rows += [(f"oracle: {name}", rate) for name, rate in report.by_oracle_group.items()]
    for name, rate in rows:
        table.add_row(name, f"{rate.win_rate:.3f}", f"[{rate.ci95[0]:.3f}, {rate.ci95[1]:.3f}]")
    console.print(table)
    console.print(
        f"{report.pairs_labelled} pairs labelled of {report.pairs_considered} "
        f"({report.identical_dropped} identical, {report.ties_dropped} ties dropped, "
        f"{report.split_votes} split votes) · {report.dpo_steps} DPO steps"
        + (f" (resumed at {report.resumed_from_step})" if report.resumed_from_step else "")
        + f" · {report.evaluated} comparisons · {report.device} · {report.wall_time_s:.0f} s"
    )
