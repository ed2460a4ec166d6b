"""Membership-hiding FedBiscuit on the aggregator: the grouping relay and the K-slot rounds,
driven over mTLS by in-process silos built from privacy.membership (hidden_silos.py).

Each federation starts from the state a real aggregator holds after warm-up (silos joined,
round K·w's globals stored, no grouping yet), so the grouping is the next thing that runs.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from aggregator.federation_trust import FederationTrust
from aggregator.ops.status import read_status
from aggregator.protection.choose import protection_for
from aggregator.rounds.fedavg import add_summed_deltas
from aggregator.rounds.round_table import Phase, RoundState
from aggregator.rpc.server import AggregatorServer
from aggregator.store import MemoryMedium, MemoryStore, SqliteStore
from privacy.membership import Confirmation, KSlotLayout
from privacy.pki import (
    FederationPaths,
    RevocationList,
    RevokedCertificate,
    init_ca,
    issue_aggregator,
    issue_silo,
)
from privacy.re_release import release_binding
from privacy.secagg import for_plan
from privacy.secagg import wire as secagg_wire
from protos import codec
from protos.v1 import federation_pb2 as pb
from protos.v1 import federation_pb2_grpc as pb_grpc
from tests.request_fuzzer import run, seeds_for

from ..conftest import FEDERATION_ID, TIMEOUT_S, Federation, tiny_plan
from .hidden_silos import HiddenSilo, run_grouping, run_hidden_round

SILO_IDS = tuple(f"silo-{i:02d}" for i in range(1, 11))
PHASE_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def hidden_pki(tmp_path_factory: pytest.TempPathFactory) -> FederationPaths:
    paths = init_ca(tmp_path_factory.mktemp("pki") / "fed", FEDERATION_ID)
    issue_aggregator(paths.root)
    for silo in SILO_IDS:
        issue_silo(paths.root, silo)
    return paths


def hidden_federation(root: Path, pki: FederationPaths, clusters: int, silos: int) -> Federation:
    federation = Federation(root, pki)
    federation.plan = tiny_plan(
        algorithm="fedbiscuit",
        protection="masking",
        rounds=clusters + 1,  # warm-up, then one round under the grouping
        silos_per_round=silos,
        min_silos=3,
        secagg={"phase_timeout_s": PHASE_TIMEOUT_S},
        fedbiscuit={"clusters": clusters, "min_cluster_silos": 3, "membership": "hidden"},
    )
    federation.clock.now = time.time()  # certificates are checked at the aggregator's clock
    return federation


def start_after_warmup(federation: Federation, silo_ids: tuple[str, ...]) -> AggregatorServer:
    """Join `silo_ids`, then restart the aggregator on the state warm-up leaves behind."""
    server = federation.start()
    federation.joined(server, silo_ids)
    server.stop(0)
    plan, rng = federation.plan, np.random.default_rng(7)
    store = SqliteStore.create(federation.root / "state", plan)
    try:
        first = plan.fedbiscuit.warmup_rounds
        for k in range(plan.adapters):
            tensors = store.load_globals(0, k)
            moved = {
                n: (t + rng.normal(0, 0.1, t.shape)).astype(t.dtype) for n, t in tensors.items()
            }
            store.put_globals(first, moved, k)
        store.save_state(
            RoundState(Phase.WAITING_FOR_SILOS, first, 0, federation.clock.now).to_dict()
        )
    finally:
        store.close()
    return federation.start()


def hidden_silos(federation: Federation, server: AggregatorServer, ids: tuple[str, ...]):
    return [HiddenSilo(federation, federation.silo(server, silo_id)) for silo_id in ids]


def random_losses(ids: tuple[str, ...], clusters: int, seed: int = 0) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {s: list(rng.uniform(0.2, 2.0, clusters)) for s in ids}


def on_grid_deltas(ids: tuple[str, ...], dim: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Deltas on a 2**-12 grid, so every encoding and sum of them is exact."""
    rng = np.random.default_rng(seed)
    return {s: np.round(rng.normal(0, 0.05, dim) * 2**12) / 2**12 for s in ids}


@pytest.fixture
def seven(tmp_path: Path, hidden_pki: FederationPaths):
    """K = 2 over 7 silos (clusters of 4 and 3), started right before its first grouping."""
    federation = hidden_federation(tmp_path, hidden_pki, clusters=2, silos=7)
    with federation._stack:
        server = start_after_warmup(federation, SILO_IDS[:7])
        yield federation, server, hidden_silos(federation, server, SILO_IDS[:7])


