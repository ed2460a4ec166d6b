"""`fedbiscuit pki`: the operator's commands for the federation CA (privacy.pki does the work).

The CA key stays in the PKI folder; silo keys are created there too and must be handed to
each silo's operator over a secure channel. Nothing here ever prints key material.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from privacy.pki import (
    CA_VALID_DAYS,
    CERT_VALID_DAYS,
    FederationPaths,
    init_ca,
    issue_aggregator,
    issue_silo,
    revoke,
    show,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `fedbiscuit pki` and its actions on the top-level parser."""
    parser = subparsers.add_parser(
        "pki",
        help="create the federation CA, issue and revoke certificates",
        description="Manage a federation's CA, silo and aggregator certificates.",
    )
    actions = parser.add_subparsers(dest="pki_action", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        dest="pki_dir",
        metavar="PKI_DIR",
        type=Path,
        default=Path("pki"),
        help="the federation's PKI folder (default: ./pki)",
    )

    init = actions.add_parser("init", parents=[common], help="create the federation CA")
    init.add_argument("--federation", required=True, metavar="ID", help="federation id")
    init.add_argument("--valid-days", type=int, default=CA_VALID_DAYS, help="CA lifetime")
    init.set_defaults(func=_init)

    issue = actions.add_parser(
        "issue", parents=[common], help="issue a silo's client certificate and key"
    )
    issue.add_argument("silo_id", metavar="SILO_ID")
    issue.add_argument("--valid-days", type=int, default=CERT_VALID_DAYS)
    issue.add_argument(
        "--force", action="store_true", help="replace an existing certificate (revokes the old one)"
    )
    issue.set_defaults(func=_issue)

    aggregator = actions.add_parser(
        "issue-aggregator", parents=[common], help="issue the aggregator's server certificate"
    )
    aggregator.add_argument("--dns", action="append", default=[], help="DNS name (repeatable)")
    aggregator.add_argument("--ip", action="append", default=[], help="IP address (repeatable)")
    aggregator.add_argument("--valid-days", type=int, default=CERT_VALID_DAYS)
    aggregator.add_argument("--force", action="store_true", help="replace an existing certificate")
    aggregator.set_defaults(func=_issue_aggregator)

    revoke_parser = actions.add_parser(
        "revoke", parents=[common], help="revoke a silo's current certificate"
    )
    revoke_parser.add_argument("silo_id", metavar="SILO_ID")
    revoke_parser.set_defaults(func=_revoke)

    show_parser = actions.add_parser("show", parents=[common], help="list certificates")
    show_parser.set_defaults(func=_show)


def _init(args: argparse.Namespace) -> int:
    paths = init_ca(args.pki_dir, args.federation, valid_days=args.valid_days)
    print(f"created the CA of federation {args.federation!r} in {paths.root}")
    print(f"  {paths.ca_cert} goes to every silo and the aggregator; keep {paths.ca_key} private")
    return 0


def _issue(args: argparse.Namespace) -> int:
    cert, key = issue_silo(args.pki_dir, args.silo_id, args.valid_days, force=args.force)
    print(f"issued silo {args.silo_id!r}: certificate {cert}, private key {key} (mode 0600)")
    print("  hand the key to the silo's operator over a secure channel")
    return 0


def _issue_aggregator(args: argparse.Namespace) -> int:
    dns, ips = (args.dns, args.ip) if args.dns or args.ip else (["localhost"], ["127.0.0.1"])
    cert, key = issue_aggregator(args.pki_dir, dns, ips, args.valid_days, force=args.force)
    print(f"issued the aggregator certificate for {', '.join([*dns, *ips])}: {cert}, key {key}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    entry = revoke(args.pki_dir, args.silo_id)
    print(f"revoked silo {entry.silo_id!r} (serial {entry.serial})")
    print("  the aggregator refuses this certificate from its next call")
    return 0


def _show(args: argparse.Namespace) -> int:
    rows = [("SUBJECT", "ROLE", "SERIAL", "NOT_AFTER", "REVOKED")]
    rows += [
        (
            info.subject,
            info.role,
            str(info.serial),
            info.not_after.strftime("%Y-%m-%d %H:%M UTC"),
            "yes" if info.revoked else "no",
        )
        for info in show(args.pki_dir)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"PKI folder {FederationPaths(args.pki_dir).root}")
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0
