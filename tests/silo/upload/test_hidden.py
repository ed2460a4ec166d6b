"""Membership-hiding FedBiscuit between six real silo agents and the aggregator over mTLS.

What a user relies on: the silos group themselves (every one confirms and keeps the same
view, each knows its own cluster from its state dir), every grouped round moves each
cluster's adapter by the mean of its members' updates exactly as per-cluster masking would,
every silo uploads the same number of bytes whatever its cluster, and the aggregator keeps
and logs no loss value and no silo's cluster.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from aggregator.rounds.round_table import Phase
from privacy.ledger import Ledger
from privacy.membership import (
    CandidateRoster,
    GroupingAborted,
    GroupingContext,
    GroupingMember,
    GroupingRelay,
    GroupingView,
    MemberIdentity,
    view_to_bytes,
)
from privacy.pki import FederationPaths, issue_silo
from privacy.re_release import hidden_release_binding, release_binding
from protos import codec
from protos.errors import InvalidInput
from protos.plan import FedBiscuitSpec, LossReportSpec, Plan, SecAggSpec
from protos.v1 import federation_pb2 as pb
from selector.benchmark.generator import SiloData, make_federated_dataset
from silo.agent import silo_status
from silo.client import SiloClient
from silo.config import SiloConfig
from silo.grouping_store import GroupingStore
from silo.identity import SiloIdentity
from silo.privacy_state import LEDGER_FILE
from silo.upload import UploadContext, uploader_class
from silo.upload.hidden import HiddenUploader
from tests.silo.conftest import (
    FEDERATION,
    AggregatorFactory,
    SiloConfigFactory,
    connect,
    run_silos,
)

TIMEOUT_S = 180.0
SILOS = tuple(f"silo-{i}" for i in range(1, 7))
K = 2


@pytest.fixture
def tiny_dataset() -> dict[str, SiloData]:
    """Six silos' benchmark data (two clusters of at least three silos each)."""
    return make_federated_dataset(num_silos=6, train_pairs=48, test_pairs=8, seed=0)


@pytest.fixture
def hidden_plan(tiny_plan: Plan) -> Plan:
    """K=2: warm-up rounds 0 and 1, a grouping before round 2, one grouped round."""
    fields = tiny_plan.model_dump(exclude={"protection", "secagg"})
    fields.update(
        algorithm="fedbiscuit",
        rounds=3,
        silos_per_round=6,
        min_silos=3,
        secagg=SecAggSpec(phase_timeout_s=30.0),
        fedbiscuit=FedBiscuitSpec(
            clusters=K,
            regroup_every=1,
            assignment="optimal",
            min_cluster_silos=3,
            membership="hidden",
            loss_report=LossReportSpec(clip=4.0, sample_size=32, noise_multiplier=4.0),
        ),
    )
    return Plan.model_validate(fields)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """What the silos' real client calls hand the wire: uploads and loss reports."""
    sent: dict[str, list] = {"uploads": [], "reports": []}
    upload_update, report_losses = SiloClient.upload_update, SiloClient.report_losses

    def recording_upload(self: SiloClient, task, manifest, vector, **kwargs):
        sent["uploads"].append((task.round, manifest, vector.copy()))
        return upload_update(self, task, manifest, vector, **kwargs)

    def recording_report(self: SiloClient, task, losses, ledger_entries, sealed=None):
        sent["reports"].append((task.round, list(losses), dict(sealed or {})))
        return report_losses(self, task, losses, ledger_entries, sealed)

    monkeypatch.setattr(SiloClient, "upload_update", recording_upload)
    monkeypatch.setattr(SiloClient, "report_losses", recording_report)
    return sent


def _ledger(config: SiloConfig) -> list:
    path = config.state_dir / LEDGER_FILE
    return list(Ledger.open(path, federation_id=FEDERATION, silo_id=config.silo_id).entries)


