"""The silo's privacy state on disk: the ledger and the accountant restored from it.

The task loop records every release here *before* the update leaves (DESIGN.md §7), so a
crash or failed upload can only over-count. Split out of the task loop because restoring
and cross-checking the two files is its own job, and `fedbiscuit silo status` reads the same
files without running a loop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.ledger import EntrySigner, Ledger, LedgerEntry
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import Plan

LEDGER_FILE = "ledger.jsonl"
ACCOUNTANT_FILE = "accountant.json"


class PrivacyState:
    """The silo's ledger and the accountant restored from it, kept consistent on disk.

    The ledger is authoritative; `accountant.json` exists to notice a lost or truncated
    ledger (the hash chain cannot see a cut-off tail), in which case the silo refuses to
    run rather than forget what it spent.
    """

    def __init__(self, ledger: Ledger, accountant: PrivacyAccountant, accountant_path: Path):
        self.ledger = ledger
        self.accountant = accountant
        self._accountant_path = accountant_path
        # How many entries the aggregator holds (from Join, then each Ack); in memory only:
        # after a restart the aggregator says again.
        self._delivered = 0

    @classmethod
    def restore(
        cls,
        state_dir: Path,
        federation_id: str,
        silo_id: str,
        clock: Callable[[], float],
        signer: EntrySigner | None = None,
        *,
        delta: float | None = None,
    ) -> PrivacyState:
        """Open the ledger (signing new entries with `signer`; without one, read-only) and
        restore the accountant from it.

        `delta` (the silo's budget δ) only lets a refusal say how much ε a lost ledger held.
        """
        state_dir.mkdir(parents=True, exist_ok=True)
        ledger_path, accountant_path = state_dir / LEDGER_FILE, state_dir / ACCOUNTANT_FILE
        check_spend_has_ledger(state_dir, delta)
        ledger = Ledger.open(
            ledger_path, federation_id=federation_id, silo_id=silo_id, clock=clock, signer=signer
        )
        accountant = PrivacyAccountant()
        ledger.replay_into(accountant)
        if accountant_path.exists():
            saved = _load_saved_accountant(accountant_path)
            if saved.events != accountant.events[: len(saved.events)]:
                raise FailedPrecondition(
                    f"{accountant_path} records {len(saved.events)} releases that the ledger "
                    f"{ledger_path} ({len(accountant.events)} entries) does not start with: the "
                    "ledger was truncated or replaced. Restore it from backup."
                )
        state = cls(ledger, accountant, accountant_path)
        state._save_accountant()
        return state

    def record(
        self,
        round_index: int,
        event: DpEvent,
        plan: Plan,
        *,
        secure_rng: bool,
        epsilon_after: float,
        budget_epsilon: float,
        clip_norm: float | None = None,
        sample_size: int | None = None,
        release_binding: str | None = None,
    ) -> LedgerEntry:
        """Append the signed ledger entry (fsync), then the accountant; return the entry.

        `clip_norm` is the release's clipping bound: DP-SGD's plan.dp.clip_norm by default, the
        loss clip C for a loss report, whose `sample_size` m (sensitivity C/m) is recorded."""
        entry = self.ledger.append(
            round_index=round_index,
            event=event,
            clip_norm=plan.dp.clip_norm if clip_norm is None else clip_norm,
            delta=plan.delta,
            secure_rng=secure_rng,
            epsilon_after=epsilon_after,
            budget_epsilon=budget_epsilon,
            sample_size=sample_size,
            release_binding=release_binding,
        )
        self.accountant.record(entry.dp_event())
        self._save_accountant()
        return entry

    def check_budget_pinned(self, budget_epsilon: float) -> None:
        """The first ledger entry fixes the silo's budget for the federation: refuse a larger
        one (the aggregator would refuse its entries, and the audit flag them)."""
        entries = self.ledger.entries
        if entries and budget_epsilon > entries[0].budget_epsilon:
            raise FailedPrecondition(
                f"budget.epsilon is {budget_epsilon:g} but this silo's first ledger entry "
                f"({self.ledger.path}, seq 0) fixed its budget for the federation at "
                f"{entries[0].budget_epsilon:g}; a budget can only be lowered"
            )

    def record_re_release(self, original_seq: int, budget_epsilon: float) -> LedgerEntry:
        """Append (fsync) the signed entry for sending release `original_seq`'s noised update
        again: no new epsilon, nothing composed (privacy.re_release)."""
        original = self.ledger.entries[original_seq]
        return self.ledger.append_re_release(
            original,
            epsilon_after=self.accountant.epsilon(original.params.delta),
            budget_epsilon=budget_epsilon,
        )

    def sync_with_aggregator(self, next_seq: int, last_hash: str) -> None:
        """Take the aggregator's position in this silo's ledger (from Join).

        Refuses to go on if the aggregator holds entries this ledger lacks or that differ
        from it: the ledger was lost, truncated or replaced, and the silo would under-count.
        """
        entries = self.ledger.entries
        if next_seq > len(entries) or (next_seq and entries[next_seq - 1].entry_hash != last_hash):
            raise FailedPrecondition(
                f"the aggregator holds {next_seq} ledger entries of this silo but the local "
                f"ledger {self.ledger.path} ({len(entries)} entries) does not contain them: it "
                "was lost, truncated or replaced. Restore it from backup before running again."
            )
        self._delivered = next_seq

    def delivered(self, next_seq: int) -> None:
        """The aggregator acknowledged holding entries up to `next_seq` (from an Ack)."""
        self._delivered = max(self._delivered, min(next_seq, len(self.ledger.entries)))

    def undelivered(self) -> list[bytes]:
        """The entries the aggregator does not hold yet, as the wire carries them."""
        return [entry.to_line() for entry in self.ledger.entries[self._delivered :]]

    def _save_accountant(self) -> None:
        tmp = self._accountant_path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(self.accountant.state_dict(), handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self._accountant_path)


def check_spend_has_ledger(state_dir: Path, delta: float | None = None) -> None:
    """Refuse a state dir whose accountant records spend that its ledger no longer holds.

    An accountant with no releases and no ledger is a fresh silo (a first run that stopped
    before releasing anything): nothing was spent, so nothing can be forgotten. Raises
    FailedPrecondition saying what was recorded and what the operator can do.
    """
    ledger_path, accountant_path = state_dir / LEDGER_FILE, state_dir / ACCOUNTANT_FILE
    if ledger_path.exists() or not accountant_path.exists():
        return
    saved = _load_saved_accountant(accountant_path)
    if not saved.events:
        return
    spent = "" if delta is None else f" (epsilon {saved.epsilon(delta):.4f} at delta {delta:g})"
    raise FailedPrecondition(
        f"{accountant_path} records {len(saved.events)} past releases{spent} but the ledger "
        f"{ledger_path} is missing, so all {len(saved.events)} signed entries are gone from "
        "this host: refusing to run and forget that spend. Copy ledger.jsonl back from a "
        "backup of this state_dir; without one, the aggregator's `fedbiscuit audit --ledger "
        "STATE_DIR` still shows the entries it received, and this silo can only rejoin with "
        "a new state_dir and a budget lowered by the epsilon already spent."
    )


def _load_saved_accountant(accountant_path: Path) -> PrivacyAccountant:
    saved = PrivacyAccountant()
    try:
        saved.load_state_dict(json.loads(accountant_path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, InvalidInput) as exc:
        raise InvalidInput(f"{accountant_path}: unreadable: {exc}") from exc
    return saved
