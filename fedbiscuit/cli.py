"""Entry point of the `fedbiscuit` command: one parser, one module per subcommand.

Each subcommand module exposes ``add_parser(subparsers)`` and sets ``func`` on its parser;
``func(args) -> int`` returns the exit status. Errors a user can act on
(``FedbiscuitError``) are printed as one clear message without a traceback, exit status 2.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import sys
from collections.abc import Sequence

from protos.errors import FedbiscuitError

# Subcommand modules, imported lazily so `fedbiscuit pki` does not pay for torch.
_SUBCOMMANDS = {
    "pki": "fedbiscuit.pki_cli",
    "init": "fedbiscuit.init_cli",
    "aggregator": "fedbiscuit.aggregator_cli",
    "silo": "fedbiscuit.silo_cli",
    "demo": "fedbiscuit.demo.cli",
    "audit": "fedbiscuit.audit_cli",
    "eval": "fedbiscuit.eval_cli",
    "align": "fedbiscuit.align_cli",
}

# At exit, Python's final collections would walk every object that torch, transformers and co.
# created on import (~0.5M): ~1.5 CPU-s per process, paid by each party of a demo while the
# demo waits for it. Frozen, they are skipped; memory goes back to the OS as always. At exit
# only, so a process that imports `main` (a test run) keeps collecting as usual until then.
atexit.register(gc.freeze)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    from fedbiscuit import __version__

    parser = argparse.ArgumentParser(
        prog="fedbiscuit",
        description="Privacy-hardened cross-silo federated training of preference selectors.",
    )
    parser.add_argument("--version", action="version", version=f"fedbiscuit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in _SUBCOMMANDS.items():
        if only is not None and name != only:
            subparsers.add_parser(name, help=f"(run `fedbiscuit {name} --help`)")
            continue
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if a in _SUBCOMMANDS), None)
    parser = build_parser(only=chosen)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FedbiscuitError as exc:
        print(f"fedbiscuit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fedbiscuit {args.command}: interrupted", file=sys.stderr)
        return 130
