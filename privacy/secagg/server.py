"""The aggregator's side of one SecAgg+ round: collect, route, check, rebuild, unmask.

Phases, in order; ``receive_*`` calls are accepted only in their collecting phase and a
``close_*`` call moves on (the driver decides when, e.g. at a deadline):

    KEYS -> SHARES -> MASKED -> SIGNATURES -> UNMASK -> DONE      (or ABORTED)

A single bad message (wrong round, forged signature, wrong size) is rejected with an error
and does not stop the round. The round aborts when continuing could not succeed or would
reveal too much: fewer distinct silos than the plan's minimum, or too few live neighbours
of a silo to rebuild its secrets. Those checks run *before* the unmask request goes out, so
an abort there reveals nothing. Masked inputs are summed on arrival and not kept.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from privacy.secagg import shamir
from privacy.secagg.encoding import decode_sum
from privacy.secagg.errors import SecAggAborted
from privacy.secagg.graph import NeighbourGraph, build_graph, roster_digest
from privacy.secagg.keys import (
    agree,
    private_key_from_bytes,
    public_of,
    signature_valid,
    verify_silo_certificate,
)
from privacy.secagg.masking import remove_pairwise_mask, remove_self_mask
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
    consistency_payload,
)
from privacy.secagg.params import SecAggParams
from privacy.secagg.prg import MaskExpander
from privacy.secagg.share_encryption import CIPHERTEXT_BYTES
from protos.errors import FailedPrecondition, InvalidInput, PermissionDenied


class ServerPhase(enum.Enum):
    KEYS = "keys"
    SHARES = "shares"
    MASKED = "masked"
    SIGNATURES = "signatures"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


SERVER_TRANSITIONS: dict[ServerPhase, ServerPhase] = {
    ServerPhase.KEYS: ServerPhase.SHARES,
    ServerPhase.SHARES: ServerPhase.MASKED,
    ServerPhase.MASKED: ServerPhase.SIGNATURES,
    ServerPhase.SIGNATURES: ServerPhase.UNMASK,
    ServerPhase.UNMASK: ServerPhase.DONE,
}


@dataclass(frozen=True)
class AggregateResult:
    """The round's output: the decoded sum over ``silos`` and its ring form."""

    silos: tuple[str, ...]
    ring_sum: np.ndarray
    total: np.ndarray  # float64, sum of the clipped, quantised updates


