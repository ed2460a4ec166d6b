"""Signed statements that stop the aggregator from using silos as a decryption oracle.

The threat: silos hold the secret key and decrypt whatever the aggregator serves as "the
aggregate". A curious aggregator could serve one silo's ciphertext (or a sum over too few
silos) and learn that silo's update from what the others do with it. So:

1. every contribution carries a commitment, signed with the silo's certificate key, to the
   digest of its ciphertext manifest (which lists every ciphertext's SHA-256) for one
   federation, round and key epoch;
2. the aggregate comes with an :class:`AggregateStatement` listing the signed commitments
   it sums, the digest of the previous global it was added onto (if chained) and of the
   result;
3. before decrypting, a silo checks the statement (:func:`verify_aggregate_statement`): the
   contributors are exactly the round's, at least ``min_contributors >= 2`` of them, every
   signature verifies against a CA-issued certificate, its own contribution is included
   unchanged, and the result is the manifest it downloaded;
4. because the homomorphic sum is exact and deterministic, a silo can also recompute a few
   randomly chosen ciphertext chunks from the contributions and compare bytes
   (:func:`spot_check_chunk`): an aggregate whose content is not the stated sum is caught.

Signatures are ECDSA P-256 with SHA-256 over a domain tag and canonical JSON.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, field_validator

from privacy.he._certs import load_ca, verified_silo_key
from privacy.he._context import PublicContext, SecretContext
from privacy.he._packing import CiphertextManifest, check_manifest, load_chunk
from protos.errors import InvalidInput, NotAuthenticated, PermissionDenied
from protos.strict_model import StrictTypedModel

_SHA256 = r"^[0-9a-f]{64}$"
_COMMITMENT_TAG = b"fedbiscuit/he/contribution/v1\n"


class AggregateRejected(PermissionDenied):
    """The aggregate is not the stated sum of the round's contributions: do not decrypt it."""


class _Canonical(StrictTypedModel):
    """A signed statement: canonical JSON is what the signature covers."""

    def canonical(self) -> bytes:
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        ).encode()


class ContributionCommitment(_Canonical):
    """What a silo vouches it uploaded in one round."""

    version: Literal[1] = 1
    federation_id: str = Field(min_length=1)
    round: int = Field(ge=0)
    key_epoch: int = Field(ge=0)
    silo_id: str = Field(min_length=1)
    weight: float = Field(description="The aggregation weight the silo applied before encrypting.")
    context_id: str = Field(pattern=_SHA256)
    length: int = Field(ge=1)
    manifest_digest: str = Field(pattern=_SHA256, description="CiphertextManifest.digest().")
    base_digest: str | None = Field(
        default=None,
        pattern=_SHA256,
        description="Manifest digest of the encrypted global this contribution is added onto "
        "(the one its task named): pins the base before the aggregator sees any contribution.",
    )

    @field_validator("weight")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("weight must be finite")
        return value


class SignedCommitment(_Canonical):
    commitment: ContributionCommitment
    signature: str = Field(pattern=r"^[0-9a-f]+$", description="DER ECDSA signature, hex.")


class AggregateStatement(_Canonical):
    """What the aggregator says an aggregate sums; silos check it before decrypting."""

    version: Literal[1] = 1
    federation_id: str = Field(min_length=1)
    round: int = Field(ge=0)
    key_epoch: int = Field(ge=0)
    contributions: tuple[SignedCommitment, ...]
    previous_digest: str | None = Field(
        default=None,
        pattern=_SHA256,
        description="Manifest digest of the encrypted global the sum was added onto, if any.",
    )
    result_digest: str = Field(pattern=_SHA256, description="Manifest digest of the aggregate.")


def commit_contribution(
    private_key: ec.EllipticCurvePrivateKey,
    manifest: CiphertextManifest,
    *,
    federation_id: str,
    round: int,
    key_epoch: int,
    silo_id: str,
    weight: float,
    base_digest: str | None = None,
) -> SignedCommitment:
    """The silo's signed commitment to the ciphertexts it uploads this round, to be added
    onto the encrypted global of digest ``base_digest`` (None: not chained)."""
    commitment = ContributionCommitment(
        federation_id=federation_id,
        round=round,
        key_epoch=key_epoch,
        silo_id=silo_id,
        weight=float(weight),
        context_id=manifest.context_id,
        length=manifest.length,
        manifest_digest=manifest.digest(),
        base_digest=base_digest,
    )
    signature = private_key.sign(
        _COMMITMENT_TAG + commitment.canonical(), ec.ECDSA(hashes.SHA256())
    )
    return SignedCommitment(commitment=commitment, signature=signature.hex())


