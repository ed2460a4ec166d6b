"""What `fedbiscuit audit` concludes about one silo's verified ledger (DESIGN.md §7).

Given a ledger already checked by `privacy.ledger_verify`, recompute ε with the independent
accountant, flag under-reporting and budget overruns, and cross-check the silo's own copy
against the aggregator's. Pure: the CLI reads the files and prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from privacy.independent_accounting import IndependentEpsilon, recompute
from privacy.ledger import LedgerEntry
from privacy.ledger_verify import VerifiedLedger, Violation
from protos.errors import InvalidInput
from protos.plan import LossReportSpec

# The silo's recorded ε (Opacus RDP) and the independent RDP recomputation must agree within
# this (relative, plus an absolute floor for tiny ε): both are RDP bounds over slightly
# different order grids, which differ by well under 0.1% in practice.
REL_TOLERANCE = 1e-2
ABS_TOLERANCE = 1e-3


def _tolerance(value: float) -> float:
    return ABS_TOLERANCE + REL_TOLERANCE * abs(value)


@dataclass(frozen=True)
class Point:
    """ε after one release: as the silo recorded it and as recomputed independently."""

    seq: int
    round: int
    recorded: float
    rdp: float
    pld: float


@dataclass
class SiloAudit:
    silo_id: str
    source: str
    releases: int = 0
    last_round: int | None = None
    epsilon_recorded: float = 0.0
    epsilon_rdp: float = 0.0
    epsilon_pld: float = 0.0
    budget_epsilon: float | None = None
    delta: float | None = None
    secure_rng: bool | None = None
    points: list[Point] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """VIOLATION, "ok", or "ok (see note)" when the independent ε is above the
        budget by less than the accountants' agreement tolerance (see the silo's note)."""
        if self.violations:
            return "VIOLATION"
        if self.budget_epsilon is not None and self.epsilon_rdp > self.budget_epsilon:
            return "ok (see note)"
        return "ok"

    @property
    def max_disagreement(self) -> float:
        """Largest |recorded − independent RDP| over this silo's releases."""
        return max((abs(p.recorded - p.rdp) for p in self.points), default=0.0)


def audit_ledger(
    silo_id: str,
    source: str,
    ledger: VerifiedLedger,
    *,
    with_pld: bool = True,
    allow_insecure_rng: bool = False,
    loss_report: LossReportSpec | None = None,
) -> SiloAudit:
    """Recompute ε for every entry and flag under-reporting and budget overruns, every
    release with seeded (predictable) noise unless the plan allowed it
    (`allow_insecure_rng`: the plan's dp.allow_insecure_rng), and every loss report whose
    noise std σ·C/m is unknown (no m) or not the plan's (`loss_report`, when known)."""
    audit = SiloAudit(silo_id, source, violations=list(ledger.violations))
    entries = ledger.entries
    if not entries:
        return audit
    try:
        recomputed: list[IndependentEpsilon] = recompute(entries, with_pld=with_pld)
    except InvalidInput as exc:
        audit.violations.append(Violation(ledger.locations[0], None, f"cannot recompute: {exc}"))
        return audit
    for entry, where, again in zip(entries, ledger.locations, recomputed, strict=True):
        audit.points.append(
            Point(entry.seq, entry.round, entry.epsilon_after, again.rdp, again.pld)
        )
        if entry.epsilon_after < again.rdp - _tolerance(again.rdp):
            audit.violations.append(
                Violation(
                    where,
                    entry.seq,
                    f"under-reports epsilon: recorded {entry.epsilon_after:.6g}, its parameters "
                    f"give {again.rdp:.6g} (dp-accounting RDP; tolerance {REL_TOLERANCE:.0%})",
                )
            )
        elif entry.epsilon_after > again.rdp + _tolerance(again.rdp):
            audit.violations.append(
                Violation(
                    where,
                    entry.seq,
                    f"recorded epsilon {entry.epsilon_after:.6g} does not match its parameters, "
                    f"which give {again.rdp:.6g} (dp-accounting RDP)",
                )
            )
        budget = min(entry.budget_epsilon, entries[0].budget_epsilon)
        if entry.budget_epsilon > entries[0].budget_epsilon:
            audit.violations.append(
                Violation(
                    where,
                    entry.seq,
                    f"budget raised to {entry.budget_epsilon:g}: the first entry fixed the "
                    f"silo's budget for the federation at {entries[0].budget_epsilon:g}",
                )
            )
        if entry.epsilon_after > budget or again.rdp > budget + _tolerance(budget):
            spent = max(entry.epsilon_after, again.rdp)
            audit.violations.append(
                Violation(
                    where,
                    entry.seq,
                    f"budget overrun: epsilon {spent:.6g} exceeds the budget {budget:g}",
                )
            )
        problem = _loss_report_problem(entry, loss_report)
        if problem:
            audit.violations.append(Violation(where, entry.seq, problem))
        if not entry.secure_rng and not allow_insecure_rng:
            audit.violations.append(
                Violation(
                    where,
                    entry.seq,
                    "DP noise from a seeded, predictable generator (secure_rng: false) but the "
                    "plan does not allow it (dp.allow_insecure_rng)",
                )
            )
    last, again = entries[-1], recomputed[-1]
    audit.releases = len(entries)
    audit.last_round = last.round
    audit.epsilon_recorded = last.epsilon_after
    audit.epsilon_rdp = again.rdp
    audit.epsilon_pld = again.pld
    audit.budget_epsilon = last.budget_epsilon
    audit.delta = last.params.delta
    audit.secure_rng = all(e.secure_rng for e in entries)
    if not audit.secure_rng and allow_insecure_rng:
        audit.notes.append(
            "DP noise was seeded and predictable (secure_rng: false), as the plan allowed"
        )
    if not audit.violations and again.rdp > last.budget_epsilon:
        audit.notes.append(
            f"the independent RDP epsilon {again.rdp:.4f} is above the budget "
            f"{last.budget_epsilon:g} by {again.rdp - last.budget_epsilon:.4f}, within the "
            f"tolerance between the two accountants ({REL_TOLERANCE:.0%} + {ABS_TOLERANCE:g}); "
            f"the silo's own accountant recorded {last.epsilon_after:.4f}, within its budget"
        )
    return audit


