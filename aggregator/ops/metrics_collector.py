"""Scrape-time metrics read from the round machine's state and the durable store.

Rounds, phase, silos, declines and epsilon come from what the aggregator has committed, so a
restarted aggregator reports the same totals (counters here are durable, not per-process).
Epsilon per silo is the `epsilon_after` of the silo's latest ledger entry that the aggregator
verified (signature and hash chain) before storing it: what the silo itself signed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.protection.cluster_sizes import latest_cluster_sizes
from aggregator.rounds.budget_schedule import records_afford_next_round
from aggregator.rounds.round_table import Phase, RoundState
from aggregator.store import FederationStore


class FederationCollector(Collector):
    def __init__(
        self,
        store: FederationStore,
        state: Callable[[], RoundState],
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._state = state
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []  # families are only known at scrape time; skip the registration-time collect

    def collect(self) -> Iterator[Metric]:
        plan, state = self._store.plan, self._state()
        fed = [plan.federation_id]

        yield _counter(
            "fedbiscuit_rounds_completed", "Rounds whose globals are committed.", fed,
            min(state.round, plan.rounds),
        )  # fmt: skip
        yield _gauge("fedbiscuit_rounds_planned", "Rounds in the plan.", fed, plan.rounds)
        yield _gauge("fedbiscuit_round", "Round in progress (0-based).", fed, state.round)
        yield _gauge("fedbiscuit_attempt", "Attempt of the round in progress.", fed, state.attempt)
        phase = GaugeMetricFamily(
            "fedbiscuit_phase", "1 for the phase the federation is in.",
            labels=["federation", "phase"],
        )  # fmt: skip
        for candidate in Phase:
            phase.add_metric([*fed, candidate.value], float(candidate == state.phase))
        yield phase
        yield _gauge(
            "fedbiscuit_phase_elapsed_seconds", "Time since the current phase began.", fed,
            max(0.0, self._clock() - state.started_at_s),
        )  # fmt: skip

        entries = self._store.ledger_entries()
        by_silo: dict[str, list] = {}
        for entry in entries:
            by_silo.setdefault(entry.silo_id, []).append(entry)
        silos = self._store.silos()
        exhausted = {
            s.silo_id
            for s in silos
            if s.exhausted or not records_afford_next_round(by_silo.get(s.silo_id, []), plan)
        }
        counts = GaugeMetricFamily(
            "fedbiscuit_silos", "Silos by state: joined, active (may still be scheduled), "
            "exhausted (out of budget), sampled (in the attempt in progress), grouped (placed "
            "in a cluster by the last FedBiscuit grouping).",
            labels=["federation", "state"],
        )  # fmt: skip
        counts.add_metric([*fed, "joined"], len(silos))
        counts.add_metric([*fed, "active"], len(silos) - len(exhausted))
        counts.add_metric([*fed, "exhausted"], len(exhausted))
        in_progress = state.phase in (Phase.TRAINING, Phase.GROUPING)
        counts.add_metric([*fed, "sampled"], len(state.sampled) if in_progress else 0)
        counts.add_metric([*fed, "grouped"], len(state.grouped))
        yield counts
        yield self._cluster_sizes(fed, state)

        declines = CounterMetricFamily(
            "fedbiscuit_silo_declines", "Tasks silos refused, by their reason code.",
            labels=["federation", "reason"],
        )  # fmt: skip
        for reason, n in sorted(Counter(d.reason_code for d in self._store.declines()).items()):
            declines.add_metric([*fed, reason], n)
        yield declines

        epsilon = GaugeMetricFamily(
            "fedbiscuit_silo_epsilon", "Epsilon spent by each silo, from its latest verified, "
            "signed ledger entry.", labels=["federation", "silo"],
        )  # fmt: skip
        budget = GaugeMetricFamily(
            "fedbiscuit_silo_budget_epsilon", "Epsilon budget each silo declared in its ledger.",
            labels=["federation", "silo"],
        )  # fmt: skip
        ledger = CounterMetricFamily(
            "fedbiscuit_ledger_entries", "Verified ledger entries stored, per silo.",
            labels=["federation", "silo"],
        )  # fmt: skip
        for silo_id, silo_entries in sorted(by_silo.items()):
            epsilon.add_metric([*fed, silo_id], silo_entries[-1].epsilon_after)
            budget.add_metric([*fed, silo_id], silo_entries[-1].budget_epsilon)
            ledger.add_metric([*fed, silo_id], len(silo_entries))
        yield epsilon
        yield budget
        yield ledger

    def _cluster_sizes(self, fed: list[str], state: RoundState) -> GaugeMetricFamily:
        """Silos per FedBiscuit cluster: from the assignment when visible, from the last
        round's K-slot sum when hidden (sizes and participants, never members)."""
        family = GaugeMetricFamily(
            "fedbiscuit_cluster_silos", "Silos per FedBiscuit cluster: its size, and with "
            "hidden membership how many took part in the last round's secure sum.",
            labels=["federation", "cluster", "kind"],
        )  # fmt: skip
        hidden = latest_cluster_sizes(self._store)
        if hidden is not None:
            for k, (size, took_part) in enumerate(
                zip(hidden.sizes, hidden.participants, strict=True)
            ):
                family.add_metric([*fed, str(k), "size"], size)
                family.add_metric([*fed, str(k), "participants"], took_part)
        else:
            for k, size in sorted(Counter(state.clusters.values()).items()):
                family.add_metric([*fed, str(k), "size"], size)
        return family


def _gauge(name: str, doc: str, fed: list[str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["federation"])
    family.add_metric(fed, value)
    return family


def _counter(name: str, doc: str, fed: list[str], value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=["federation"])
    family.add_metric(fed, value)
    return family
