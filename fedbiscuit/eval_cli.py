"""`fedbiscuit eval`: how often an exported selector set agrees with labelled pairs.

Loads a FedBis selector folder or a FedBiscuit selector-set export
(`selector.checkpoint.load_selector_set`) and scores it on a preference file: overall by
majority vote, per silo (the pairs' `silo` field; FedBiscuit: the silo's own cluster
selector where the export assigns it one) and the worst silo (`selector.set_evaluation`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedbiscuit.backbone_option import (
    add_backbone_option,
    checked_backbone_option,
    missing_backbone_hint,
)
from protos.errors import InvalidInput

FORMATS = ("jsonl", "hh-rlhf", "shp", "summarize-from-feedback")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="agreement of an exported selector (set) with labelled preference pairs",
        description="Score a trained selector export (a FedBis selector folder or a FedBiscuit "
        "selectors.json folder) on labelled pairs: overall agreement by majority vote, per "
        "silo (the pairs' silo field; FedBiscuit: the silo's own cluster selector when the "
        "export assigns it one, otherwise the vote) and the worst silo.",
    )
    parser.add_argument(
        "--selectors", type=Path, required=True, help="the exported selector folder"
    )
    parser.add_argument("--data", type=Path, required=True, help="labelled preference pairs")
    parser.add_argument(
        "--format", choices=FORMATS, default="jsonl", help="format of --data (jsonl)"
    )
    parser.add_argument(
        "--bad-rows",
        choices=("skip", "fail"),
        default="skip",
        help="skip (default): leave out unusable rows of --data and say which; fail: refuse "
        "the file at its first unusable row",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help='also write {"overall", "worst_silo", "per_silo", "pairs"} as JSON here',
    )
    add_backbone_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from selector.checkpoint import load_selector_set
    from selector.formats import read_pair_file
    from selector.model import build_encoder
    from selector.set_evaluation import set_agreement

    if not args.selectors.is_dir():
        raise InvalidInput(f"--selectors {args.selectors}: no such folder")
    if args.json is not None and not args.json.parent.exists():
        raise InvalidInput(f"--json {args.json}: folder {args.json.parent} does not exist")
    backbone = checked_backbone_option(args.backbone)
    read = read_pair_file(args.data, args.format, args.bad_rows)
    if read.skipped:
        print(read.summary())
    pairs = read.pairs
    with missing_backbone_hint():
        models, spec, clusters, _ = load_selector_set(args.selectors, backbone)
    encoder = build_encoder(spec)  # the pair encoder or the causal-LM choice encoder
    result = set_agreement(models, encoder, pairs, clusters)

    table = Table(
        title=f"{args.selectors} · {len(models)} selector(s) · {result.pairs} pairs of {args.data}"
    )
    table.add_column("silo")
    table.add_column("agreement", justify="right")
    for silo, value in result.per_silo.items():
        how = f"cluster {clusters[silo]}" if silo in clusters else "vote"
        table.add_row(f"{silo} ({how})" if len(models) > 1 else silo, f"{value:.3f}")
    table.add_section()
    table.add_row(
        "overall (majority vote)" if len(models) > 1 else "overall", f"{result.overall:.3f}"
    )
    table.add_row("worst silo", f"{result.worst_silo:.3f}", style="bold")
    Console().print(table)
    if args.json is not None:
        args.json.write_text(json.dumps(result.as_json(), indent=2) + "\n", encoding="utf-8")
    return 0
