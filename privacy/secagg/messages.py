"""The messages of one SecAgg+ round, as plain immutable values (the wire layer maps them).

Every message carries the full :class:`RoundContext`; both ends reject a message whose
context differs from their own, which is what stops replays across rounds, federations and
plans. Byte strings that are signed are built here, once (see :mod:`.transcript`).

Flow (client ``->`` server ``=>`` client)::

    KeyAdvertisement  ->  Roster            =>  (all advertisers)
    EncryptedShares   ->  ShareDelivery     =>  (each silo that shared: its ciphertexts)
    MaskedInput       ->  ConsistencyRequest =>  (each silo that uploaded)
    SurvivorSignature ->  UnmaskRequest     =>  (each silo that signed)
    UnmaskResponse    ->  (the aggregator rebuilds masks and decodes the sum)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from privacy.pki.layout import validate_id
from privacy.secagg import transcript
from protos.errors import InvalidInput

_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SEED_BYTES = 32


@dataclass(frozen=True)
class RoundContext:
    """What a round is: federation, round number, plan hash and the public round seed.

    The seed (chosen by the aggregator, public) fixes the neighbour graph; a re-run round
    gets a new seed and fresh keys, so masks are never reused. In membership-hiding
    FedBiscuit, ``grouping_digest`` is the digest every silo confirmed for the grouping the
    round trains under (:mod:`privacy.membership`): silos holding different groupings sign
    different contexts, so they refuse each other's keys before anyone trains.
    """

    federation_id: str
    round: int
    plan_hash: str  # hex SHA-256 of the plan's canonical JSON
    seed: bytes
    grouping_digest: bytes = b""  # empty, or the 32-byte confirmed grouping digest

    def __post_init__(self) -> None:
        validate_id(self.federation_id, "federation id")
        if isinstance(self.round, bool) or not isinstance(self.round, int) or self.round < 0:
            raise InvalidInput(f"round must be a non-negative integer, got {self.round!r}")
        if not _HEX_SHA256.fullmatch(self.plan_hash):
            raise InvalidInput("plan_hash must be a lowercase hex SHA-256 digest")
        if len(self.seed) != SEED_BYTES:
            raise InvalidInput(f"the round seed must be {SEED_BYTES} bytes")
        if len(self.grouping_digest) not in (0, 32):
            raise InvalidInput("a round's grouping digest must be empty or 32 bytes")

    @cached_property
    def digest(self) -> bytes:
        """32 bytes that every derived key, signature and graph of this round binds to."""
        fields = (self.federation_id, self.round, self.plan_hash, self.seed)
        if self.grouping_digest:  # rounds without a hidden grouping keep their digest
            return transcript.digest("context/grouped", *fields, self.grouping_digest)
        return transcript.digest("context", *fields)


@dataclass(frozen=True)
class KeyAdvertisement:
    """A silo's two public keys for the round, signed with its certificate key."""

    context: RoundContext
    silo_id: str
    mask_public_key: bytes
    share_public_key: bytes
    certificate_pem: bytes
    signature: bytes = field(repr=False)

    def signed_payload(self) -> bytes:
        return advertisement_payload(
            self.context, self.silo_id, self.mask_public_key, self.share_public_key
        )


def advertisement_payload(
    context: RoundContext, silo_id: str, mask_public_key: bytes, share_public_key: bytes
) -> bytes:
    return transcript.encode(
        "advertise",
        context.federation_id,
        context.round,
        context.plan_hash,
        context.digest,
        silo_id,
        mask_public_key,
        share_public_key,
    )


@dataclass(frozen=True)
class Roster:
    """Every advertisement the aggregator accepted (the round's U1)."""

    context: RoundContext
    advertisements: tuple[KeyAdvertisement, ...]

    @property
    def silo_ids(self) -> tuple[str, ...]:
        return tuple(a.silo_id for a in self.advertisements)


@dataclass(frozen=True)
class EncryptedShares:
    """A silo's shares for each neighbour, each sealed to that neighbour (receiver -> bytes)."""

    context: RoundContext
    sender: str
    ciphertexts: Mapping[str, bytes]


@dataclass(frozen=True)
class ShareDelivery:
    """For one silo: who shared (U2) and the ciphertexts its neighbours sealed to it."""

    context: RoundContext
    recipient: str
    senders: tuple[str, ...]
    ciphertexts: Mapping[str, bytes]  # sender -> ciphertext


@dataclass(frozen=True)
class MaskedInput:
    """A silo's encoded update plus its masks: uniformly random to anyone without them."""

    context: RoundContext
    silo_id: str
    vector: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class ConsistencyRequest:
    """The silos whose masked inputs the aggregator holds (U3), for every survivor to sign."""

    context: RoundContext
    survivors: tuple[str, ...]


def consistency_payload(
    context: RoundContext, roster: bytes, shared: Sequence[str], survivors: Sequence[str]
) -> bytes:
    return transcript.encode(
        "consistency", context.digest, roster, sorted(shared), sorted(survivors)
    )


@dataclass(frozen=True)
class SurvivorSignature:
    """A silo's signature over the roster, U2 and U3 it saw."""

    context: RoundContext
    silo_id: str
    signature: bytes = field(repr=False)


@dataclass(frozen=True)
class UnmaskRequest:
    """Which silos to treat as survivors and as dropped, with the survivors' signatures."""

    context: RoundContext
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    signatures: Mapping[str, bytes]


@dataclass(frozen=True)
class UnmaskResponse:
    """Shares of survivors' self-mask seeds and of dropped silos' mask keys (peer -> share).

    A peer is never in both maps: that is the client's central refusal.
    """

    context: RoundContext
    silo_id: str
    self_mask_shares: Mapping[str, bytes] = field(repr=False)
    mask_key_shares: Mapping[str, bytes] = field(repr=False)