def verify_commitment(
    signed: SignedCommitment,
    cert_pem: bytes,
    *,
    ca_cert_pem: bytes,
    federation_id: str,
    now: datetime,
    revoked_serials: Collection[int] = (),
) -> ContributionCommitment:
    """Check one signed commitment against its silo's certificate; returns the commitment.

    The aggregator calls this on upload (and compares ``manifest_digest`` with the upload's
    manifest and ``silo_id`` with the mTLS peer); silos call it for every contribution of a
    statement.
    """
    silo_id, key = verified_silo_key(
        cert_pem,
        ca_cert=load_ca(ca_cert_pem),
        federation_id=federation_id,
        now=now,
        revoked_serials=revoked_serials,
    )
    commitment = signed.commitment
    if commitment.silo_id != silo_id or commitment.federation_id != federation_id:
        raise NotAuthenticated(
            f"a commitment for silo {commitment.silo_id!r} of {commitment.federation_id!r} "
            f"came with the certificate of silo {silo_id!r} of {federation_id!r}"
        )
    try:
        key.verify(
            bytes.fromhex(signed.signature),
            _COMMITMENT_TAG + commitment.canonical(),
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, ValueError):
        raise NotAuthenticated(
            f"the commitment of silo {silo_id!r} for round {commitment.round} has an invalid "
            "signature"
        ) from None
    return commitment


def build_aggregate_statement(
    contributions: Sequence[SignedCommitment],
    aggregate: CiphertextManifest,
    *,
    federation_id: str,
    round: int,
    key_epoch: int,
    previous_digest: str | None = None,
) -> AggregateStatement:
    """The aggregator's statement of what ``aggregate`` sums (contributions sorted by silo)."""
    ordered = tuple(sorted(contributions, key=lambda s: s.commitment.silo_id))
    silos = [s.commitment.silo_id for s in ordered]
    if len(set(silos)) != len(silos):
        raise InvalidInput(f"a silo appears twice among the contributions: {silos}")
    for s in ordered:
        c = s.commitment
        if (c.federation_id, c.round, c.key_epoch) != (federation_id, round, key_epoch):
            raise InvalidInput(
                f"the commitment of silo {c.silo_id!r} is for round {c.round}, epoch "
                f"{c.key_epoch}; the aggregate is round {round}, epoch {key_epoch}"
            )
    return AggregateStatement(
        federation_id=federation_id,
        round=round,
        key_epoch=key_epoch,
        contributions=ordered,
        previous_digest=previous_digest,
        result_digest=aggregate.digest(),
    )


