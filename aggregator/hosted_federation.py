"""One federation as the aggregator process hosts it: its own state dir, plan, trust (CA
bundle and revocation view), protection mode, round machine, servicer, metrics and export
dir, shared with no other.

`AggregatorServer` owns the transport and hosts one or several of these side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from aggregator.config import FederationConfig
from aggregator.federation_trust import FederationTrust
from aggregator.ops.metrics import AggregatorMetrics
from aggregator.ops.metrics_collector import FederationCollector
from aggregator.ops.phase_metrics import PhaseMetrics
from aggregator.protection.choose import edge_for, protection_for
from aggregator.rounds.ledger_intake import LedgerIntake
from aggregator.rounds.round_machine import RoundMachine
from aggregator.rounds.round_table import Phase
from aggregator.rpc.servicer import FederationServicer
from aggregator.store import FederationStore, SqliteStore
from protos.plan import Plan
from selector.checkpoint import save_federation_export
from selector.model import adapter_state, build_selector

log = logging.getLogger(__name__)


class HostedFederation:
    def __init__(
        self,
        config: FederationConfig,
        metrics: AggregatorMetrics,
        clock: Callable[[], float],
        max_long_poll_s: float,
    ) -> None:
        """Open the state (initialising round-0 globals once); `close()` releases it."""
        self.config = config
        self.plan: Plan = config.load_plan()
        self.trust = FederationTrust.from_files(config.pki.ca_cert, config.pki.revocation_list)
        self._store = SqliteStore.create(
            config.state_dir, self.plan, allow_plan_change=config.allow_plan_change
        )
        try:
            protection = protection_for(
                self._store, self.trust, lambda k: _initial_state(self.plan, k)
            )
            self.holds_plaintext = protection.holds_plaintext
            export = self._export if config.export_dir is not None else None
            if not protection.holds_plaintext and export is not None:
                log.warning(
                    "federation=%s protection=%s: the aggregator cannot export selectors (it "
                    "holds no key); a silo exports them with `fedbiscuit silo export`",
                    self.plan.federation_id,
                    self.plan.protection,
                )
                export = None
            self.machine = RoundMachine(
                self._store, clock, export, protection, PhaseMetrics(self._store, metrics)
            )
            self.servicer = FederationServicer(
                self.machine,
                self.plan,
                max_long_poll_s,
                LedgerIntake(self._store, clock),
                edge_for(protection, self.machine, self.trust, clock),
            )
            metrics.add_collector(
                FederationCollector(self._store, lambda: self.machine.state, clock)
            )
        except BaseException:
            self._store.close()
            raise

    @property
    def federation_id(self) -> str:
        return self.plan.federation_id

    @property
    def store(self) -> FederationStore:
        return self._store

    @property
    def phase(self) -> Phase:
        return self.machine.state.phase

    def close(self) -> None:
        self._store.close()

    def _export(
        self, finals: Sequence[Mapping[str, np.ndarray]], clusters: Mapping[str, int]
    ) -> None:
        save_federation_export(self.config.export_dir, self.plan, finals, clusters)
        log.info(
            "federation=%s selector exported to %s", self.plan.federation_id, self.config.export_dir
        )


def _initial_state(plan: Plan, adapter: int) -> dict[str, np.ndarray]:
    """Adapter k starts from seed + k (FedBis, k = 0, keeps its initial globals): public."""
    return adapter_state(build_selector(plan.selector, seed=plan.seed + adapter))
