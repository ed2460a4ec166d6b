"""A masked federation over real mTLS: SecAgg+ between three silo agents and the aggregator.

What a user relies on: the globals move by exactly the mean of the silos' clipped, quantised
updates, while nothing the aggregator keeps (its database, blob files or logs) holds any
silo's individual update.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from aggregator.rounds.round_table import Phase
from privacy.ledger import Ledger
from privacy.pki import FederationPaths, issue_silo
from protos import codec
from protos.errors import FailedPrecondition
from protos.plan import FedBiscuitSpec, LossReportSpec, Plan, SecAggSpec
from selector.benchmark.generator import SiloData, make_federated_dataset
from silo.client import SiloClient
from silo.privacy_state import LEDGER_FILE
from silo.upload.masked import MaskedUpload
from tests.silo.conftest import (
    FEDERATION,
    AggregatorFactory,
    SiloConfigFactory,
    run_silos,
    stored_windows,
)

TIMEOUT_S = 120.0
SILOS = ("silo-1", "silo-2", "silo-3")


@pytest.fixture
def tiny_dataset() -> dict[str, SiloData]:
    """Six silos' benchmark data (masking needs at least three in every sum)."""
    return make_federated_dataset(num_silos=6, train_pairs=48, test_pairs=8, seed=0)


@pytest.fixture
def masked_plan(tiny_plan: Plan) -> Plan:
    fields = tiny_plan.model_dump(exclude={"protection", "secagg"})
    fields.update(silos_per_round=3, min_silos=3, secagg=SecAggSpec(phase_timeout_s=30.0))
    return Plan.model_validate(fields)