def _loss_report_problem(entry: LedgerEntry, spec: LossReportSpec | None) -> str | None:
    """Why a loss report's recorded noise std σ·C/m cannot be trusted, or None."""
    if entry.mechanism != "gaussian":
        return None
    p = entry.params
    if p.sample_size is None:
        return "a loss report without its sample size m: its sensitivity C/m is unknown"
    if spec is None:
        return None
    recorded = p.noise_multiplier * p.clip_norm / p.sample_size
    planned = spec.noise_multiplier * spec.clip / spec.sample_size
    if p.sample_size != spec.sample_size or not math.isclose(recorded, planned, rel_tol=1e-9):
        return (
            f"loss report noise std sigma*C/m = {p.noise_multiplier:g}*{p.clip_norm:g}/"
            f"{p.sample_size} = {recorded:.6g}, not the plan's {spec.noise_multiplier:g}*"
            f"{spec.clip:g}/{spec.sample_size} = {planned:.6g}"
        )
    return None


def cross_check(
    silo: VerifiedLedger, aggregator: VerifiedLedger, aggregator_source: str
) -> tuple[list[Violation], list[str]]:
    """Each entry the aggregator recorded must be, byte for byte, the silo's entry of that
    seq. Entries only the silo has (not delivered yet) are notes, not violations."""
    mine = {e.seq: (e, where) for e, where in zip(silo.entries, silo.locations, strict=True)}
    violations, notes = [], []
    for entry, where in zip(aggregator.entries, aggregator.locations, strict=True):
        own = mine.get(entry.seq)
        if own is None:
            violations.append(
                Violation(
                    where, entry.seq, "the aggregator holds it but the silo's ledger lacks it"
                )
            )
        elif own[0].entry_hash != entry.entry_hash or own[0].signature != entry.signature:
            violations.append(
                Violation(
                    own[1], entry.seq, f"differs from the entry the aggregator recorded ({where})"
                )
            )
    held = {e.seq for e in aggregator.entries}
    missing = sorted(seq for seq in mine if seq not in held)
    if missing:
        notes.append(
            f"seq {', '.join(map(str, missing))} not delivered to the aggregator "
            f"({aggregator_source}) yet"
        )
    return violations, notes
