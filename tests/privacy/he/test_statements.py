"""Anti-oracle: silos refuse to decrypt anything but the stated sum of the round's
contributions, signed by their silos."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from privacy.he import (
    AggregateRejected,
    AggregateStatement,
    EncryptedVector,
    SecretContext,
    SignedCommitment,
    build_aggregate_statement,
    commit_contribution,
    encrypt_update,
    load_public_context,
    public_context_bytes,
    spot_check_chunk,
    spot_check_indices,
    sum_encrypted,
    verify_aggregate_statement,
)
from privacy.pki import FederationPaths
from protos.errors import InvalidInput
from tests.privacy.he.conftest import FEDERATION, NOW

SILOS = ("silo-a", "silo-b", "silo-c")
ROUND, EPOCH, LENGTH = 7, 2, 5000


@dataclass
class Round:
    uploads: dict[str, EncryptedVector]
    commitments: dict[str, SignedCommitment]
    aggregate: EncryptedVector
    statement: AggregateStatement


def _key(pki: FederationPaths, silo: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pki.silo_key(silo).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _commit(pki: FederationPaths, silo: str, upload: EncryptedVector, round: int = ROUND):
    return commit_contribution(
        _key(pki, silo),
        upload.manifest,
        federation_id=FEDERATION,
        round=round,
        key_epoch=EPOCH,
        silo_id=silo,
        weight=1 / 3,
    )


def _statement(commitments: list[SignedCommitment], manifest, **extra) -> AggregateStatement:
    """The aggregator's statement for this federation's round and key epoch."""
    return build_aggregate_statement(
        commitments, manifest, federation_id=FEDERATION, round=ROUND, key_epoch=EPOCH, **extra
    )


@pytest.fixture(scope="module")
def honest(pki: FederationPaths, small_ctx: SecretContext) -> Round:
    rng = np.random.default_rng(0)
    uploads = {
        s: encrypt_update(
            small_ctx, rng.normal(0, 1e-3, LENGTH).astype(np.float32), weight=1 / 3, max_silos=3
        )
        for s in SILOS
    }
    commitments = {s: _commit(pki, s, u) for s, u in uploads.items()}
    public = load_public_context(public_context_bytes(small_ctx), small_ctx.preset.name)
    aggregate = sum_encrypted(public, list(uploads.values()))
    statement = _statement(list(commitments.values()), aggregate.manifest)
    return Round(uploads, commitments, aggregate, statement)


def _verify(pki: FederationPaths, statement, aggregate, **overrides) -> None:
    args = {
        "federation_id": FEDERATION,
        "round": ROUND,
        "key_epoch": EPOCH,
        "expected_contributors": SILOS,
        "min_contributors": 2,
        "certs": {s: pki.silo_cert(s).read_bytes() for s in SILOS},
        "ca_cert_pem": pki.ca_cert.read_bytes(),
        "now": NOW,
    }
    verify_aggregate_statement(statement, aggregate, **{**args, **overrides})


def test_the_honest_aggregate_is_accepted(pki: FederationPaths, honest: Round) -> None:
    _verify(
        pki,
        honest.statement,
        honest.aggregate.manifest,
        own_contribution=honest.commitments["silo-b"],
    )


def test_one_silos_ciphertext_served_as_its_own_aggregate_is_refused(
    pki: FederationPaths, honest: Round
) -> None:
    victim = honest.uploads["silo-a"]
    statement = _statement([honest.commitments["silo-a"]], victim.manifest)
    with pytest.raises(AggregateRejected, match="fewer than 2"):
        _verify(pki, statement, victim.manifest)
    with pytest.raises(AggregateRejected, match="fewer than 2"):
        _verify(pki, statement, victim.manifest, expected_contributors=["silo-a"])


def test_a_set_other_than_the_rounds_contributors_is_refused(
    pki: FederationPaths, honest: Round, small_ctx: SecretContext
) -> None:
    subset = [honest.uploads["silo-a"], honest.uploads["silo-b"]]
    aggregate = sum_encrypted(small_ctx, subset)
    statement = _statement(
        [honest.commitments["silo-a"], honest.commitments["silo-b"]], aggregate.manifest
    )
    with pytest.raises(AggregateRejected, match="not the round's contributors"):
        _verify(pki, statement, aggregate.manifest)


def test_a_silo_whose_own_update_is_left_out_refuses(pki: FederationPaths, honest: Round) -> None:
    with pytest.raises(AggregateRejected, match="own contribution is missing or altered"):
        _verify(
            pki,
            honest.statement,
            honest.aggregate.manifest,
            own_contribution=_commit(pki, "silo-b", honest.uploads["silo-c"]),
        )


def test_a_commitment_forged_by_the_aggregator_is_refused(
    pki: FederationPaths, honest: Round
) -> None:
    forged = commit_contribution(
        ec.generate_private_key(ec.SECP256R1()),
        honest.uploads["silo-a"].manifest,
        federation_id=FEDERATION,
        round=ROUND,
        key_epoch=EPOCH,
        silo_id="silo-c",
        weight=1 / 3,
    )
    commitments = [honest.commitments["silo-a"], honest.commitments["silo-b"], forged]
    statement = honest.statement.model_copy(update={"contributions": tuple(commitments)})
    with pytest.raises(AggregateRejected, match="invalid signature"):
        _verify(pki, statement, honest.aggregate.manifest)


def test_a_commitment_replayed_from_another_round_is_refused(
    pki: FederationPaths, honest: Round
) -> None:
    old = _commit(pki, "silo-c", honest.uploads["silo-c"], round=ROUND - 1)
    with pytest.raises(InvalidInput, match="round 6"):
        _statement(
            [honest.commitments["silo-a"], honest.commitments["silo-b"], old],
            honest.aggregate.manifest,
        )
    statement = honest.statement.model_copy(
        update={"contributions": (honest.commitments["silo-a"], honest.commitments["silo-b"], old)}
    )
    with pytest.raises(AggregateRejected, match="round 6"):
        _verify(pki, statement, honest.aggregate.manifest)


def test_an_aggregate_other_than_the_stated_one_is_refused(
    pki: FederationPaths, honest: Round
) -> None:
    with pytest.raises(AggregateRejected, match="not the one the statement describes"):
        _verify(pki, honest.statement, honest.uploads["silo-a"].manifest)


def test_a_chained_aggregate_must_sit_on_the_last_accepted_global(
    pki: FederationPaths, honest: Round
) -> None:
    with pytest.raises(AggregateRejected, match="global model this silo last accepted"):
        _verify(pki, honest.statement, honest.aggregate.manifest, expected_previous_digest="0" * 64)


def test_min_contributors_below_two_is_a_configuration_error(
    pki: FederationPaths, honest: Round
) -> None:
    with pytest.raises(InvalidInput, match="at least 2"):
        _verify(pki, honest.statement, honest.aggregate.manifest, min_contributors=1)


def _spot_data(honest: Round, index: int) -> dict[str, tuple]:
    return {s: (u.manifest, u.ciphertexts[index]) for s, u in honest.uploads.items()}


def test_spot_checks_pass_on_the_honest_sum(small_ctx: SecretContext, honest: Round) -> None:
    count = honest.aggregate.manifest.count
    for index in spot_check_indices(count, 2, random.SystemRandom()):
        spot_check_chunk(
            small_ctx,
            honest.statement,
            index,
            honest.aggregate.manifest,
            honest.aggregate.ciphertexts[index],
            _spot_data(honest, index),
        )


def test_one_silos_ciphertext_behind_an_honest_looking_statement_is_caught(
    pki: FederationPaths, small_ctx: SecretContext, honest: Round
) -> None:
    """The aggregator lists every contributor but serves silo-a's upload as the sum,
    re-randomised (plus a fresh encryption of zero) so that its bytes differ."""
    zero = encrypt_update(small_ctx, np.zeros(LENGTH, np.float32), weight=1.0, max_silos=3)
    victim = sum_encrypted(small_ctx, [honest.uploads["silo-a"], zero])
    statement = honest.statement.model_copy(update={"result_digest": victim.manifest.digest()})
    _verify(pki, statement, victim.manifest)  # the list alone cannot tell
    with pytest.raises(AggregateRejected, match="chunk 0 is not the sum"):
        spot_check_chunk(
            small_ctx, statement, 0, victim.manifest, victim.ciphertexts[0], _spot_data(honest, 0)
        )


def test_spot_check_refuses_manifests_other_than_the_signed_ones(
    small_ctx: SecretContext, honest: Round
) -> None:
    data = _spot_data(honest, 0)
    data["silo-b"] = data["silo-a"]
    with pytest.raises(AggregateRejected, match="not the one it signed"):
        spot_check_chunk(
            small_ctx,
            honest.statement,
            0,
            honest.aggregate.manifest,
            honest.aggregate.ciphertexts[0],
            data,
        )


def test_one_contribution_served_verbatim_under_an_honest_statement_is_refused(
    pki: FederationPaths, honest: Round
) -> None:
    victim = honest.uploads["silo-a"]
    statement = _statement(list(honest.commitments.values()), victim.manifest)
    with pytest.raises(AggregateRejected, match="one of its own inputs, served verbatim"):
        _verify(pki, statement, victim.manifest)


def test_contributions_added_onto_another_base_than_they_signed_are_refused(
    pki: FederationPaths, honest: Round
) -> None:
    # The aggregator picks the base after seeing the contributions (e.g. minus the others'
    # sum, so the result is one silo's update): every contributor signed the real base.
    statement = _statement(
        list(honest.commitments.values()), honest.aggregate.manifest, previous_digest="1" * 64
    )
    with pytest.raises(AggregateRejected, match="added onto another global than the stated"):
        _verify(pki, statement, honest.aggregate.manifest, expected_previous_digest="1" * 64)
