"""One federation as the aggregator process hosts it: its own state dir, plan, round machine,
servicer, revocation list, metrics collector and export dir, shared with no other.

`AggregatorServer` owns the transport and hosts one or several of these side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from aggregator.config import FederationConfig
from aggregator.ops.metrics import AggregatorMetrics
from aggregator.ops.metrics_collector import FederationCollector
from aggregator.ops.phase_observer import PhaseObservingStore
from aggregator.protection.he_rpcs import HeRpcs
from aggregator.protection.he_vault import HeVault
from aggregator.protection.masked_session import MaskingTrust
from aggregator.rounds.ledger_intake import LedgerIntake
from aggregator.rounds.round_machine import RoundMachine
from aggregator.rounds.round_table import Phase
from aggregator.rpc.auth import FederationTrust
from aggregator.rpc.servicer import FederationServicer
from aggregator.store import FederationStore
from privacy.pki import RevocationList
from protos import codec
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
        self._store = PhaseObservingStore.create(
            config.state_dir, self.plan, allow_plan_change=config.allow_plan_change
        )
        self._store.observe(metrics)
        try:
            he = None
            if self.plan.protection == "he":
                # The aggregator keeps no plaintext model: the public initial globals are
                # encrypted once the key custodian provides the public context.
                he = HeVault(self._store, lambda k: codec.flatten(_initial_state(self.plan, k))[1])
            else:
                for adapter in range(self.plan.adapters):
                    if self._store.globals_record(0, adapter) is None:
                        self._store.put_globals(0, _initial_state(self.plan, adapter), adapter)
            export = self._export if config.export_dir is not None else None
            if he is not None and export is not None:
                log.warning(
                    "federation=%s protection=he: the aggregator cannot export selectors (it "
                    "holds no key); a silo exports them with `fedbiscuit silo export`",
                    self.plan.federation_id,
                )
                export = None
            self.machine = RoundMachine(self._store, clock, export, self._masking_trust(), he)
            self.servicer = FederationServicer(
                self.machine,
                self.plan,
                max_long_poll_s,
                LedgerIntake(self._store, clock),
                None if he is None else self._he_rpcs(clock),
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

    def _masking_trust(self) -> MaskingTrust:
        """What silos' secure-aggregation keys are checked against: this federation's (first)
        CA and revocation list as it stands at start (revoked silos are also refused at every
        call)."""
        revoked = RevocationList.load(self.trust.revocation_list)
        return MaskingTrust(self.trust.ca_certs[0], frozenset(e.serial for e in revoked.entries))

    def _he_rpcs(self, clock: Callable[[], float]) -> HeRpcs:
        revocations = self.trust.revocation_list
        return HeRpcs(
            self.machine,
            self.plan,
            self.config.pki.ca_cert.read_bytes(),
            lambda: frozenset(e.serial for e in RevocationList.load(revocations).entries),
            clock,
        )

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