def test_silos_group_themselves_and_train_their_clusters_while_the_aggregator_sees_sizes_only(
    tmp_path: Path,
    pki: FederationPaths,
    hidden_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    recorded_updates: list[tuple[str, np.ndarray]],
    wire: dict[str, list],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for silo_id in SILOS[2:]:
        issue_silo(pki.root, silo_id)
    caplog.set_level(logging.DEBUG)
    with aggregator(hidden_plan, export_dir=tmp_path / "selectors") as server:
        configs = [silo_config(silo_id, server.port) for silo_id in SILOS]
        outcomes = run_silos(configs, timeout_s=TIMEOUT_S, wait_ms=2_000)
        assert outcomes == [0] * 6, outcomes
        phase = server.wait_until_finished(TIMEOUT_S)
        store = server.store
        grouped = [
            (store.globals_record(2, k).sha256, *(codec.flatten(store.load_globals(r, k))[1]
             for r in (2, 3)))
            for k in range(K)
        ]  # fmt: skip
        globals_2 = [store.globals_record(2, k).sha256 for k in range(K)]

    assert phase == Phase.DONE

    # Every silo confirmed and kept the very same view; each knows its own cluster.
    views = {c.silo_id: GroupingStore(c.state_dir).load_view() for c in configs}
    first = views[SILOS[0]]
    assert first is not None and first.silo_ids == SILOS and first.sizes == (3, 3)
    method, min_silos = "optimal", 3
    for config in configs:
        view = views[config.silo_id]
        assert view is not None and view.digest == first.digest
        assert view_to_bytes(view, method, min_silos) == view_to_bytes(first, method, min_silos)
        status = silo_status(config)
        assert status.cluster == first.cluster_of(config.silo_id) and status.grouping_round == 2

    # Each cluster's adapter moved by the mean of its three members' updates.
    for start_sha, before, after in grouped:
        deltas = [delta for sha, delta in recorded_updates if sha == start_sha]
        assert len(deltas) == 3
        expected = before.astype(np.float64) + np.sum(deltas, axis=0) / 3
        np.testing.assert_allclose(after, expected, rtol=0, atol=1e-6)

    # Loss reports left sealed, one blob per other silo; never a value in the clear.
    reports = [r for r in wire["reports"] if r[0] == 2]
    assert len(reports) == 6
    assert all(losses == [] and len(sealed) == 5 for _, losses, sealed in reports)

    # The grouped round's uploads: ring words, all of one size, K slots + count + sizes.
    uploads = [(manifest, vector) for r, manifest, vector in wire["uploads"] if r == 2]
    dim = grouped[0][1].size
    assert len(uploads) == 6
    assert {(m.layout(), m.dtype, v.nbytes) for m, v in uploads} == {
        ((codec.TensorSpec("k_slots", (K * dim + 2 * K,)),), "uint32", 4 * (K * dim + 2 * K))
    }

    # Every silo's DP-SGD release of the grouped round names no adapter: one binding for all.
    binding = hidden_release_binding(FEDERATION, hidden_plan.sha256(), 2, globals_2)
    for config in configs:
        entries = _ledger(config)
        assert [(e.round, e.mechanism) for e in entries] == [
            (0, "dp_sgd"), (1, "dp_sgd"), (2, "gaussian"), (2, "dp_sgd"),
        ]  # fmt: skip
        assert entries[-1].release_binding == binding
    assert binding not in {
        release_binding(FEDERATION, hidden_plan.sha256(), 2, k, sha)
        for k, sha in enumerate(globals_2)
    }

    # The aggregator keeps and logs no loss value and no silo's cluster.
    persisted = b"".join(
        path.read_bytes() for path in (tmp_path / "aggregator").rglob("*") if path.is_file()
    )
    exported = b"".join(
        path.read_bytes() for path in (tmp_path / "selectors").rglob("*") if path.is_file()
    )
    logs = caplog.records
    aggregator_logs = "\n".join(
        r.getMessage() for r in logs if r.name.startswith("aggregator")
    ).encode()
    for value in first.matrix.losses.ravel():
        for form in (np.float64(value).tobytes(), repr(float(value)).encode()):
            assert form not in persisted and form not in aggregator_logs
            assert form not in exported
    for silo_id in SILOS:
        cluster = first.cluster_of(silo_id)
        for text in (f"{silo_id}={cluster}", f'"{silo_id}": {cluster}', f"{silo_id} cluster"):
            assert text.encode() not in aggregator_logs and text.encode() not in exported
    assert b"cluster sizes=3,3" in aggregator_logs


def _confirmed_views(
    configs: list[SiloConfig], plan: Plan, losses: dict[str, list[float]]
) -> dict[str, GroupingView]:
    """A grouping run in memory between the silos' real identities (the relay standing in
    for the aggregator): every silo's confirmed view."""
    identities = {c.silo_id: SiloIdentity.load(c) for c in configs}
    me = {
        s: MemberIdentity(s, i.cert_pem, i.key, i.ca_cert, i.now()) for s, i in identities.items()
    }
    context = GroupingContext(FEDERATION, 2, 0, plan.sha256(), K)
    roster = CandidateRoster(context, {s: i.cert_pem for s, i in identities.items()})
    first = next(iter(identities.values()))
    relay = GroupingRelay(roster, 3, first.ca_cert, first.now())
    members = {s: GroupingMember(me[s], roster, 3, "optimal") for s in identities}
    for silo_id, member in members.items():
        relay.receive_reports(silo_id, member.report(losses[silo_id]))
    final = relay.close_reports()
    for silo_id in final:
        relay.receive_confirmation(silo_id, members[silo_id].open(final, relay.inbox(silo_id)))
    confirmations = relay.close_confirmations()
    return {s: members[s].check(confirmations) for s in final}


def test_a_grouped_round_under_another_grouping_is_refused_and_names_no_adapter(
    pki: FederationPaths, hidden_plan: Plan, silo_config: SiloConfigFactory
) -> None:
    for silo_id in SILOS[2:]:
        issue_silo(pki.root, silo_id)
    configs = [silo_config(silo_id, 1) for silo_id in SILOS]
    rng = np.random.default_rng(5)
    views = _confirmed_views(
        configs, hidden_plan, {s: list(rng.normal(0.7, 0.1, K)) for s in SILOS}
    )
    config = configs[0]
    view = views[config.silo_id]
    GroupingStore(config.state_dir).save_view(view, "optimal", 3)
    assert uploader_class(hidden_plan) is HiddenUploader
    uploader = HiddenUploader(
        UploadContext(
            config, SiloIdentity.load(config), connect(config), hidden_plan,
            hidden_plan.sha256(), threading.Event(), 0, 48,
        )
    )  # fmt: skip
    assert uploader.view is not None and uploader.view.digest == view.digest
    globals_sha = ["a" * 64, "b" * 64]

    def train_task(round_: int, digest: bytes) -> pb.Task:
        return pb.Task(
            kind=pb.TASK_KIND_TRAIN, task_id=f"t{round_}", round=round_,
            plan_sha256=hidden_plan.sha256(), adapter_sha256=globals_sha,
            secagg=pb.SecAggContext(grouping_digest=digest),
        )  # fmt: skip

    assert uploader.refusal(train_task(2, view.digest)) is None
    refusal = uploader.refusal(train_task(2, bytes(32))) or ""
    assert f"not the {view.digest.hex()[:12]}" in refusal
    # The release binding of a grouped round is the same whichever cluster the silo is in.
    binding = uploader.release_binding(train_task(2, view.digest))
    assert binding == hidden_release_binding(FEDERATION, hidden_plan.sha256(), 2, globals_sha)
    assert binding not in {
        release_binding(FEDERATION, hidden_plan.sha256(), 2, k, sha)
        for k, sha in enumerate(globals_sha)
    }
    # Warm-up rounds are plain masked rounds: the aggregator chose the adapter.
    warmup = pb.Task(
        kind=pb.TASK_KIND_TRAIN, task_id="w", round=1, plan_sha256=hidden_plan.sha256(),
        globals_sha256="c" * 64, adapter_index=1,
    )  # fmt: skip
    assert uploader.refusal(warmup) is None
    assert uploader.release_binding(warmup) == release_binding(
        FEDERATION, hidden_plan.sha256(), 1, 1, "c" * 64
    )
    # A damaged view file never puts the silo in another cluster: it is refused on load.
    path = config.state_dir / "grouping_view.json"
    path.write_bytes(path.read_bytes().replace(b'"optimal"', b'"greedy"'))
    with pytest.raises(InvalidInput, match="does not reproduce its confirmed digest"):
        GroupingStore(config.state_dir).load_view()
    restarted = HiddenUploader(uploader._context)
    assert restarted.view is None
    assert "holds no confirmed grouping" in (restarted.refusal(train_task(2, view.digest)) or "")


def test_a_retried_grouping_re_sends_the_paid_loss_report_without_a_new_release(
    tmp_path: Path,
    pki: FederationPaths,
    hidden_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    wire: dict[str, list],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for silo_id in SILOS[2:]:
        issue_silo(pki.root, silo_id)
    plan = hidden_plan.model_copy(
        update={"secagg": SecAggSpec(phase_timeout_s=5.0)}
    )  # short confirmation deadline: the faulty first attempt aborts quickly
    plan = Plan.model_validate(plan.model_dump())
    open_reports = GroupingMember.open
    faults = []

    def silo_6_aborts_once(self: GroupingMember, final_roster, inbox):  # a fault on purpose
        if self._me.silo_id == "silo-6" and not faults:
            faults.append(final_roster)
            raise GroupingAborted("silo-6 was shown a tampered report (injected)")
        return open_reports(self, final_roster, inbox)

    monkeypatch.setattr(GroupingMember, "open", silo_6_aborts_once)
    with aggregator(plan) as server:
        configs = [silo_config(silo_id, server.port) for silo_id in SILOS]
        outcomes = run_silos(configs, timeout_s=TIMEOUT_S, wait_ms=2_000)
        assert outcomes == [0] * 6, outcomes
        assert server.wait_until_finished(TIMEOUT_S) == Phase.DONE

    assert faults, "the fault was never injected"
    # Two grouping attempts of round 2, each with a sealed report of every silo...
    reports = [(r, sealed) for r, _, sealed in wire["reports"] if r == 2]
    assert len(reports) == 12
    # ...but one paid loss report per silo: the retry re-sent the same values, unpaid.
    for config in configs:
        assert [(e.round, e.mechanism) for e in _ledger(config)] == [
            (0, "dp_sgd"), (1, "dp_sgd"), (2, "gaussian"), (2, "dp_sgd"),
        ]  # fmt: skip
    views = [GroupingStore(c.state_dir).load_view() for c in configs]
    assert len({v.digest for v in views if v is not None}) == 1 and None not in views
    assert all(v.roster.context.attempt >= 1 for v in views if v is not None)