def test_a_hidden_grouping_agrees_and_the_state_keeps_only_its_digest_and_roster(seven) -> None:
    federation, server, silos = seven
    ids = tuple(s.silo_id for s in silos)

    run_grouping(silos, random_losses(ids, 2))

    state = server.machine.state
    digest = silos[0].view.digest
    assert state.phase == Phase.TRAINING and state.grouped_round == 2
    assert (state.grouping_digest, state.grouped_silos, state.assignment) == (digest.hex(), ids, ())
    assert silos[0].view.sizes in ((4, 3), (3, 4))
    task = silos[0].pull_train()
    assert task.secagg.grouping_digest == digest and task.globals_sha256 == ""
    assert task.adapter_index == 0 and len(task.adapter_sha256) == 2


def test_a_loss_report_in_the_clear_or_misaddressed_is_refused(seven) -> None:
    _, _, silos = seven
    with pytest.raises(grpc.RpcError) as clear:
        silos[0].report([0.5, 0.7], losses=[0.5, 0.7])
    assert clear.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "losses` must be empty" in clear.value.details()

    sealed = {s.silo_id: b"x" for s in silos[2:]}  # not addressed to silo-02
    with pytest.raises(grpc.RpcError) as misaddressed:
        silos[1].report([0.5, 0.7], sealed=sealed)
    assert misaddressed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sealed to every other candidate" in misaddressed.value.details()


def test_a_withheld_confirmation_aborts_and_the_grouping_is_retried(seven) -> None:
    federation, server, silos = seven
    ids = tuple(s.silo_id for s in silos)
    losses = random_losses(ids, 2)
    for silo in silos:
        silo.report(losses[silo.silo_id])
    for silo in silos[1:]:  # silo-01 opens its inbox but withholds its confirmation
        silo.confirm()
    early = silos[1].fetch(pb.GROUPING_STAGE_CONFIRMATIONS)
    assert not early.aborted and early.retry_after_ms and not early.confirmations

    federation.clock.now += PHASE_TIMEOUT_S
    server.machine.tick()
    aborted = silos[1].fetch(pb.GROUPING_STAGE_CONFIRMATIONS)

    assert aborted.aborted and "silo-01" in aborted.message
    state = server.machine.state
    assert state.phase == Phase.GROUPING and state.attempt == 1 and state.grouping_digest == ""
    run_grouping(silos, losses)  # attempt 1: new tasks, new roster context, everyone confirms
    assert {s.task.grouping.attempt for s in silos} == {1}
    assert server.machine.state.grouping_digest == silos[0].view.digest.hex()


def test_a_dissenting_confirmation_aborts_the_grouping(seven) -> None:
    federation, server, silos = seven
    ids = tuple(s.silo_id for s in silos)
    for silo in silos:
        silo.report(random_losses(ids, 2)[silo.silo_id])
    for silo in silos[1:]:
        silo.confirm()
    forged = Confirmation("silo-01", bytes(32), b"not a signature")
    silos[0].confirm(forged)

    reply = silos[2].fetch(pb.GROUPING_STAGE_CONFIRMATIONS)

    assert reply.aborted
    assert server.machine.state.phase == Phase.GROUPING and server.machine.state.attempt == 1


def test_a_restart_mid_grouping_reruns_it_as_a_new_attempt(seven) -> None:
    federation, server, silos = seven
    ids = tuple(s.silo_id for s in silos)
    losses = random_losses(ids, 2)
    for silo in silos[:4]:
        silo.report(losses[silo.silo_id])
    server.stop(0)

    server = federation.start()
    silos = hidden_silos(federation, server, ids)
    run_grouping(silos, losses)

    assert {s.task.grouping.attempt for s in silos} == {1}
    assert server.machine.state.phase == Phase.TRAINING


def test_a_silo_that_does_not_report_is_left_off_the_final_roster(
    tmp_path: Path, hidden_pki: FederationPaths
) -> None:
    federation = hidden_federation(tmp_path, hidden_pki, clusters=2, silos=6)
    with federation._stack:
        server = start_after_warmup(federation, SILO_IDS[:7])
        silos = hidden_silos(federation, server, SILO_IDS[:7])
        ids = tuple(s.silo_id for s in silos)
        losses = random_losses(ids, 2)
        for silo in silos[:6]:
            silo.report(losses[silo.silo_id])
        late = silos[6]
        late.task = late.silo.pull()
        federation.clock.now += federation.plan.round_deadline_s
        server.machine.tick()

        shut_out = late.fetch(pb.GROUPING_STAGE_INBOX)
        for silo in silos[:6]:
            silo.confirm()
        for silo in silos[:6]:
            silo.check()

        assert shut_out.aborted and "not on the final roster" in shut_out.message
        assert server.machine.state.grouped_silos == ids[:6]