def verify_aggregate_statement(
    statement: AggregateStatement,
    aggregate: CiphertextManifest,
    *,
    federation_id: str,
    round: int,
    key_epoch: int,
    expected_contributors: Collection[str],
    min_contributors: int,
    certs: Mapping[str, bytes],
    ca_cert_pem: bytes,
    now: datetime,
    revoked_serials: Collection[int] = (),
    own_contribution: SignedCommitment | None = None,
    expected_previous_digest: str | None = None,
) -> None:
    """Refuse (raise :class:`AggregateRejected`) unless ``aggregate`` is, as stated, the sum
    of exactly ``expected_contributors`` (at least ``min_contributors >= 2``) signed
    contributions of this round, on top of ``expected_previous_digest`` if chained.

    ``certs`` maps silo id to certificate PEM (relayed by anyone: each is checked against
    the CA). A silo that contributed passes ``own_contribution`` so that it is sure its own
    update is in the sum and unchanged.
    """
    if min_contributors < 2:
        raise InvalidInput(
            f"min_contributors must be at least 2 (got {min_contributors}): a one-silo "
            "aggregate would decrypt that silo's update"
        )

    def reject(why: str) -> AggregateRejected:
        return AggregateRejected(
            f"refusing to decrypt the aggregate of round {round} of {federation_id!r}: {why}"
        )

    if (statement.federation_id, statement.round, statement.key_epoch) != (
        federation_id,
        round,
        key_epoch,
    ):
        raise reject(
            f"the statement is for {statement.federation_id!r}, round {statement.round}, key "
            f"epoch {statement.key_epoch} (expected key epoch {key_epoch})"
        )
    if aggregate.digest() != statement.result_digest:
        raise reject("the downloaded aggregate is not the one the statement describes")
    if statement.previous_digest != expected_previous_digest:
        raise reject("it was not added onto the global model this silo last accepted")
    silos = [s.commitment.silo_id for s in statement.contributions]
    if len(set(silos)) != len(silos):
        raise reject(f"a silo is listed twice: {sorted(silos)}")
    if len(silos) < min_contributors:
        raise reject(f"it sums {len(silos)} contribution(s), fewer than {min_contributors}")
    if statement.result_digest == statement.previous_digest or any(
        s.commitment.manifest_digest == statement.result_digest for s in statement.contributions
    ):
        raise reject("the 'aggregate' is one of its own inputs, served verbatim")
    if set(silos) != set(expected_contributors):
        raise reject(
            f"it sums {sorted(silos)}, not the round's contributors {sorted(expected_contributors)}"
        )
    for signed in statement.contributions:
        silo_id = signed.commitment.silo_id
        if silo_id not in certs:
            raise reject(f"no certificate for contributor {silo_id!r}")
        try:
            c = verify_commitment(
                signed,
                certs[silo_id],
                ca_cert_pem=ca_cert_pem,
                federation_id=federation_id,
                now=now,
                revoked_serials=revoked_serials,
            )
        except NotAuthenticated as exc:
            raise reject(str(exc)) from None
        if (c.round, c.key_epoch) != (round, key_epoch):
            raise reject(f"the commitment of {silo_id!r} is for round {c.round}")
        if (c.context_id, c.length) != (aggregate.context_id, aggregate.length):
            raise reject(f"the contribution of {silo_id!r} was made for another key or size")
        if c.base_digest != statement.previous_digest:
            raise reject(
                f"the contribution of {silo_id!r} was made to be added onto another global "
                "than the stated one"
            )
    if own_contribution is not None and own_contribution not in statement.contributions:
        raise reject("this silo's own contribution is missing or altered")


def spot_check_indices(count: int, k: int, rng: random.Random) -> list[int]:
    """Pick ``k`` chunk indices to re-add; pass ``random.SystemRandom()`` so the aggregator
    cannot predict them."""
    return sorted(rng.sample(range(count), min(k, count)))


def spot_check_chunk(
    ctx: PublicContext | SecretContext,
    statement: AggregateStatement,
    index: int,
    aggregate: CiphertextManifest,
    aggregate_chunk: bytes,
    contributions: Mapping[str, tuple[CiphertextManifest, bytes]],
    previous: tuple[CiphertextManifest, bytes] | None = None,
) -> None:
    """Recompute chunk ``index`` of the aggregate from the contributions' chunks and compare.

    ``contributions`` maps each listed silo to (its manifest, its chunk ``index``); each
    manifest must have the digest that silo signed. Run after
    :func:`verify_aggregate_statement`; raises :class:`AggregateRejected` on any mismatch.
    """

    def reject(why: str) -> AggregateRejected:
        return AggregateRejected(
            f"refusing to decrypt the aggregate of round {statement.round}: {why}"
        )

    if aggregate.digest() != statement.result_digest:
        raise reject("the aggregate manifest is not the one the statement describes")
    listed = {s.commitment.silo_id: s.commitment for s in statement.contributions}
    if set(contributions) != set(listed):
        raise reject("spot-check data does not cover exactly the listed contributors")
    parts: list[tuple[CiphertextManifest, bytes]] = []
    for silo_id, (manifest, chunk) in sorted(contributions.items()):
        if manifest.digest() != listed[silo_id].manifest_digest:
            raise reject(f"the manifest served for {silo_id!r} is not the one it signed")
        parts.append((manifest, chunk))
    if (previous is None) != (statement.previous_digest is None) or (
        previous is not None and previous[0].digest() != statement.previous_digest
    ):
        raise reject("the previous global served for the spot check is not the stated one")
    if previous is not None:
        parts.append(previous)
    if not parts:
        raise reject("there is nothing to re-add")
    check_manifest(ctx, aggregate, length=None)
    try:
        total = None
        for manifest, chunk in parts:
            check_manifest(ctx, manifest, length=aggregate.length)
            vector = load_chunk(ctx, manifest, index, chunk)
            total = vector if total is None else total.add_(vector)
        load_chunk(ctx, aggregate, index, aggregate_chunk)
    except InvalidInput as exc:
        raise reject(str(exc)) from None
    if total is None or total.serialize() != aggregate_chunk:
        raise reject(f"chunk {index} is not the sum of the listed contributions")