@pytest.fixture
def sent_uploads(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """What each real upload call hands the wire: its manifest, payload and example count."""
    sent: list[dict] = []
    upload_update = SiloClient.upload_update

    def recording(self: SiloClient, task, manifest, vector, **kwargs):
        sent.append({"manifest": manifest, "vector": vector.copy(), **kwargs})
        return upload_update(self, task, manifest, vector, **kwargs)

    monkeypatch.setattr(SiloClient, "upload_update", recording)
    return sent


def test_masked_rounds_move_the_globals_by_the_mean_update_the_aggregator_never_sees(
    tmp_path: Path,
    pki: FederationPaths,
    masked_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    recorded_updates: list[tuple[str, np.ndarray]],
    sent_uploads: list[dict],
    caplog: pytest.LogCaptureFixture,
) -> None:
    issue_silo(pki.root, "silo-3")
    caplog.set_level(logging.DEBUG)
    with aggregator(masked_plan) as server:
        configs = [silo_config(silo_id, server.port) for silo_id in SILOS]
        outcomes = run_silos(configs, timeout_s=TIMEOUT_S)
        phase = server.wait_until_finished(TIMEOUT_S)
        store = server.store
        before, after = (codec.flatten(store.load_globals(r))[1] for r in (0, 1))
        start_sha = store.globals_record(0).sha256
        submissions = store.submissions()
        for submission in submissions:
            with pytest.raises(FailedPrecondition, match="no stored update"):
                store.load_update(submission.task_id)

    assert outcomes == [0, 0, 0] and phase == Phase.DONE
    first_round = [delta for sha, delta in recorded_updates if sha == start_sha]
    assert len(first_round) == 3 and len(recorded_updates) == 6
    # Exact up to the encoding's resolution (2**-26 for preset "small") and float32 globals.
    expected = before.astype(np.float64) + np.mean(first_round, axis=0)
    np.testing.assert_allclose(after, expected, rtol=0, atol=1e-6)
    assert not np.allclose(after, before)

    # The aggregator recorded who uploaded, never what: no stored vector, and no run of any
    # silo's update values anywhere in its state directory or its logs.
    assert len(submissions) == 6
    # What went on the wire: uniformly random-looking ring words, no example counts.
    assert len(sent_uploads) == 6
    for sent in sent_uploads:
        words = sent["vector"]
        assert sent["manifest"].dtype == "uint32" and sent["num_examples"] is None
        assert words.dtype == np.uint32 and abs(words.mean() / 2**31 - 1) < 0.1
    persisted = b"".join(
        path.read_bytes() for path in (tmp_path / "aggregator").rglob("*") if path.is_file()
    )
    logs = caplog.text.encode()
    for _, delta in recorded_updates:
        for window in stored_windows(delta):
            assert window not in persisted and window not in logs

    for config in configs:
        ledger = Ledger.open(
            config.state_dir / LEDGER_FILE, federation_id=FEDERATION, silo_id=config.silo_id
        )
        assert [(e.round, e.mechanism) for e in ledger.entries] == [(0, "dp_sgd"), (1, "dp_sgd")]


def test_masked_fedbiscuit_sums_each_cluster_over_its_own_silos(
    tmp_path: Path,
    pki: FederationPaths,
    masked_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    recorded_updates: list[tuple[str, np.ndarray]],
) -> None:
    silos = [f"silo-{i}" for i in range(1, 7)]
    for silo_id in silos[2:]:
        issue_silo(pki.root, silo_id)
    fields = masked_plan.model_dump(exclude={"fedbiscuit"})
    fields.update(
        algorithm="fedbiscuit",
        rounds=3,
        silos_per_round=6,
        fedbiscuit=FedBiscuitSpec(
            clusters=2,
            regroup_every=1,
            assignment="optimal",
            min_cluster_silos=3,
            loss_report=LossReportSpec(clip=4.0, sample_size=32, noise_multiplier=4.0),
        ),
    )
    plan = Plan.model_validate(fields)
    with aggregator(plan) as server:
        outcomes = run_silos(
            [silo_config(silo_id, server.port) for silo_id in silos], timeout_s=TIMEOUT_S
        )
        phase = server.wait_until_finished(TIMEOUT_S)
        store, clusters = server.store, server.machine.state.clusters
        grouped = [
            (store.globals_record(2, k).sha256, *(codec.flatten(store.load_globals(r, k))[1]
             for r in (2, 3)))
            for k in range(2)
        ]  # fmt: skip

    assert outcomes == [0] * 6 and phase == Phase.DONE
    assert sorted(list(clusters.values()).count(k) for k in range(2)) == [3, 3]
    for start_sha, before, after in grouped:
        # Round 2 trains each cluster's adapter on its 3 silos: globals + sum / 3.
        deltas = [delta for sha, delta in recorded_updates if sha == start_sha]
        assert len(deltas) == 3
        expected = before.astype(np.float64) + np.sum(deltas, axis=0) / 3
        np.testing.assert_allclose(after, expected, rtol=0, atol=1e-6)


def test_a_silo_that_crashes_after_sharing_keys_is_unmasked_out_of_the_sum(
    pki: FederationPaths,
    masked_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    recorded_updates: list[tuple[str, np.ndarray]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    silos = [f"silo-{i}" for i in range(1, 5)]
    for silo_id in silos[2:]:
        issue_silo(pki.root, silo_id)
    plan = Plan.model_validate(
        {**masked_plan.model_dump(), "rounds": 1, "silos_per_round": 4, "round_deadline_s": 8.0}
    )
    send = MaskedUpload.send

    def crash_silo_4(self: MaskedUpload, *args, **kwargs):  # a fault injected on purpose
        if self._secagg.silo_id == "silo-4":
            raise RuntimeError("silo-4 lost power after sharing its keys")
        return send(self, *args, **kwargs)

    monkeypatch.setattr(MaskedUpload, "send", crash_silo_4)
    with aggregator(plan) as server:
        outcomes = run_silos(
            [silo_config(silo_id, server.port) for silo_id in silos], timeout_s=TIMEOUT_S
        )
        phase = server.wait_until_finished(TIMEOUT_S)
        store = server.store
        before, after = (codec.flatten(store.load_globals(r))[1] for r in (0, 1))
        uploaded = sorted(s.silo_id for s in store.submissions())

    assert outcomes[:3] == [0, 0, 0] and "lost power" in str(outcomes[3])
    assert phase == Phase.DONE and uploaded == silos[:3]
    # silo-4's pairwise masks were rebuilt from its neighbours' shares and removed: the
    # globals moved by the mean of the three survivors' updates (silo-4 trained one too).
    assert len(recorded_updates) == 4
    survivors = [delta for _, delta in recorded_updates]
    candidates = [
        np.mean([d for j, d in enumerate(survivors) if j != left_out], axis=0)
        for left_out in range(4)
    ]
    moved = after.astype(np.float64) - before
    assert min(np.abs(moved - mean).max() for mean in candidates) < 1e-6
