"""A read-only view of an aggregator's state dir, for `aggregator status` and the demo.

Opens SQLite with `mode=ro`, so it is safe to run beside a live aggregator. Shows counts, the
FedBiscuit clusters (the machine state's assignment; with hidden membership only their sizes,
the aggregator knows no member) and the epsilon of each silo's latest verified, signed ledger
entry, never updates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from aggregator.protection.cluster_sizes import latest_cluster_sizes
from aggregator.rounds.budget_schedule import records_afford_next_round
from aggregator.rounds.round_table import Phase, RoundState
from aggregator.store import SqliteStore


@dataclass(frozen=True)
class SiloStatus:
    id: str
    joined_at_unix_s: float
    last_seen_unix_s: float
    exhausted: bool  # declined for budget, or its ledger cannot afford another round
    rounds_participated: int  # rounds whose globals include this silo's update
    last_round: int | None  # the latest such round
    epsilon: float  # epsilon_after of the silo's latest verified ledger entry; 0 if none
    budget_epsilon: float | None  # the budget recorded in that entry; None if no entry yet
    ledger_entries: int  # verified, signed ledger entries the aggregator holds
    declines: int
    cluster: int | None = None  # FedBiscuit: the adapter its last grouping assigned; else None
    sampled: bool = False  # in the attempt in progress (training or grouping)


@dataclass(frozen=True)
class FederationStatus:
    federation_id: str
    algorithm: str
    phase: Phase
    round: int  # round in progress (0-based); equals rounds_total when DONE
    attempt: int
    round_sampled: int  # silos sampled for the attempt in progress
    round_uploads: int  # of them, how many uploads are accepted so far
    rounds_total: int
    rounds_completed: int
    reason: str  # why the federation FAILED, else ""
    silos: tuple[SiloStatus, ...]
    phase_started_unix_s: float = 0.0
    clusters: tuple[tuple[int, tuple[str, ...]], ...] = ()  # (adapter, its silos), FedBiscuit
    grouped_round: int | None = None  # the round whose grouping made `clusters`
    declines_by_reason: tuple[tuple[str, int], ...] = ()
    membership: str = "visible"  # FedBiscuit: "hidden" when only the silos know the clusters
    grouped_silos: int = 0  # silos the last grouping placed in some cluster
    cluster_sizes: tuple[int, ...] = ()  # silos per cluster (hidden: the last round's sum's)
    cluster_participants: tuple[int, ...] = ()  # hidden: of them, inside the last round's sum

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.DONE, Phase.FAILED)

    def to_dict(self) -> dict:
        return {**asdict(self), "finished": self.finished}


def read_status(state_dir: str | Path) -> FederationStatus:
    store = SqliteStore.open_read_only(state_dir)
    try:
        plan = store.plan
        saved = store.load_state()
        state = (
            RoundState.from_dict(saved) if saved else RoundState(Phase.WAITING_FOR_SILOS, 0, 0, 0)
        )
        clusters = state.clusters
        in_progress = state.phase in (Phase.TRAINING, Phase.GROUPING)
        sampled = set(state.sampled) if in_progress else set()
        silos = []
        for silo in store.silos():
            aggregated = sorted(
                {s.round for s in store.submissions(silo_id=silo.silo_id) if s.aggregated}
            )
            entries = store.ledger_entries(silo.silo_id)
            latest = entries[-1] if entries else None
            silos.append(
                SiloStatus(
                    id=silo.silo_id,
                    joined_at_unix_s=silo.joined_at_s,
                    last_seen_unix_s=silo.last_seen_s,
                    exhausted=silo.exhausted or not records_afford_next_round(entries, plan),
                    rounds_participated=len(aggregated),
                    last_round=aggregated[-1] if aggregated else None,
                    epsilon=latest.epsilon_after if latest else 0.0,
                    budget_epsilon=latest.budget_epsilon if latest else None,
                    ledger_entries=len(entries),
                    declines=len(store.declines(silo_id=silo.silo_id)),
                    cluster=clusters.get(silo.silo_id),
                    sampled=silo.silo_id in sampled,
                )
            )
        reasons = Counter(d.reason_code for d in store.declines())
        members: dict[int, list[str]] = {}
        for silo_id, adapter in state.assignment:
            members.setdefault(adapter, []).append(silo_id)
        hidden = latest_cluster_sizes(store)
        sizes = tuple(len(members.get(k, ())) for k in range(plan.adapters)) if members else ()
        return FederationStatus(
            federation_id=plan.federation_id,
            algorithm=plan.algorithm,
            phase=state.phase,
            round=state.round,
            attempt=state.attempt,
            round_sampled=len(state.sampled) if state.phase == Phase.TRAINING else 0,
            round_uploads=len(store.submissions(round_=state.round, attempt=state.attempt)),
            rounds_total=plan.rounds,
            rounds_completed=min(state.round, plan.rounds),
            reason=state.reason,
            silos=tuple(silos),
            phase_started_unix_s=state.started_at_s,
            clusters=tuple((k, tuple(sorted(v))) for k, v in sorted(members.items())),
            grouped_round=state.grouped_round if state.grouped_round >= 0 else None,
            declines_by_reason=tuple(sorted(reasons.items())),
            membership=plan.fedbiscuit.membership if plan.fedbiscuit else "visible",
            grouped_silos=len(state.grouped),
            cluster_sizes=hidden.sizes if hidden else sizes,
            cluster_participants=hidden.participants if hidden else (),
        )
    finally:
        store.close()
