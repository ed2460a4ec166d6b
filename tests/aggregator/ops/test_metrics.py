"""The Prometheus endpoint after real rounds over mutual TLS, scraped as Prometheus would."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from privacy.pki import FederationPaths
from protos.v1 import federation_pb2 as pb

from ..conftest import SILOS, TIMEOUT_S, Federation, Silo

FED = {"federation": "fed-test"}
UPLOAD = "/fedbiscuit.v1.Federation/UploadUpdate"


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=TIMEOUT_S) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics[(name, frozenset(labels.items()))]


def train_tasks(silos: list[Silo]) -> list[tuple[Silo, pb.Task]]:
    """Every silo pulls once (before anyone uploads); the sampled ones with their task."""
    pulled = [(silo, silo.pull()) for silo in silos]
    return [(silo, task) for silo, task in pulled if task.kind == pb.TASK_KIND_TRAIN]


@pytest.fixture(scope="module")
def scraped(
    tmp_path_factory: pytest.TempPathFactory, pki: FederationPaths
) -> Iterator[dict[tuple[str, frozenset], float]]:
    """Round 0 is aggregated after 30 s. In round 1 one sampled silo declines, which leaves
    too few to reach min_silos: that attempt closes at once (the other sampled silo counts as
    dropped) and is re-run; nobody answers the re-run, which closes at its 60 s deadline."""
    federation = Federation(tmp_path_factory.mktemp("metrics"), pki)
    with federation._stack:
        yield scrape(drive_rounds(federation))


def drive_rounds(federation: Federation) -> int:
    """Run the scenario above; returns the metrics port."""
    federation.settings = {"metrics_address": "127.0.0.1:0"}
    server = federation.start()
    silos = federation.joined(server, SILOS)
    federation.clock.now += 30
    for silo, task in train_tasks(silos):
        _, start = silo.download(task)
        assert silo.upload(task, np.full_like(start, 0.5)).accepted
    (decliner, task), _silent = train_tasks(silos)
    assert decliner.decline(task, reason="policy_violation").accepted
    federation.clock.now += 61
    server.machine.tick()
    with pytest.raises(grpc.RpcError) as refused:
        federation.channel(server, "silo-1").unary_unary("/fedbiscuit.v1.Admin/Reset")(
            b"", timeout=TIMEOUT_S
        )
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as refused:
        silos[0].stub.Join(pb.JoinRequest(federation_id="another"), timeout=TIMEOUT_S)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    return server.metrics_port


def test_rounds_and_phase_are_reported(scraped) -> None:
    assert value(scraped, "fedbiscuit_rounds_completed_total", **FED) == 1
    assert value(scraped, "fedbiscuit_rounds_planned", **FED) == 2
    assert (
        value(scraped, "fedbiscuit_round", **FED),
        value(scraped, "fedbiscuit_attempt", **FED),
    ) == (1, 2)
    assert value(scraped, "fedbiscuit_phase", phase="TRAINING", **FED) == 1
    assert value(scraped, "fedbiscuit_phase", phase="DONE", **FED) == 0


def test_phase_durations_follow_the_federation_clock(scraped) -> None:
    training = {**FED, "phase": "TRAINING"}
    assert value(scraped, "fedbiscuit_phase_duration_seconds_count", **training) == 3
    assert value(scraped, "fedbiscuit_phase_duration_seconds_sum", **training) == 30 + 0 + 61
    assert value(scraped, "fedbiscuit_aggregation_seconds_count", **FED) == 1


def test_silos_active_dropped_and_refused_are_counted(scraped) -> None:
    assert value(scraped, "fedbiscuit_silos", state="joined", **FED) == 3
    assert value(scraped, "fedbiscuit_silos", state="active", **FED) == 3
    assert value(scraped, "fedbiscuit_silos", state="sampled", **FED) == 2
    assert value(scraped, "fedbiscuit_silos_dropped_total", phase="TRAINING", **FED) == 1 + 2
    assert value(scraped, "fedbiscuit_silo_declines_total", reason="policy_violation", **FED) == 1


def test_epsilon_per_silo_comes_from_the_verified_ledger(scraped) -> None:
    epsilons = {
        dict(labels)["silo"]: v
        for (name, labels), v in scraped.items()
        if name == "fedbiscuit_silo_epsilon"
    }
    assert epsilons == {silo: 0.5 for silo in epsilons} and len(epsilons) == 2
    for silo in epsilons:
        assert value(scraped, "fedbiscuit_silo_budget_epsilon", silo=silo, **FED) == 8.0
        assert value(scraped, "fedbiscuit_ledger_entries_total", silo=silo, **FED) == 1


def test_rpcs_and_bytes_are_counted_by_method_and_code(scraped) -> None:
    assert value(scraped, "fedbiscuit_rpcs_total", method=UPLOAD, code="OK") == 2
    join = "/fedbiscuit.v1.Federation/Join"
    assert value(scraped, "fedbiscuit_rpcs_total", method=join, code="OK") == 3
    assert value(scraped, "fedbiscuit_rpcs_total", method=join, code="FAILED_PRECONDITION") == 1
    assert value(scraped, "fedbiscuit_rpcs_total", method="other", code="UNIMPLEMENTED") == 1
    # Two uploads of the tiny selector's float32 delta (thousands of values) came in.
    assert value(scraped, "fedbiscuit_rpc_received_bytes_total", method=UPLOAD) > 2 * 4 * 1000
    download = "/fedbiscuit.v1.Federation/DownloadGlobals"
    assert value(scraped, "fedbiscuit_rpc_sent_bytes_total", method=download) > 2 * 4 * 1000