def test_a_restart_mid_round_reruns_it_under_the_same_grouping(seven) -> None:
    federation, server, silos = seven
    ids = tuple(s.silo_id for s in silos)
    run_grouping(silos, random_losses(ids, 2))
    before = [silo.pull_train() for silo in silos]
    for silo in silos[:3]:
        silo.submit("advertisement", secagg_wire.advertisement_to_proto(silo.secagg.advertise()))
    server.stop(0)

    server = federation.start()
    for silo in silos:  # the same silos (views, ledgers), reconnected
        silo.silo.stub = pb_grpc.FederationStub(federation.channel(server, silo.silo_id))
    dim = server.machine.globals_vector(server.machine.state.round, 0)[1].size
    run_hidden_round(silos, on_grid_deltas(ids, dim))

    after = [silo.task for silo in silos]
    digest = silos[0].view.digest
    assert {t.secagg.grouping_digest for t in before + after} == {digest}
    assert {t.task_id for t in after}.isdisjoint(t.task_id for t in before)
    assert after[0].secagg.seed != before[0].secagg.seed
    assert server.machine.state.phase == Phase.DONE


def test_a_hidden_round_takes_only_k_slot_uploads(seven) -> None:
    federation, server, silos = seven
    ids = tuple(s.silo_id for s in silos)
    run_grouping(silos, random_losses(ids, 2))
    silo = silos[0]
    silo.pull_train()
    adapter_layout = server.machine.globals_layout(silo.task.round, 0)
    words = np.zeros(sum(spec.size for spec in adapter_layout), dtype=np.uint32)

    with pytest.raises(grpc.RpcError) as refused:  # one adapter's shape would name the cluster
        silo.upload_words(adapter_layout, words)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unexpected tensor" in refused.value.details()


def test_a_k_slot_sum_with_disagreeing_sizes_changes_no_cluster(seven) -> None:
    federation, server, silos = seven
    ids = tuple(s.silo_id for s in silos)
    run_grouping(silos, random_losses(ids, 2))
    round_ = server.machine.state.round
    starts = [server.machine.globals_vector(round_, k)[1] for k in range(2)]
    liar = silos[0]
    lie = tuple(reversed(liar.view.sizes))  # (3, 4) for (4, 3): a silo outside the grouping

    run_hidden_round(silos, on_grid_deltas(ids, starts[0].size), {liar.silo_id: lie})

    assert server.machine.state.phase == Phase.DONE
    for k in range(2):
        np.testing.assert_array_equal(server.machine.globals_vector(round_ + 1, k)[1], starts[k])


def test_a_hidden_release_must_be_bound_to_all_k_globals(seven) -> None:
    federation, server, silos = seven
    ids = tuple(s.silo_id for s in silos)
    run_grouping(silos, random_losses(ids, 2))
    silo = silos[0]
    task = silo.pull_train()
    plan = federation.plan
    cluster = silo.view.cluster_of(silo.silo_id)
    naming = release_binding(  # a binding that would tell the aggregator the silo's adapter
        plan.federation_id, plan.sha256(), task.round, cluster, task.adapter_sha256[cluster]
    )
    length = KSlotLayout.for_encoding(
        server.machine.globals_vector(task.round, 0)[1].size, 2, for_plan(plan).encoding
    ).length
    words = np.zeros(length, dtype=np.uint32)

    with pytest.raises(grpc.RpcError) as refused:
        silo.upload_words((codec.TensorSpec("k_slots", (length,)),), words, naming)

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "bound to another round, adapter or global" in refused.value.details()


@pytest.mark.parametrize(("clusters", "count"), [(2, 7), (3, 10)])  # 4+3 and 4+3+3
def test_a_hidden_round_gives_exactly_the_per_cluster_masking_globals(
    tmp_path: Path, hidden_pki: FederationPaths, clusters: int, count: int
) -> None:
    federation = hidden_federation(tmp_path, hidden_pki, clusters, count)
    with federation._stack:
        server = start_after_warmup(federation, SILO_IDS[:count])
        silos = hidden_silos(federation, server, SILO_IDS[:count])
        ids = tuple(s.silo_id for s in silos)
        run_grouping(silos, random_losses(ids, clusters))
        round_ = server.machine.state.round
        starts = [server.machine.globals_vector(round_, k)[1] for k in range(clusters)]
        deltas = on_grid_deltas(ids, starts[0].size)

        run_hidden_round(silos, deltas)

        view = silos[0].view
        assert sorted(view.sizes, reverse=True) == [4] + [3] * (clusters - 1)
        assert server.machine.state.phase == Phase.DONE
        for k in range(clusters):
            members = [s for s in ids if view.cluster_of(s) == k]
            total = np.sum([deltas[s] for s in members], axis=0)
            # What per-cluster masking computes for cluster k (the masked rule; equal in the
            # integer ring, tests/privacy/membership/test_k_slots.py)
            expected = add_summed_deltas(starts[k], total, len(members))
            np.testing.assert_array_equal(server.machine.globals_vector(round_ + 1, k)[1], expected)


