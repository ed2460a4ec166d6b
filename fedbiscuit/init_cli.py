"""`fedbiscuit init aggregator|silo`: write commented, working config files to start from.

The operator runs `init aggregator` (a plan and an aggregator config next to it); each
institution runs `init silo` on its own host (a silo config). Every path written is
absolute, and nothing is overwritten. The files need not exist yet (copy the certificates
and data afterwards); `check-config` says what is still missing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedbiscuit import config_templates
from fedbiscuit.recipe import LORA_RANK, derive_recipe, top_layer_targets
from privacy.pki.layout import FederationPaths, validate_id
from protos.errors import InvalidInput
from selector.backbone import minilm_layers

SMALLEST_MASKED_SUM = 3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `fedbiscuit init aggregator|silo` on the top-level parser."""
    parser = subparsers.add_parser(
        "init",
        help="write commented starting configs: a plan and aggregator config, or a silo config",
        description="Write commented, working config files to start a federation from.",
    )
    kinds = parser.add_subparsers(dest="init_kind", metavar="KIND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--federation", required=True, metavar="ID", help="federation id")
    common.add_argument(
        "--dir", required=True, type=Path, metavar="DIR", help="where to write (created)"
    )
    common.add_argument(
        "--pki",
        type=Path,
        metavar="DIR",
        help="folder laid out as `pki init` makes it, holding ca.pem and this party's "
        "certificate and key (aggregator.pem/.key, silos/ID.pem/.key); default: DIR/pki",
    )
    common.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="plan/accept unmasked updates (development only; masking needs 3+ silos)",
    )

    aggregator = kinds.add_parser(
        "aggregator", parents=[common], help="plan.yaml and aggregator.yaml"
    )
    aggregator.add_argument("--listen", default="0.0.0.0:50051", help="gRPC listen address")
    aggregator.add_argument("--silos", type=int, default=3, help="silos per round (default 3)")
    aggregator.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    aggregator.add_argument(
        "--tiny", action="store_true", help="the tiny backbone: a dry run in seconds"
    )
    aggregator.add_argument(
        "--pairs-per-silo",
        type=int,
        default=500,
        metavar="N",
        help="training pairs of the smallest silo, an estimate the training recipe starts "
        "from (default 500)",
    )
    aggregator.set_defaults(func=_init_aggregator)

    silo = kinds.add_parser("silo", parents=[common], help="silo.yaml")
    silo.add_argument("silo_id", metavar="SILO_ID")
    silo.add_argument(
        "--aggregator", required=True, metavar="HOST:PORT", help="the aggregator's gRPC address"
    )
    silo.add_argument(
        "--data", type=Path, metavar="FILE", help="preference pairs (default: DIR/train.jsonl)"
    )
    silo.add_argument(
        "--format",
        default="jsonl",
        choices=("jsonl", "hh-rlhf", "shp", "summarize-from-feedback"),
        help="format of --data",
    )
    silo.set_defaults(func=_init_silo)


def _init_aggregator(args: argparse.Namespace) -> int:
    validate_id(args.federation, "--federation")
    if args.silos < 1 or args.rounds < 1:
        raise InvalidInput("--silos and --rounds must be at least 1")
    if not args.insecure_plaintext and args.silos < SMALLEST_MASKED_SUM:
        raise InvalidInput(
            f"--silos {args.silos}: masking sums over at least {SMALLEST_MASKED_SUM} silos; "
            "add silos or pass --insecure-plaintext for a development run"
        )
    if args.pairs_per_silo < 2:
        raise InvalidInput(f"--pairs-per-silo must be at least 2, got {args.pairs_per_silo}")
    # Batch, steps and learning rate do not depend on the budget; each silo derives its own
    # noise multiplier from its own budget (ε = 8, δ = 1e-5 only fills the recipe's figure).
    recipe = derive_recipe(args.pairs_per_silo, 8.0, 1e-5, args.rounds)
    directory = _directory(args.dir)
    pki = FederationPaths((args.pki or directory / "pki").resolve())
    config_path = directory / "aggregator.yaml"
    plan = config_templates.PLAN.format(
        federation=args.federation,
        aggregator_config=config_path,
        rounds=args.rounds,
        silos=args.silos,
        protection="insecure_plaintext" if args.insecure_plaintext else "masking",
        secagg="" if args.insecure_plaintext else config_templates.SECAGG,
        backbone="tiny" if args.tiny else "minilm",
        selector_extra=config_templates.TINY_SELECTOR
        if args.tiny
        else config_templates.MINILM_SELECTOR.format(
            rank=LORA_RANK,
            targets=", ".join(top_layer_targets(minilm_layers())),
        ),
        pairs=args.pairs_per_silo,
        clip_norm=recipe.clip_norm,
        batch=recipe.expected_batch_size,
        sample_rate=round(recipe.expected_batch_size / args.pairs_per_silo, 6),
        local_steps=recipe.local_steps,
        learning_rate=recipe.learning_rate,
    )
    aggregator = config_templates.AGGREGATOR.format(
        federation=args.federation,
        path=config_path,
        listen_address=args.listen,
        ca_cert=pki.ca_cert,
        server_cert=pki.aggregator_cert,
        server_key=pki.aggregator_key,
        revocation_list=pki.revocation_list,
        directory=directory,
    )
    _write({directory / "plan.yaml": plan, config_path: aggregator})
    return 0


def _init_silo(args: argparse.Namespace) -> int:
    validate_id(args.federation, "--federation")
    validate_id(args.silo_id, "SILO_ID")
    directory = _directory(args.dir)
    pki = FederationPaths((args.pki or directory / "pki").resolve())
    config_path = directory / "silo.yaml"
    silo = config_templates.SILO.format(
        silo=args.silo_id,
        federation=args.federation,
        path=config_path,
        aggregator=args.aggregator,
        ca_cert=pki.ca_cert,
        cert=pki.silo_cert(args.silo_id),
        key=pki.silo_key(args.silo_id),
        data=(args.data or directory / "train.jsonl").resolve(),
        data_format=args.format,
        directory=directory,
        required_protection="null" if args.insecure_plaintext else "masking",
        allow_plaintext="true" if args.insecure_plaintext else "false",
    )
    _write({config_path: silo})
    return 0


def _directory(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def _write(files: dict[Path, str]) -> None:
    """Write every file or none: an existing one is never overwritten."""
    existing = [str(path) for path in files if path.exists()]
    if existing:
        raise InvalidInput(f"{', '.join(existing)} already exists: move it away or choose --dir")
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
