"""Drive whole SecAgg+ rounds in memory: an honest aggregator, with hooks to misbehave."""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from privacy.secagg import (
    AggregateResult,
    ConsistencyRequest,
    Roster,
    RoundContext,
    SecAggClient,
    SecAggParams,
    SecAggServer,
    ShareDelivery,
    UnmaskRequest,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)
PLAN_HASH = "ab" * 32


@dataclass(frozen=True)
class SiloIdentity:
    silo_id: str
    certificate_pem: bytes
    key: ec.EllipticCurvePrivateKey = field(repr=False)


@dataclass(frozen=True)
class Federation:
    federation_id: str
    ca: x509.Certificate
    silos: dict[str, SiloIdentity]

    def ids(self, n: int) -> list[str]:
        return sorted(self.silos)[:n]


def context(round_number: int = 1, seed: int = 0, plan_hash: str = PLAN_HASH) -> RoundContext:
    return RoundContext("fed-a", round_number, plan_hash, random.Random(seed).randbytes(32))


def seeded_bytes(*labels: object):
    return random.Random(repr(labels)).randbytes


class Round:
    """One round: a server and a client per silo, run phase by phase."""

    def __init__(
        self,
        federation: Federation,
        params: SecAggParams,
        silo_ids: Collection[str],
        length: int,
        ctx: RoundContext | None = None,
        seed: int = 0,
    ) -> None:
        self.ctx = ctx or context(seed=seed)
        self.params = params
        self.server = SecAggServer(params, self.ctx, length, federation.ca, NOW)
        self.clients = {
            s: SecAggClient(
                params,
                self.ctx,
                s,
                federation.silos[s].certificate_pem,
                federation.silos[s].key,
                federation.ca,
                NOW,
                random_bytes=seeded_bytes(seed, s),
            )
            for s in silo_ids
        }
        self.active = set(silo_ids)

    def _live(self, drop: Collection[str]) -> list[str]:
        self.active -= set(drop)
        return sorted(self.active)

    def advertise(self, drop: Collection[str] = ()) -> Roster:
        for s in self._live(drop):
            self.server.receive_advertisement(s, self.clients[s].advertise())
        return self.server.close_advertising()

    def share(self, roster: Roster, drop: Collection[str] = ()) -> dict[str, ShareDelivery]:
        for s in self._live(drop):
            self.server.receive_shares(s, self.clients[s].share_keys(roster))
        return self.server.close_sharing()

    def mask(
        self,
        deliveries: Mapping[str, ShareDelivery],
        updates: Mapping[str, np.ndarray],
        drop: Collection[str] = (),
    ) -> ConsistencyRequest:
        for s in self._live(drop):
            self.server.receive_masked_input(s, self.clients[s].mask(deliveries[s], updates[s]))
        return self.server.close_masking()

    def sign(self, request: ConsistencyRequest, drop: Collection[str] = ()) -> UnmaskRequest:
        for s in self._live(drop):
            self.server.receive_survivor_signature(s, self.clients[s].sign_survivors(request))
        return self.server.close_consistency()

    def unmask(self, request: UnmaskRequest, drop: Collection[str] = ()) -> AggregateResult:
        for s in self._live(drop):
            self.server.receive_unmask_response(s, self.clients[s].unmask(request))
        return self.server.finish()

    def run(
        self, updates: Mapping[str, np.ndarray], drops: Mapping[str, Collection[str]] | None = None
    ) -> AggregateResult:
        """A whole round; ``drops`` maps a phase name to the silos that vanish before it."""
        drops = drops or {}
        roster = self.advertise(drops.get("advertise", ()))
        deliveries = self.share(roster, drops.get("share", ()))
        request = self.mask(deliveries, updates, drops.get("mask", ()))
        unmask_request = self.sign(request, drops.get("sign", ()))
        return self.unmask(unmask_request, drops.get("unmask", ()))