def test_the_aggregator_keeps_no_loss_and_no_membership(
    tmp_path: Path, hidden_pki: FederationPaths, caplog: pytest.LogCaptureFixture
) -> None:
    federation = hidden_federation(tmp_path, hidden_pki, clusters=2, silos=7)
    federation.settings = {"metrics_address": "127.0.0.1:0"}
    caplog.set_level(logging.DEBUG)
    with federation._stack:
        server = start_after_warmup(federation, SILO_IDS[:7])
        silos = hidden_silos(federation, server, SILO_IDS[:7])
        ids = tuple(s.silo_id for s in silos)
        losses = random_losses(ids, 2, seed=3)
        run_grouping(silos, losses)
        dim = server.machine.globals_vector(server.machine.state.round, 0)[1].size
        run_hidden_round(silos, on_grid_deltas(ids, dim))
        url = f"http://127.0.0.1:{server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
            metrics = reply.read()
        server.stop(0)

        view = silos[0].view
        recorded = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
        recorded += [caplog.text.encode(), metrics]
        blob = b"\n".join(recorded)
        for value in (v for vector in losses.values() for v in vector):
            assert repr(value).encode() not in blob
            assert np.float64(value).tobytes() not in blob
        for silo in ids:
            cluster = view.cluster_of(silo)
            for pattern in (f"{silo}:{cluster}", f'"{silo}": {cluster}', f'"{silo}":{cluster}'):
                assert pattern.encode() not in blob
        assert server.machine.state.phase == Phase.DONE
        assert server.machine.state.assignment == ()
        status = read_status(tmp_path / "state")
        assert (status.membership, status.clusters, status.grouped_silos) == ("hidden", (), 7)
        assert status.cluster_sizes == view.sizes == status.cluster_participants
        assert {silo.cluster for silo in status.silos} == {None}
        exported = json.loads((tmp_path / "selector" / "selectors.json").read_text())
        assert exported["clusters"] == {} and len(exported["selectors"]) == 2
        sizes = {
            (sample.labels["cluster"], sample.labels["kind"]): sample.value
            for family in text_string_to_metric_families(metrics.decode())
            if family.name == "fedbiscuit_cluster_silos"
            for sample in family.samples
        }
        assert sizes == {
            (str(k), kind): view.sizes[k] for k in range(2) for kind in ("size", "participants")
        }


def test_fuzzed_requests_mid_grouping_never_crash_the_aggregator(
    seven, caplog: pytest.LogCaptureFixture
) -> None:
    federation, server, silos = seven
    ids = tuple(s.silo_id for s in silos)
    losses = random_losses(ids, 2)
    for silo in silos:
        silo.report(losses[silo.silo_id])
    fuzzer = silos[0]
    header = pb.UpdateHeader(federation_id=FEDERATION_ID, task_id=fuzzer.task.task_id)
    seeds = seeds_for(fuzzer.task, header, b"\0" * 8, fuzzer.silo.entries[-1].to_line())
    caplog.set_level(logging.INFO)

    tally = run(federation.channel(server, fuzzer.silo_id), seeds, 200, seed=16)

    codes = {code for (_, code) in tally}
    assert not codes & {"INTERNAL", "UNKNOWN"}, tally
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert {method for method, _ in tally} >= {"GroupingFetch", "GroupingConfirm", "ReportLosses"}


def test_silos_without_a_usable_certificate_are_never_grouped(
    tmp_path: Path, hidden_pki: FederationPaths
) -> None:
    plan = hidden_federation(tmp_path, hidden_pki, clusters=2, silos=6).plan
    revoked = tmp_path / "revoked.json"
    revoked.write_bytes(hidden_pki.revocation_list.read_bytes())
    store = MemoryStore(MemoryMedium(), plan)
    protection = protection_for(
        store,
        FederationTrust.from_files(hidden_pki.ca_cert, revoked),
        lambda k: {"w": np.zeros(4, np.float32)},
    )
    for silo in SILO_IDS[:7]:
        store.join_silo(silo, 0.0)
    for silo in SILO_IDS[:6]:  # silo-07 never presented a certificate
        protection.grouping.remember_certificate(silo, hidden_pki.silo_cert(silo).read_bytes())
    assert protection.excluded() == {"silo-07"}

    pem = hidden_pki.silo_cert("silo-06").read_bytes()
    serial = x509.load_pem_x509_certificate(pem).serial_number
    entry = RevokedCertificate(serial, "silo-06", datetime(2026, 1, 1, tzinfo=UTC))
    RevocationList.load(revoked).with_revoked(entry).save(revoked)

    assert protection.excluded() == {"silo-06", "silo-07"}
