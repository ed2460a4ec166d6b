"""The silo's gRPC client: verified downloads, our errors with the server's message, and
retries with backoff for transient failures only (against the real aggregator over mTLS)."""

from __future__ import annotations

import random
import socket
import threading

import grpc
import pytest

from privacy.pki import FederationPaths, channel_credentials, revoke
from protos.errors import FailedPrecondition, InvalidInput, NotAuthenticated
from protos.plan import Plan
from protos.v1 import federation_pb2 as pb
from silo.client import RetryPolicy
from silo.rpc_errors import AggregatorUnavailable
from tests.silo.conftest import AggregatorFactory, SiloConfigFactory, connect

SOLO = {"silos_per_round": 1, "min_silos": 1}


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_aggregator_is_retried_with_growing_backoff_then_reported(
    silo_config: SiloConfigFactory,
) -> None:
    config = silo_config("silo-1", _unused_port())
    delays: list[float] = []
    retry = RetryPolicy(max_attempts=4, initial_backoff_s=1.0, max_backoff_s=3.0)

    with (
        connect(config, retry=retry, rng=random.Random(0), sleep=delays.append) as client,
        pytest.raises(AggregatorUnavailable, match=r"unreachable for Join after 4 attempts"),
    ):
        client.join()

    assert len(delays) == 3
    for attempt, delay in enumerate(delays):
        ceiling = min(3.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_by_default_a_silo_waits_for_its_aggregator_and_logs_at_growing_intervals(
    silo_config: SiloConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    config = silo_config("silo-1", _unused_port())
    delays: list[float] = []

    def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 60:  # an hour of backoff later: the operator's patience, not ours
            raise KeyboardInterrupt

    with (
        caplog.at_level("WARNING", logger="silo.client"),
        connect(config, rng=random.Random(0), sleep=sleep) as client,
        pytest.raises(KeyboardInterrupt),
    ):
        client.join()

    assert max(delays) <= 30.0 and sum(delays) > 20 * 60
    lines = [r.getMessage() for r in caplog.records]
    assert 5 <= len(lines) <= 15  # not one per attempt
    assert "aggregator localhost" in lines[0] and "waiting for it" in lines[0]


def test_aggregator_wait_s_bounds_the_wait(silo_config: SiloConfigFactory) -> None:
    config = silo_config("silo-1", _unused_port()).model_copy(update={"aggregator_wait_s": 20.0})
    delays: list[float] = []

    with (
        connect(config, rng=random.Random(0), sleep=delays.append) as client,
        pytest.raises(
            AggregatorUnavailable, match=r"unreachable for Join after \d+ attempts over 20s"
        ),
    ):
        client.join()

    assert sum(delays) == pytest.approx(20.0)


def test_join_returns_the_plan_and_the_identity_from_the_certificate(
    tiny_plan: Plan, aggregator: AggregatorFactory, silo_config: SiloConfigFactory
) -> None:
    with aggregator(tiny_plan) as server, connect(silo_config("silo-2", server.port)) as client:
        reply = client.join()

    assert reply.silo_id == "silo-2"
    assert Plan.from_canonical_json(reply.plan_json) == tiny_plan
    assert reply.plan_sha256 == tiny_plan.sha256()


def test_globals_are_downloaded_and_checked_against_the_task(
    tiny_plan: Plan, aggregator: AggregatorFactory, silo_config: SiloConfigFactory
) -> None:
    plan = tiny_plan.model_copy(update=SOLO)
    with aggregator(plan) as server, connect(silo_config("silo-1", server.port)) as client:
        client.join()
        task = client.pull_task(plan.sha256(), wait_ms=2_000)
        manifest, vector = client.download_globals(task, max_bytes=1 << 20)
        forged = pb.Task()
        forged.CopyFrom(task)
        forged.globals_sha256 = "0" * 64
        with pytest.raises(InvalidInput, match="differs from the task's globals_sha256"):
            client.download_globals(forged, max_bytes=1 << 20)

    assert task.kind == pb.TASK_KIND_TRAIN
    assert manifest.sha256 == task.globals_sha256
    assert vector.size == manifest.num_elements


def test_refusals_carry_the_aggregators_message_and_are_not_retried(
    tiny_plan: Plan, aggregator: AggregatorFactory, silo_config: SiloConfigFactory
) -> None:
    delays: list[float] = []
    with aggregator(tiny_plan) as server:
        config = silo_config("silo-1", server.port).model_copy(update={"federation_id": "other"})
        with (
            connect(config, sleep=delays.append) as client,
            pytest.raises(FailedPrecondition, match="serves federation 'test-fed', not 'other'"),
        ):
            client.join()

    assert delays == []


def test_revoked_silo_is_told_it_is_not_authenticated(
    tiny_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    pki: FederationPaths,
) -> None:
    revoke(pki.root, "silo-1")
    delays: list[float] = []
    with (
        aggregator(tiny_plan) as server,
        connect(silo_config("silo-1", server.port), sleep=delays.append) as client,
        pytest.raises(NotAuthenticated, match="refused Join"),
    ):
        client.join()

    assert delays == []


def test_a_busy_refusal_is_retried_until_the_aggregator_has_room(
    tiny_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    pki: FederationPaths,
) -> None:
    release = threading.Event()

    def stalled():  # an upload stream that sends nothing until released
        release.wait(30)
        yield from ()

    with aggregator(tiny_plan) as server:
        credentials = channel_credentials(
            pki.ca_cert, pki.silo_cert("silo-1"), pki.silo_key("silo-1")
        )
        with grpc.secure_channel(f"localhost:{server.port}", credentials) as channel:
            upload = channel.stream_unary("/fedbiscuit.v1.Federation/UploadUpdate")
            held = [upload.future(stalled(), timeout=30) for _ in range(8)]  # the silo's bound
            while server.admission.in_flight("test-fed", "silo-1") < 8:
                threading.Event().wait(0.01)
            delays: list[float] = []

            def room_after(delay: float) -> None:
                delays.append(delay)
                release.set()
                for call in held:
                    call.exception(30)
                while server.admission.in_flight("test-fed", "silo-1"):
                    threading.Event().wait(0.01)

            with connect(silo_config("silo-1", server.port), sleep=room_after) as client:
                reply = client.join()

    assert reply.silo_id == "silo-1"
    assert len(delays) == 1


def test_grouping_calls_to_an_aggregator_without_hidden_membership_are_refused_at_once(
    tiny_plan: Plan, aggregator: AggregatorFactory, silo_config: SiloConfigFactory
) -> None:
    delays: list[float] = []
    plan = tiny_plan.model_copy(update=SOLO)
    with (
        aggregator(plan) as server,
        connect(silo_config("silo-1", server.port), sleep=delays.append) as client,
    ):
        client.join()
        task = client.pull_task(plan.sha256(), wait_ms=2_000)
        with pytest.raises(FailedPrecondition, match="does not use"):
            client.grouping_fetch(task, pb.GROUPING_STAGE_INBOX, wait_ms=0)
        with pytest.raises(FailedPrecondition, match="does not use"):
            client.grouping_confirm(task, bytes(32), b"signature")

    assert delays == []
