"""Which silos the aggregator may still schedule: those whose verified ledger affords a round.

Why (DESIGN.md §7): the aggregator stops scheduling a silo whose next release would exceed
its budget, whether or not the silo's own guard works; either side alone suffices. The
silo's signed, verified ledger entries (stored by `aggregator.rounds.ledger_intake`) record every
release's parameters and the budget. Replaying them through the accountant the silo uses
(`privacy.accounting`, in the same order, so the floats agree exactly) and adding one more
round's DP-SGD release — the noise multiplier and sample rate of the silo's last DP-SGD
entry, `plan.training.local_steps` steps — at `plan.delta` gives the ε the silo's guard
computes before that release. Above the budget of the silo's latest entry, the silo is out.

A silo with no DP-SGD entry yet is schedulable: its sample rate (which depends on its data)
is unknown until its first release, so its own guard decides that one.
"""

from __future__ import annotations

from collections.abc import Sequence

from aggregator.store import FederationStore, LedgerEntryRecord
from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.ledger import LedgerEntry
from privacy.ledger_verify import parse_entry
from protos.plan import Plan


def next_round_epsilon(entries: Sequence[LedgerEntry], plan: Plan) -> float | None:
    """ε (at `plan.delta`) after everything in `entries` plus one more round of DP-SGD, or
    None if the silo has made no DP-SGD release yet. `entries` are one silo's, in seq order."""
    last_sgd = next((e for e in reversed(entries) if e.mechanism == "dp_sgd"), None)
    if last_sgd is None:
        return None
    accountant = PrivacyAccountant()
    for entry in entries:
        if entry.spends:
            accountant.record(entry.dp_event())
    params = last_sgd.params
    event = DpEvent(
        "dp_sgd", params.noise_multiplier, params.sample_rate, plan.training.local_steps
    )
    return accountant.epsilon_after(event, plan.delta)


def can_afford_next_round(entries: Sequence[LedgerEntry], plan: Plan) -> bool:
    """False iff the silo's next round would take it past the budget of its latest entry."""
    after = next_round_epsilon(entries, plan)
    return after is None or after <= entries[-1].budget_epsilon


def records_afford_next_round(records: Sequence[LedgerEntryRecord], plan: Plan) -> bool:
    """`can_afford_next_round` over one silo's stored records (seq order)."""
    return can_afford_next_round([parse_entry(r.entry_json) for r in records], plan)


class BudgetSchedule:
    """Answers "which joined silos can no longer afford a round?" for the round machine.

    Remembers each silo's answer until its ledger grows, so asking on every state change
    costs one read of the stored records, not a replay.
    """

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._known: dict[str, tuple[int, str, bool]] = {}  # silo -> (seq, hash, affordable)

    def unaffordable(self, store: FederationStore) -> frozenset[str]:
        by_silo: dict[str, list[LedgerEntryRecord]] = {}
        for record in store.ledger_entries():
            by_silo.setdefault(record.silo_id, []).append(record)
        out = set()
        for silo_id, records in by_silo.items():
            last = records[-1]
            known = self._known.get(silo_id)
            if known is None or known[:2] != (last.seq, last.entry_hash):
                known = (last.seq, last.entry_hash, records_afford_next_round(records, self._plan))
                self._known[silo_id] = known
            if not known[2]:
                out.add(silo_id)
        return frozenset(out)
