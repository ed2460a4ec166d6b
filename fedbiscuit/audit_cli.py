"""`fedbiscuit audit`: check what each silo spent without trusting the silo or the aggregator.

`--ledger` is a silo's ledger file, an aggregator state dir, or a demo `--workdir` (then
every silo's ledger and the aggregator's copy, cross-checked). Every entry's certificate
(issued by `--ca`, not revoked), signature, hash chain and sequence are verified and its ε
recomputed with an independent accountant (`privacy.independent_accounting`); seeded noise
(`secure_rng: false`) is a violation unless the plan (`--plan`, else the aggregator state's)
allows it. Exit status:
0 when everything checks out, 1 on any violation (each printed with file:line or store row
and seq), 2 when the input cannot be read.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from aggregator.store import DB_NAME, SqliteStore
from privacy.audit import ABS_TOLERANCE, REL_TOLERANCE, SiloAudit, audit_ledger, cross_check
from privacy.ledger_verify import TrustAnchors, VerifiedLedger, verify_ledger
from privacy.pki import RevocationList, federation_id_of_ca
from protos.errors import InvalidInput
from protos.operator_formats.config_files import load_model_file
from protos.plan import Plan

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SILO_LEDGER = Path("state") / "ledger.jsonl"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="verify privacy ledgers and recompute every silo's epsilon",
        description="Verify signatures, hash chains and sequences of privacy ledgers, recompute "
        "epsilon with an independent accountant (dp-accounting), and flag violations.",
    )
    parser.add_argument(
        "--ledger",
        required=True,
        action="append",
        type=Path,
        metavar="PATH",
        help="a silo's ledger.jsonl, an aggregator state dir, or a demo --workdir; repeat it "
        "to audit several (silo ledgers are cross-checked against an aggregator state given)",
    )
    parser.add_argument("--ca", required=True, type=Path, metavar="CA_CERT", help="federation CA")
    parser.add_argument("--revocations", type=Path, metavar="FILE", help="revoked.json to apply")
    parser.add_argument(
        "--plan",
        type=Path,
        metavar="PLAN_YAML",
        help="the federation's plan (default: the one in the aggregator state); seeded noise "
        "(secure_rng: false) is a violation unless it sets dp.allow_insecure_rng",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="plot epsilon over rounds")
    parser.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    from absl import logging as absl_logging  # dp-accounting logs every skipped RDP order

    absl_logging.set_verbosity(absl_logging.ERROR)
    anchors = _anchors(args.ca, args.revocations)
    plan = load_model_file(args.plan, Plan) if args.plan else None
    audits = _audit_paths(args.ledger, anchors, plan)
    if not audits:
        shown = ", ".join(str(path) for path in args.ledger)
        raise InvalidInput(f"{shown}: no ledger entries found to audit")
    _print_table(audits)
    violations = [v for a in audits for v in a.violations]
    for audit in audits:
        for note in audit.notes:
            print(f"note: {audit.silo_id} ({audit.source}): {note}")
    for violation in violations:
        print(f"VIOLATION: {violation}")
    disagreement = max(a.max_disagreement for a in audits)
    print(
        f"largest |recorded - independent RDP| epsilon: {disagreement:.3g} "
        f"(tolerance {REL_TOLERANCE:.0%} + {ABS_TOLERANCE:g})"
    )
    if args.json:
        args.json.write_text(json.dumps(_report(audits), indent=2) + "\n", encoding="utf-8")
    if args.plot:
        _plot(audits, args.plot)
    print("audit: FAILED" if violations else "audit: ok")
    return 1 if violations else 0


def _anchors(ca_path: Path, revocations: Path | None) -> TrustAnchors:
    try:
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{ca_path}: not a readable CA certificate ({exc})") from None
    revoked = RevocationList.load(revocations) if revocations else None
    return TrustAnchors(ca, federation_id_of_ca(ca), revoked)


def _audit_paths(paths: list[Path], anchors: TrustAnchors, plan: Plan | None) -> list[SiloAudit]:
    """Audit every ledger the paths name; each silo ledger is cross-checked against the
    aggregator's copy when an aggregator state (or a demo workdir) is among them. Entries
    are checked against `plan` (None: the first aggregator state's plan, if any)."""
    silo_files: list[Path] = []
    states: list[Path] = []
    for path in dict.fromkeys(paths):  # a path given twice is audited once
        if path.is_file():
            silo_files.append(path)
        elif (path / DB_NAME).is_file():
            states.append(path)
        else:
            state = path / "aggregator" / "state"
            found = sorted((path / "silos").glob(f"*/{SILO_LEDGER}"))
            if not found and not (state / DB_NAME).is_file():
                raise InvalidInput(
                    f"{path}: neither a ledger file, an aggregator state dir nor a demo workdir"
                )
            silo_files += found
            if (state / DB_NAME).is_file():
                states.append(state)
    held: dict[str, tuple[Path, VerifiedLedger]] = {}
    for state in states:
        for silo_id, ledger in _aggregator(state, anchors).items():
            if silo_id in held:
                raise InvalidInput(
                    f"{state}: silo {silo_id} is also in {held[silo_id][0]}: audit one "
                    "aggregator state of a federation at a time"
                )
            held[silo_id] = (state, ledger)
    against = _against(_plan_of(plan, states[0] if states else None))
    audits = []
    for ledger_path in silo_files:
        ledger = _silo_file(ledger_path, anchors)
        silo_id = _silo_of(ledger_path, ledger)
        audit = audit_ledger(silo_id, str(ledger_path), ledger, **against)
        if silo_id in held:
            state, theirs = held.pop(silo_id)
            found, notes = cross_check(ledger, theirs, str(state))
            audit.violations += found
            audit.notes += notes
        audits.append(audit)
    for silo_id, (state, ledger) in held.items():  # silos we were given no ledger of
        audit = audit_ledger(silo_id, str(state), ledger, **against)
        if silo_files:
            audit.notes.append("no silo ledger given to cross-check against")
        audits.append(audit)
    return audits


def _plan_of(plan: Plan | None, state_dir: Path | None) -> Plan | None:
    """The given plan, else the one the aggregator state holds (if any)."""
    if plan is None and state_dir is not None:
        store = SqliteStore.open_read_only(state_dir)
        try:
            plan = store.plan
        finally:
            store.close()
    return plan


def _against(plan: Plan | None) -> dict:
    """What audit_ledger checks entries against: the plan's RNG opt-in and loss report."""
    return {
        "allow_insecure_rng": plan is not None and plan.dp.allow_insecure_rng,
        "loss_report": plan.fedbiscuit.loss_report if plan and plan.fedbiscuit else None,
    }


def _silo_of(path: Path, ledger: VerifiedLedger) -> str:
    """The silo a ledger file belongs to: its entries say; an empty one, its place."""
    if ledger.entries:
        return ledger.entries[0].silo_id
    if path.parts[-len(SILO_LEDGER.parts) :] == SILO_LEDGER.parts:
        return path.parent.parent.name  # a demo workdir's silos/<id>/state/ledger.jsonl
    return path.stem


def _silo_file(path: Path, anchors: TrustAnchors) -> VerifiedLedger:
    raw = path.read_bytes()
    lines = [(f"{path}:{n}", line) for n, line in enumerate(raw.splitlines(), start=1) if line]
    return verify_ledger(lines, anchors)


def _aggregator(state_dir: Path, anchors: TrustAnchors) -> dict[str, VerifiedLedger]:
    store = SqliteStore.open_read_only(state_dir)
    try:
        by_silo: dict[str, list[tuple[str, bytes]]] = {}
        for record in store.ledger_entries():
            where = f"{state_dir / DB_NAME}: silo {record.silo_id} row"
            by_silo.setdefault(record.silo_id, []).append((where, record.entry_json))
    finally:
        store.close()
    return {silo_id: verify_ledger(lines, anchors) for silo_id, lines in by_silo.items()}


def _print_table(audits: list[SiloAudit]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "silo", "releases", "last round", "ε recorded", "ε RDP (dp-acc.)", "ε PLD (dp-acc.)",
        "budget", "δ", "status", title="privacy ledger audit",
    )  # fmt: skip
    for a in audits:
        table.add_row(
            a.silo_id,
            str(a.releases),
            "-" if a.last_round is None else str(a.last_round),
            f"{a.epsilon_recorded:.4f}",
            f"{a.epsilon_rdp:.4f}",
            f"{a.epsilon_pld:.4f}",
            "-" if a.budget_epsilon is None else f"{a.budget_epsilon:g}",
            "-" if a.delta is None else f"{a.delta:g}",
            a.status,
        )
    Console(width=120).print(table)


def _report(audits: list[SiloAudit]) -> dict:
    return {
        "tolerance": {"relative": REL_TOLERANCE, "absolute": ABS_TOLERANCE},
        "independent_accountant": "dp-accounting (RDP check, PLD tight)",
        "ok": not any(a.violations for a in audits),
        "silos": [
            {
                "silo_id": a.silo_id,
                "source": a.source,
                "status": a.status,
                "releases": a.releases,
                "last_round": a.last_round,
                "epsilon_recorded": a.epsilon_recorded,
                "epsilon_rdp": a.epsilon_rdp,
                "epsilon_pld": a.epsilon_pld,
                "budget_epsilon": a.budget_epsilon,
                "delta": a.delta,
                "secure_rng": a.secure_rng,
                "max_disagreement": a.max_disagreement,
                "points": [asdict(p) for p in a.points],
                "violations": [str(v) for v in a.violations],
                "notes": a.notes,
            }
            for a in audits
        ],
    }


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DODGE = 0.25
"""Width (in rounds) over which the silos' points are spread around each round."""


def _plot(audits: list[SiloAudit], out: Path) -> None:
    import matplotlib.pyplot as plt

    fig = spend_figure(audits)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def spend_figure(audits: list[SiloAudit]) -> Figure:
    """ε over rounds per silo (recorded and PLD) against the budgets, as a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4))
    for index, a in enumerate(audits):
        # Silos with the same spend would hide behind one line: each is shifted a little
        # around its round and gets its own marker.
        offset = _dodge(index, len(audits))
        rounds = [p.round + offset for p in a.points]
        marker = MARKERS[index % len(MARKERS)]
        recorded = [p.recorded for p in a.points]
        line = ax.plot(rounds, recorded, marker=marker, label=a.silo_id)[0]
        ax.plot(rounds, [p.pld for p in a.points], ls=":", color=line.get_color())
        if a.budget_epsilon is not None:
            ax.axhline(a.budget_epsilon, color="grey", lw=0.8, ls="--")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole
    ax.set_xlabel("round")
    ax.set_ylabel("ε spent (solid: recorded RDP; dotted: PLD)")
    ax.set_title("privacy spend per silo (dashed: budget)")
    ax.legend()
    fig.tight_layout()
    return fig


def _dodge(index: int, count: int) -> float:
    """Silo `index`'s shift from its rounds, spreading `count` silos over DODGE."""
    return 0.0 if count < 2 else DODGE * (index / (count - 1) - 0.5)
