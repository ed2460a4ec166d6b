"""The silo agent as a program: config → identity → privacy state → client → task loop.

`run_silo` is what `fedbiscuit silo run` calls (and what tests call in threads); `silo_status`
is the read-only view `fedbiscuit silo status` prints. Neither writes anything secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from privacy.accounting import PrivacyAccountant
from privacy.ledger import Ledger
from silo.client import SiloClient
from silo.config import SiloConfig
from silo.credential_check import check_credentials
from silo.grouping_store import GroupingStore, own_cluster
from silo.identity import SiloIdentity
from silo.privacy_state import LEDGER_FILE, PrivacyState, check_spend_has_ledger
from silo.task_loop import TaskLoop


def run_silo(
    config: SiloConfig,
    stop: threading.Event | None = None,
    *,
    clock: Callable[[], float] = time.time,
    wait_ms: int = 10_000,
) -> int:
    """Take part in the federation until the aggregator says DONE or `stop` is set.

    Returns the exit status: 0 when the federation is done, 1 when stopped before that
    (restart it with the same state_dir to resume). Errors an operator can act on are
    raised as our own exception types, for the CLI to print. The silo's PKI files are read
    here, once, and `clock` is the one every part of the agent asks.
    """
    check_credentials(config.pki, config.federation_id, config.silo_id)
    identity = SiloIdentity.load(config, clock=clock)
    privacy = PrivacyState.restore(
        config.state_dir,
        config.federation_id,
        config.silo_id,
        identity.clock,
        identity.signer,
        delta=config.budget.delta,
    )
    with SiloClient(config, identity) as client:
        loop = TaskLoop(config, identity, client, privacy, stop=stop, wait_ms=wait_ms)
        outcome = loop.run()
    return 0 if outcome.finished else 1


@dataclass(frozen=True)
class SiloStatus:
    """What the silo has spent, from its ledger: the numbers its operator answers for."""

    releases: int
    epsilon_spent: float
    budget_epsilon: float
    delta: float
    last_round: int | None
    # Membership-hiding FedBiscuit: this silo's own cluster in the grouping it last confirmed
    # (from its state dir; only the silos know it) and that grouping's round; else None.
    cluster: int | None = None
    grouping_round: int | None = None


def silo_status(config: SiloConfig) -> SiloStatus:
    """Verify the ledger and recompute the spend, and read the confirmed grouping (hidden
    membership), without writing anything."""
    ledger_path = config.state_dir / LEDGER_FILE
    check_spend_has_ledger(config.state_dir, config.budget.delta)
    ledger = Ledger.open(ledger_path, federation_id=config.federation_id, silo_id=config.silo_id)
    accountant = PrivacyAccountant()
    epsilon = ledger.replay_into(accountant)
    entries = ledger.entries
    view = GroupingStore(config.state_dir).load_view()
    return SiloStatus(
        releases=len(entries),
        epsilon_spent=epsilon,
        budget_epsilon=config.budget.epsilon,
        delta=entries[-1].params.delta if entries else config.budget.delta,
        last_round=entries[-1].round if entries else None,
        cluster=own_cluster(config.state_dir, config.silo_id),
        grouping_round=view.roster.context.round if view is not None else None,
    )
