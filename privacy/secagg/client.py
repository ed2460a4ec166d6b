"""The silo's side of one SecAgg+ round: a small state machine over pure messages.

Phases, in order (any deviation aborts the round for this silo, for good):

    ADVERTISE -> SHARE_KEYS -> MASK -> SIGN_SURVIVORS -> UNMASK -> DONE

The client trusts nothing the aggregator says without checking: every message's context
(federation, round, plan hash, seed), every advertisement's certificate and signature, its
own keys in the roster, the roster size against the plan's minimum, that the shares it
receives were made for the same roster, that the survivors it is asked about are the ones
it signed and that enough other survivors signed the same view, and that it is never asked
for both the self-mask share and the mask-key share of one peer.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Collection
from datetime import datetime
from functools import wraps
from typing import Any, TypeVar

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from privacy.secagg import shamir
from privacy.secagg.errors import SecAggAborted
from privacy.secagg.graph import NeighbourGraph, build_graph, roster_digest
from privacy.secagg.keys import RoundKeys, sign, signature_valid, verify_silo_certificate
from privacy.secagg.masking import encode_and_mask
from privacy.secagg.messages import (
    ConsistencyRequest,
    EncryptedShares,
    KeyAdvertisement,
    MaskedInput,
    Roster,
    RoundContext,
    ShareDelivery,
    SurvivorSignature,
    UnmaskRequest,
    UnmaskResponse,
    advertisement_payload,
    consistency_payload,
)
from privacy.secagg.params import SecAggParams
from privacy.secagg.share_encryption import open_shares, seal_shares
from protos.errors import FedbiscuitError, InvalidInput


class ClientPhase(enum.Enum):
    ADVERTISE = "advertise"
    SHARE_KEYS = "share_keys"
    MASK = "mask"
    SIGN_SURVIVORS = "sign_survivors"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


# The whole protocol, as the client sees it: the phase each step needs and the one it leaves.
CLIENT_TRANSITIONS: dict[ClientPhase, ClientPhase] = {
    ClientPhase.ADVERTISE: ClientPhase.SHARE_KEYS,
    ClientPhase.SHARE_KEYS: ClientPhase.MASK,
    ClientPhase.MASK: ClientPhase.SIGN_SURVIVORS,
    ClientPhase.SIGN_SURVIVORS: ClientPhase.UNMASK,
    ClientPhase.UNMASK: ClientPhase.DONE,
}

_R = TypeVar("_R")


def _step(phase: ClientPhase) -> Callable[[Callable[..., _R]], Callable[..., _R]]:
    """Run a step only in ``phase``; any failure aborts the client permanently."""

    def decorate(method: Callable[..., _R]) -> Callable[..., _R]:
        @wraps(method)
        def run(self: SecAggClient, *args: Any, **kwargs: Any) -> _R:
            if self.phase is ClientPhase.ABORTED:
                raise SecAggAborted(f"silo {self.silo_id!r}: this round already aborted")
            if self.phase is not phase:
                self._abort(f"{method.__name__} called in phase {self.phase.value}")
            try:
                result = method(self, *args, **kwargs)
            except FedbiscuitError as error:
                self._abort(str(error))
            self.phase = CLIENT_TRANSITIONS[phase]
            return result

        return run

    return decorate


class SecAggClient:
    """One silo in one round. Holds the round's secrets; never pickle or log it.

    ``ca_certificate``, ``now`` and ``revoked_serials`` are what the silo checks its peers'
    certificates against; ``random_bytes`` is the CSPRNG for every secret (keys, seeds,
    Shamir coefficients, stochastic rounding), injectable only so tests are reproducible.
    """

    def __init__(
        self,
        params: SecAggParams,
        context: RoundContext,
        silo_id: str,
        certificate_pem: bytes,
        signing_key: ec.EllipticCurvePrivateKey,
        ca_certificate: x509.Certificate,
        now: datetime,
        *,
        revoked_serials: Collection[int] = frozenset(),
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.params = params
        self.context = context
        self.silo_id = silo_id
        self.phase = ClientPhase.ADVERTISE
        self._certificate_pem = certificate_pem
        self._signing_key = signing_key
        self._ca = ca_certificate
        self._now = now
        self._revoked = revoked_serials
        self._random_bytes = random_bytes
        own = verify_silo_certificate(
            certificate_pem, ca_certificate, context.federation_id, silo_id, now, revoked_serials
        )
        if own.public_numbers() != signing_key.public_key().public_numbers():
            raise InvalidInput(f"silo {silo_id!r}: the signing key does not match its certificate")
        self._keys: RoundKeys | None = None
        self._seed = b""
        self._graph: NeighbourGraph | None = None
        self._roster = b""
        self._peers: dict[str, KeyAdvertisement] = {}
        self._verifiers: dict[str, ec.EllipticCurvePublicKey] = {}
        self._held: dict[str, tuple[bytes, bytes]] = {}  # peer -> (self-mask, mask-key) share
        self._shared: tuple[str, ...] = ()
        self._survivors: tuple[str, ...] = ()

    def __reduce__(self) -> object:
        raise TypeError("a SecAggClient holds round secrets and cannot be pickled")

    def _abort(self, reason: str) -> None:
        self.phase = ClientPhase.ABORTED
        raise SecAggAborted(
            f"silo {self.silo_id!r}, round {self.context.round}: aborted: {reason}"
        ) from None

    def _check_context(self, context: RoundContext, what: str) -> None:
        if context != self.context:
            raise SecAggAborted(
                f"{what} is for federation {context.federation_id!r} round {context.round} "
                f"plan {context.plan_hash[:12]}, not this round (replayed or misrouted)"
            )

    @property
    def graph(self) -> NeighbourGraph:
        if self._graph is None:
            raise SecAggAborted("the neighbour graph is not known before the roster")
        return self._graph

    @_step(ClientPhase.ADVERTISE)
    def advertise(self) -> KeyAdvertisement:
        """Make this round's two key pairs and sign their public halves."""
        self._keys = RoundKeys(self._random_bytes)
        mask_pk, share_pk = self._keys.mask_public, self._keys.share_public
        payload = advertisement_payload(self.context, self.silo_id, mask_pk, share_pk)
        return KeyAdvertisement(
            self.context,
            self.silo_id,
            mask_pk,
            share_pk,
            self._certificate_pem,
            sign(self._signing_key, payload),
        )

    @_step(ClientPhase.SHARE_KEYS)
    def share_keys(self, roster: Roster) -> EncryptedShares:
        """Check the roster, then Shamir-share the self-mask seed and mask key to neighbours."""
        assert self._keys is not None
        self._check_context(roster.context, "the roster")
        ids = roster.silo_ids
        if len(set(ids)) != len(ids):
            raise SecAggAborted("the roster names a silo twice")
        for adv in roster.advertisements:
            self._check_context(adv.context, f"the advertisement of silo {adv.silo_id!r}")
            key = verify_silo_certificate(
                adv.certificate_pem,
                self._ca,
                self.context.federation_id,
                adv.silo_id,
                self._now,
                self._revoked,
            )
            if not signature_valid(key, adv.signature, adv.signed_payload()):
                raise SecAggAborted(
                    f"the keys advertised for silo {adv.silo_id!r} are not signed by it "
                    "(substituted keys?)"
                )
            self._peers[adv.silo_id] = adv
            self._verifiers[adv.silo_id] = key
        mine = self._peers.get(self.silo_id)
        if mine is None or (mine.mask_public_key, mine.share_public_key) != (
            self._keys.mask_public,
            self._keys.share_public,
        ):
            raise SecAggAborted("the roster does not carry this silo's own keys unchanged")
        graph = build_graph(ids, self.context.digest, self.params)
        self._graph = graph
        self._roster = roster_digest(self.context.digest, ids)
        neighbours = sorted(graph.neighbours[self.silo_id])
        xs = [graph.x_of(peer) for peer in neighbours]
        self._seed = self._random_bytes(shamir.SECRET_BYTES)
        seed_shares = shamir.split(self._seed, xs, graph.threshold, self._random_bytes)
        key_shares = shamir.split(
            self._keys.mask_private_bytes_for_sharing(), xs, graph.threshold, self._random_bytes
        )
        ciphertexts = {
            peer: seal_shares(
                self._keys.share_agreement(self._peers[peer].share_public_key),
                self.context.digest,
                self._roster,
                self.silo_id,
                peer,
                seed_shares[x],
                key_shares[x],
            )
            for peer, x in zip(neighbours, xs, strict=True)
        }
        return EncryptedShares(self.context, self.silo_id, ciphertexts)

    @_step(ClientPhase.MASK)
    def mask(self, delivery: ShareDelivery, update: np.ndarray) -> MaskedInput:
        """Open neighbours' shares, then encode ``update`` and add all masks to it."""
        assert self._keys is not None
        self._check_context(delivery.context, "the share delivery")
        graph = self.graph
        shared = tuple(sorted(set(delivery.senders)))
        if delivery.recipient != self.silo_id or len(shared) != len(delivery.senders):
            raise SecAggAborted("the share delivery is addressed to another silo or repeats one")
        if not set(shared) <= set(graph.silos) or self.silo_id not in shared:
            raise SecAggAborted("the silos said to have shared are not a subset of the roster")
        if len(shared) < self.params.min_silos:
            raise SecAggAborted(
                f"only {len(shared)} silos shared keys, fewer than the plan's minimum "
                f"{self.params.min_silos}"
            )
        expected = graph.neighbours[self.silo_id] & set(shared)
        if set(delivery.ciphertexts) != expected:
            raise SecAggAborted("the delivery's ciphertexts do not match the neighbours in U2")
        if len(expected) < graph.threshold:
            raise SecAggAborted(
                f"only {len(expected)} neighbours shared keys; {graph.threshold} are needed"
            )
        for peer in sorted(expected):
            self._held[peer] = open_shares(
                self._keys.share_agreement(self._peers[peer].share_public_key),
                self.context.digest,
                self._roster,
                peer,
                self.silo_id,
                delivery.ciphertexts[peer],
            )
        self._shared = shared
        pairwise = {
            peer: self._keys.mask_agreement(self._peers[peer].mask_public_key)
            for peer in sorted(expected)
        }
        vector = encode_and_mask(
            update,
            self.params.encoding,
            self.silo_id,
            self._seed,
            pairwise,
            self.context.digest,
            self._random_bytes,
        )
        return MaskedInput(self.context, self.silo_id, vector)

    @_step(ClientPhase.SIGN_SURVIVORS)
    def sign_survivors(self, request: ConsistencyRequest) -> SurvivorSignature:
        """Sign the roster, U2 and U3 this silo saw, after checking U3 is large enough."""
        self._check_context(request.context, "the consistency request")
        survivors = tuple(sorted(set(request.survivors)))
        if len(survivors) != len(request.survivors) or not set(survivors) <= set(self._shared):
            raise SecAggAborted("the survivors repeat a silo or include one that never shared")
        if self.silo_id not in survivors:
            raise SecAggAborted("the survivors omit this silo, which uploaded")
        if len(survivors) < self.params.min_silos:
            raise SecAggAborted(
                f"only {len(survivors)} silos uploaded, fewer than the plan's minimum "
                f"{self.params.min_silos}"
            )
        live_neighbours = self.graph.neighbours[self.silo_id] & set(survivors)
        if len(live_neighbours) < self.graph.threshold:
            raise SecAggAborted(
                f"only {len(live_neighbours)} neighbours uploaded; {self.graph.threshold} "
                "are needed to unmask"
            )
        self._survivors = survivors
        payload = consistency_payload(self.context, self._roster, self._shared, survivors)
        return SurvivorSignature(self.context, self.silo_id, sign(self._signing_key, payload))

    @_step(ClientPhase.UNMASK)
    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Reveal one share per neighbour: self-mask if it survived, mask key if it dropped."""
        self._check_context(request.context, "the unmask request")
        survivors, dropped = set(request.survivors), set(request.dropped)
        if survivors & dropped:
            raise SecAggAborted(
                "asked for both kinds of share of silos "
                f"{sorted(survivors & dropped)}; refusing (that would unmask an update)"
            )
        if tuple(sorted(request.survivors)) != self._survivors:
            raise SecAggAborted("the unmask request's survivors differ from those this silo signed")
        if dropped != set(self._shared) - survivors:
            raise SecAggAborted("the unmask request's dropped silos are inconsistent with U2 - U3")
        payload = consistency_payload(self.context, self._roster, self._shared, self._survivors)
        signers = set(request.signatures)
        if not signers <= survivors:
            raise SecAggAborted("a consistency signature comes from a silo that did not upload")
        for signer, signature in request.signatures.items():
            if not signature_valid(self._verifiers[signer], signature, payload):
                raise SecAggAborted(
                    f"silo {signer!r} signed a different view of the round (inconsistent "
                    "survivor or dropout sets)"
                )
        quorum = max(self.params.min_silos, len(survivors) // 2 + 1)
        if len(signers) < quorum:
            raise SecAggAborted(
                f"only {len(signers)} survivors confirmed the view; {quorum} are needed"
            )
        self_mask_shares = {p: s[0] for p, s in self._held.items() if p in survivors}
        mask_key_shares = {p: s[1] for p, s in self._held.items() if p in dropped}
        return UnmaskResponse(self.context, self.silo_id, self_mask_shares, mask_key_shares)
