"""The protection mode is chosen once from the plan, fails closed, and is the only place that
knows it: other modes' RPCs are refused, and one trust view serves every check."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from aggregator.federation_trust import FederationTrust
from aggregator.protection.choose import edge_for, protection_for
from aggregator.protection.grouping import Grouping
from aggregator.protection.he import HeProtection
from aggregator.protection.hidden import HiddenEdge, HiddenProtection
from aggregator.protection.hidden_grouping import HiddenGrouping
from aggregator.protection.masked import MaskedProtection
from aggregator.protection.plain import PlainProtection
from aggregator.rounds.round_machine import RoundMachine
from aggregator.rounds.round_table import Phase, RoundState
from aggregator.store import MemoryMedium, MemoryStore
from privacy.pki import FederationPaths, RevocationList, RevokedCertificate
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import HeSpec
from protos.v1 import federation_pb2 as pb

from ..conftest import FakeClock, tiny_plan


def _initial(adapter: int) -> dict[str, np.ndarray]:
    return {"w": np.full(4, float(adapter), np.float32)}


MODES = {
    "insecure_plaintext": {},
    "masking": {"silos_per_round": 3, "min_silos": 3},
    "he": {"silos_per_round": 3, "min_silos": 3, "he": HeSpec(key_custodian="silo-1")},
}


@pytest.mark.parametrize(
    ("protection", "strategy"),
    [("insecure_plaintext", PlainProtection), ("masking", MaskedProtection), ("he", HeProtection)],
)
def test_the_plan_picks_the_strategy(pki: FederationPaths, protection: str, strategy: type) -> None:
    store = MemoryStore(MemoryMedium(), tiny_plan(protection=protection, **MODES[protection]))
    trust = FederationTrust.from_files(pki.ca_cert, pki.revocation_list)

    chosen = protection_for(store, trust, _initial)

    assert type(chosen) is strategy
    assert chosen.holds_plaintext == (protection != "he")


def test_a_hidden_membership_plan_picks_the_hidden_strategy_and_its_grouping(
    pki: FederationPaths,
) -> None:
    plan = tiny_plan(
        algorithm="fedbiscuit",
        protection="masking",
        rounds=3,
        silos_per_round=6,
        min_silos=3,
        fedbiscuit={"clusters": 2, "min_cluster_silos": 3, "membership": "hidden"},
    )
    store = MemoryStore(MemoryMedium(), plan)
    trust = FederationTrust.from_files(pki.ca_cert, pki.revocation_list)

    chosen = protection_for(store, trust, _initial)
    edge = edge_for(chosen, RoundMachine(store, FakeClock(), protection=chosen), trust)

    assert (type(chosen), type(chosen.grouping), type(edge)) == (
        HiddenProtection,
        HiddenGrouping,
        HiddenEdge,
    )
    visible = MemoryStore(MemoryMedium(), tiny_plan(protection="masking", **MODES["masking"]))
    assert type(protection_for(visible, trust, _initial).grouping) is Grouping


def test_a_hidden_grouped_round_asks_every_grouped_silo(pki: FederationPaths) -> None:
    """A draw of silos_per_round could leave a cluster below its quorum; the silos' refusal
    of that round would tell the aggregator who is where, so grouped rounds ask everyone."""
    plan = tiny_plan(
        algorithm="fedbiscuit",
        protection="masking",
        rounds=8,
        silos_per_round=6,
        min_silos=3,
        fedbiscuit={"clusters": 2, "min_cluster_silos": 3, "membership": "hidden"},
    )
    store = MemoryStore(MemoryMedium(), plan)
    trust = FederationTrust.from_files(pki.ca_cert, pki.revocation_list)
    grouping = protection_for(store, trust, _initial).grouping
    grouped = tuple(f"silo-{i}" for i in range(1, 10))
    warmup = RoundState(Phase.TRAINING, round=0, attempt=0, started_at_s=0.0)
    after = RoundState(
        Phase.TRAINING,
        round=plan.fedbiscuit.warmup_rounds,
        attempt=0,
        started_at_s=0.0,
        grouped_silos=grouped,
    )

    assert len(grouping.sample(warmup, grouped)) == 6
    assert grouping.sample(after, grouped) == grouped


def test_a_masking_plan_never_runs_unprotected() -> None:
    store = MemoryStore(MemoryMedium(), tiny_plan(protection="masking", **MODES["masking"]))

    with pytest.raises(InvalidInput, match="'masking' plan needs its own protection"):
        RoundMachine(store, FakeClock())


def test_a_plaintext_federation_refuses_secure_aggregation_and_he_calls(
    pki: FederationPaths,
) -> None:
    store = MemoryStore(MemoryMedium(), tiny_plan())
    trust = FederationTrust.from_files(pki.ca_cert, pki.revocation_list)
    protection = protection_for(store, trust, _initial)
    edge = edge_for(protection, RoundMachine(store, FakeClock(), protection=protection), trust)

    with pytest.raises(FailedPrecondition, match="does not use homomorphic mode"):
        edge.he_keys("silo-1", pb.HeKeysRequest())
    with pytest.raises(FailedPrecondition, match="does not use secure aggregation"):
        edge.secagg_fetch("silo-1", pb.SecAggFetchRequest(), 0.0)
    with pytest.raises(FailedPrecondition, match="does not use membership-hiding groupings"):
        edge.grouping_fetch("silo-1", pb.GroupingFetchRequest(), 0.0)
    with pytest.raises(FailedPrecondition, match="does not use membership-hiding groupings"):
        edge.grouping_confirm("silo-1", pb.GroupingConfirmation())


def test_a_revocation_reaches_every_check_through_the_one_trust_view(
    pki: FederationPaths, tmp_path: Path
) -> None:
    revoked = tmp_path / "revoked.json"
    revoked.write_bytes(pki.revocation_list.read_bytes())
    trust = FederationTrust.from_files(pki.ca_cert, revoked)
    before = trust.revoked_serials()

    entry = RevokedCertificate(4242, "silo-9", datetime(2026, 1, 1, tzinfo=UTC))
    RevocationList.load(revoked).with_revoked(entry).save(revoked)

    assert 4242 not in before
    assert 4242 in trust.revoked_serials() and trust.revocations.is_revoked(4242)
