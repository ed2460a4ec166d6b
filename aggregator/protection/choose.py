"""The one place that reads the plan's protection mode (and, under masking, FedBiscuit's
membership): it picks both sides of the strategy, and with them how groupings form clusters.

`protection_for` builds the round side (before the round machine, which it goes into) and
sets up the round-0 globals the mode keeps; `edge_for` builds the wire side over that machine
(for the servicer). Nothing else in the aggregator asks which mode a plan uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from aggregator.federation_trust import FederationTrust
from aggregator.protection.base import Protection, ProtectionEdge
from aggregator.protection.he import HeProtection
from aggregator.protection.he_rpcs import HeEdge
from aggregator.protection.he_vault import HeVault
from aggregator.protection.hidden import HiddenEdge, HiddenProtection
from aggregator.protection.masked import MaskedEdge, MaskedProtection
from aggregator.protection.plain import PlainEdge, PlainProtection
from aggregator.rounds.round_machine import RoundMachine
from aggregator.store import FederationStore
from protos import codec

InitialState = Callable[[int], dict[str, np.ndarray]]
"""Adapter k -> its public round-0 tensors (built from the plan's seed)."""


def protection_for(
    store: FederationStore, trust: FederationTrust, initial: InitialState
) -> Protection:
    """The round side of `store.plan`'s mode. Plaintext modes store the round-0 globals once;
    under HE the aggregator keeps no plaintext model: the public initial globals are encrypted
    once the key custodian provides the public context."""
    mode = store.plan.protection
    if mode == "he":
        vault = HeVault(store, lambda k: codec.flatten(initial(k))[1])
        return HeProtection(store, vault)
    for adapter in range(store.plan.adapters):
        if store.globals_record(0, adapter) is None:
            store.put_globals(0, initial(adapter), adapter)
    if mode == "masking":
        fb = store.plan.fedbiscuit
        if fb is not None and fb.membership == "hidden":
            return HiddenProtection(store, trust)
        return MaskedProtection(store, trust)
    return PlainProtection(store)


def edge_for(
    protection: Protection,
    machine: RoundMachine,
    trust: FederationTrust,
    clock: Callable[[], float] = time.time,
) -> ProtectionEdge:
    """The wire side matching `protection` (built by `protection_for`)."""
    plan = machine.plan
    if isinstance(protection, HeProtection):
        return HeEdge(machine, plan, protection, trust, clock)
    if isinstance(protection, HiddenProtection):
        return HiddenEdge(machine, plan, protection)
    if isinstance(protection, MaskedProtection):
        return MaskedEdge(machine, plan, protection)
    return PlainEdge(machine, plan)