class SecAggServer:
    """The aggregator in one round; ``sender`` arguments are the mTLS-authenticated silo id."""

    def __init__(
        self,
        params: SecAggParams,
        context: RoundContext,
        vector_length: int,
        ca_certificate: x509.Certificate,
        now: datetime,
        *,
        revoked_serials: Collection[int] = frozenset(),
    ) -> None:
        if vector_length < 1:
            raise InvalidInput("secagg vector_length must be >= 1")
        self.params = params
        self.context = context
        self.vector_length = vector_length
        self.phase = ServerPhase.KEYS
        self._ca = ca_certificate
        self._now = now
        self._revoked = revoked_serials
        self._adverts: dict[str, KeyAdvertisement] = {}
        self._verifiers: dict[str, ec.EllipticCurvePublicKey] = {}
        self._graph: NeighbourGraph | None = None
        self._roster = b""
        self._shares: dict[str, EncryptedShares] = {}
        self._shared: tuple[str, ...] = ()
        self._sum: np.ndarray | None = None
        self._uploaded: list[str] = []
        self._survivors: tuple[str, ...] = ()
        self._dropped: tuple[str, ...] = ()
        self._signatures: dict[str, bytes] = {}
        self._responses: dict[str, UnmaskResponse] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def _expect(self, phase: ServerPhase, sender: str, context: RoundContext) -> None:
        if self.phase is ServerPhase.ABORTED:
            raise SecAggAborted(f"round {self.context.round} already aborted")
        if self.phase is not phase:
            raise FailedPrecondition(
                f"silo {sender!r}: round {self.context.round} is in phase {self.phase.value}, "
                f"not {phase.value}"
            )
        if context != self.context:
            raise FailedPrecondition(
                f"silo {sender!r}: message for round {context.round} of federation "
                f"{context.federation_id!r} (plan {context.plan_hash[:12]}) rejected; this is "
                f"round {self.context.round}"
            )

    def _advance(self, phase: ServerPhase) -> None:
        if self.phase is ServerPhase.ABORTED:
            raise SecAggAborted(f"round {self.context.round} already aborted")
        if self.phase is not phase:
            raise FailedPrecondition(f"cannot close {phase.value} in phase {self.phase.value}")
        self.phase = SERVER_TRANSITIONS[phase]

    def _abort(self, reason: str) -> None:
        self.phase = ServerPhase.ABORTED
        self._sum = None
        raise SecAggAborted(f"round {self.context.round}: aborted: {reason}")

    @property
    def graph(self) -> NeighbourGraph:
        if self._graph is None:
            raise FailedPrecondition("the neighbour graph is fixed when advertising closes")
        return self._graph

    def _feasible(self, responders: Iterable[str]) -> str | None:
        """Why unmasking with these responders would fail, or None if it can succeed."""
        live = set(responders)
        graph = self.graph
        for silo in self._survivors:
            if len(graph.neighbours[silo] & live) < graph.threshold:
                return f"silo {silo!r} has fewer than {graph.threshold} live neighbours"
        for silo in self._dropped:
            if graph.neighbours[silo] & set(self._survivors) and (
                len(graph.neighbours[silo] & live) < graph.threshold
            ):
                return f"dropped silo {silo!r} has fewer than {graph.threshold} live neighbours"
        return None

    # -- phase 1: keys ----------------------------------------------------------------------

    def receive_advertisement(self, sender: str, message: KeyAdvertisement) -> None:
        self._expect(ServerPhase.KEYS, sender, message.context)
        if message.silo_id != sender:
            raise PermissionDenied(f"silo {sender!r} sent keys for {message.silo_id!r}")
        if sender in self._adverts:
            if self._adverts[sender] == message:
                return  # idempotent resend
            raise FailedPrecondition(f"silo {sender!r} already advertised different keys")
        try:
            key = verify_silo_certificate(
                message.certificate_pem,
                self._ca,
                self.context.federation_id,
                sender,
                self._now,
                self._revoked,
            )
        except SecAggAborted as error:
            raise PermissionDenied(str(error)) from None
        if not signature_valid(key, message.signature, message.signed_payload()):
            raise PermissionDenied(f"silo {sender!r}: key advertisement signature is invalid")
        self._adverts[sender] = message
        self._verifiers[sender] = key

    def close_advertising(self) -> Roster:
        """Fix U1 and the graph; aborts below the plan's minimum number of silos."""
        if self.phase is ServerPhase.KEYS:
            try:
                self._graph = build_graph(list(self._adverts), self.context.digest, self.params)
            except SecAggAborted as error:
                self._abort(str(error))
        self._advance(ServerPhase.KEYS)
        self._roster = roster_digest(self.context.digest, self.graph.silos)
        adverts = tuple(self._adverts[s] for s in self.graph.silos)
        return Roster(self.context, adverts)

    # -- phase 2: shares --------------------------------------------------------------------

    def receive_shares(self, sender: str, message: EncryptedShares) -> None:
        self._expect(ServerPhase.SHARES, sender, message.context)
        if message.sender != sender or sender not in self.graph.neighbours:
            raise PermissionDenied(f"silo {sender!r} is not in this round's roster")
        if set(message.ciphertexts) != self.graph.neighbours[sender]:
            raise InvalidInput(f"silo {sender!r} sent shares for silos other than its neighbours")
        if any(len(c) != CIPHERTEXT_BYTES for c in message.ciphertexts.values()):
            raise InvalidInput(f"silo {sender!r} sent ciphertexts of the wrong size")
        if sender in self._shares and self._shares[sender] != message:
            raise FailedPrecondition(f"silo {sender!r} already sent different shares")
        self._shares[sender] = message

    def close_sharing(self) -> dict[str, ShareDelivery]:
        """Fix U2; route each silo the ciphertexts its neighbours in U2 sealed to it."""
        if self.phase is ServerPhase.SHARES and len(self._shares) < self.params.min_silos:
            self._abort(f"only {len(self._shares)} silos shared keys; need {self.params.min_silos}")
        self._advance(ServerPhase.SHARES)
        shared = tuple(sorted(self._shares))
        self._shared = shared
        return {
            silo: ShareDelivery(
                self.context,
                silo,
                shared,
                {
                    peer: self._shares[peer].ciphertexts[silo]
                    for peer in sorted(self.graph.neighbours[silo] & set(shared))
                },
            )
            for silo in shared
        }

    # -- phase 3: masked inputs -------------------------------------------------------------

    def receive_masked_input(self, sender: str, message: MaskedInput) -> None:
        """Add a masked input to the running sum (the individual vector is not kept)."""
        self._expect(ServerPhase.MASKED, sender, message.context)
        if message.silo_id != sender or sender not in self._shared:
            raise PermissionDenied(f"silo {sender!r} did not share keys in this round")
        if sender in self._uploaded:
            raise FailedPrecondition(f"silo {sender!r} already uploaded its masked input")
        vector = message.vector
        dtype = self.params.encoding.dtype
        if vector.dtype != dtype or vector.shape != (self.vector_length,):
            raise InvalidInput(
                f"silo {sender!r}: masked input must be {self.vector_length} {dtype} words, "
                f"got {vector.size} {vector.dtype}"
            )
        if self._sum is None:
            self._sum = vector.copy()
        else:
            np.add(self._sum, vector, out=self._sum)
        self._uploaded.append(sender)

    def close_masking(self) -> ConsistencyRequest:
        """Fix U3; aborts (revealing nothing) if it is too small to unmask safely."""
        if self.phase is ServerPhase.MASKED:
            self._survivors = tuple(sorted(self._uploaded))
            self._dropped = tuple(sorted(set(self._shared) - set(self._survivors)))
            if len(self._survivors) < self.params.min_silos:
                self._abort(
                    f"only {len(self._survivors)} masked inputs; need {self.params.min_silos}"
                )
            reason = self._feasible(self._survivors)
            if reason:
                self._abort(reason)
        self._advance(ServerPhase.MASKED)
        return ConsistencyRequest(self.context, self._survivors)

    # -- phase 4: consistency ---------------------------------------------------------------

    def receive_survivor_signature(self, sender: str, message: SurvivorSignature) -> None:
        self._expect(ServerPhase.SIGNATURES, sender, message.context)
        if message.silo_id != sender or sender not in self._survivors:
            raise PermissionDenied(f"silo {sender!r} is not a survivor of this round")
        payload = consistency_payload(self.context, self._roster, self._shared, self._survivors)
        if not signature_valid(self._verifiers[sender], message.signature, payload):
            raise PermissionDenied(f"silo {sender!r} signed a different view of the round")
        self._signatures[sender] = message.signature

    def close_consistency(self) -> UnmaskRequest:
        """Ask signers to unmask, once a quorum confirmed the same view and unmasking can work."""
        if self.phase is ServerPhase.SIGNATURES:
            quorum = max(self.params.min_silos, len(self._survivors) // 2 + 1)
            if len(self._signatures) < quorum:
                self._abort(f"only {len(self._signatures)} survivors signed; {quorum} needed")
            reason = self._feasible(self._signatures)
            if reason:
                self._abort(reason)
        self._advance(ServerPhase.SIGNATURES)
        return UnmaskRequest(self.context, self._survivors, self._dropped, dict(self._signatures))

    # -- phase 5: unmasking -----------------------------------------------------------------

    def receive_unmask_response(self, sender: str, message: UnmaskResponse) -> None:
        self._expect(ServerPhase.UNMASK, sender, message.context)
        if message.silo_id != sender or sender not in self._signatures:
            raise PermissionDenied(f"silo {sender!r} was not asked to unmask")
        neighbours = self.graph.neighbours[sender]
        if not set(message.self_mask_shares) <= neighbours & set(self._survivors) or not set(
            message.mask_key_shares
        ) <= neighbours & set(self._dropped):
            raise InvalidInput(f"silo {sender!r} sent shares for silos it should not")
        self._responses[sender] = message

    def finish(self) -> AggregateResult:
        """Rebuild the secrets, strip every mask and decode the sum of the survivors' updates."""
        if self.phase is ServerPhase.UNMASK:
            reason = self._feasible(self._responses)
            if reason:
                self._abort(f"too few unmask responses: {reason}")
        self._advance(ServerPhase.UNMASK)
        assert self._sum is not None
        graph, digest = self.graph, self.context.digest
        expander = MaskExpander(self.vector_length, self.params.encoding.dtype)
        total = self._sum
        for silo in self._survivors:
            shares = {
                graph.x_of(r): m.self_mask_shares[silo]
                for r, m in self._responses.items()
                if silo in m.self_mask_shares
            }
            seed = self._combine(shares, silo)
            remove_self_mask(total, silo, seed, digest, expander)
        for silo in self._dropped:
            live = graph.neighbours[silo] & set(self._survivors)
            if not live:
                continue
            shares = {
                graph.x_of(r): m.mask_key_shares[silo]
                for r, m in self._responses.items()
                if silo in m.mask_key_shares
            }
            raw = self._combine(shares, silo)
            if public_of(raw) != self._adverts[silo].mask_public_key:
                self._abort(f"the rebuilt mask key of silo {silo!r} does not match its advert")
            private = private_key_from_bytes(raw)
            for survivor in sorted(live):
                secret = agree(private, self._adverts[survivor].mask_public_key)
                remove_pairwise_mask(total, survivor, silo, secret, digest, expander)
        self._sum = None
        try:
            decoded = decode_sum(total, self.params.encoding, len(self._survivors))
        except SecAggAborted as error:
            self.phase = ServerPhase.ABORTED
            raise SecAggAborted(f"round {self.context.round}: {error}") from None
        return AggregateResult(self._survivors, total, decoded)

    def _combine(self, shares: dict[int, bytes], silo: str) -> bytes:
        try:
            return shamir.combine(shares, self.graph.threshold)
        except InvalidInput as error:
            self._abort(f"cannot rebuild the secret of silo {silo!r}: {error}")
            raise  # unreachable; _abort raises
