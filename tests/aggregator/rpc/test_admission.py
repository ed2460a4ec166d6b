"""Hostile callers against a real aggregator over mutual TLS: bodies are decoded only after
authentication, each silo's calls in flight are bounded, stalled streams are cut, and a
caller that cancels is routine (INFO, counted), never an ERROR with a traceback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator.caller_limits import CallerLimits
from aggregator.rpc.server import AggregatorServer
from privacy.pki import issue_silo, revoke
from protos import codec
from protos.v1 import federation_pb2 as pb

from ..conftest import FEDERATION_ID, TIMEOUT_S, Federation

FEDERATION_SERVICE = "/fedbiscuit.v1.Federation"
UPLOAD = f"{FEDERATION_SERVICE}/UploadUpdate"
# Not a protobuf: field 1 as a length-delimited string running past the end of the body.
GARBAGE = b"\x0a\xff\xff\xff\x0f\x01\x02"


def refusals(server: AggregatorServer, method: str, reason: str) -> float:
    value = server.metrics.registry.get_sample_value(
        "fedbiscuit_rpc_refusals_total", {"method": method, "reason": reason}
    )
    return value or 0.0


def rpcs(server: AggregatorServer, method: str, code: str) -> float:
    value = server.metrics.registry.get_sample_value(
        "fedbiscuit_rpcs_total", {"method": method, "code": code}
    )
    return value or 0.0


def wait_for_in_flight(server: AggregatorServer, silo_id: str, count: int) -> None:
    """Block until the server holds exactly `count` admitted calls of `silo_id`."""
    for _ in range(TIMEOUT_S * 100):
        if server.admission.in_flight(FEDERATION_ID, silo_id) == count:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{silo_id} never had {count} call(s) in flight")


class Held:
    """A request stream that sends `messages` and then stalls until released."""

    def __init__(self, messages: tuple[bytes, ...] = ()) -> None:
        self.messages, self.release = messages, threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield from self.messages
        self.release.wait(TIMEOUT_S)


def test_malformed_body_from_a_silo_is_invalid_argument_and_logged_once(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    server = federation.start()
    channel = federation.channel(server, "silo-1")
    caplog.set_level(logging.INFO)
    codes = []
    for method in ("Join", "PullTask", "Decline", "SecAggFetch"):
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary(f"{FEDERATION_SERVICE}/{method}")(GARBAGE, timeout=TIMEOUT_S)
        codes.append(err.value.code())
    with pytest.raises(grpc.RpcError) as err:
        channel.stream_unary(UPLOAD)(iter([GARBAGE]), timeout=TIMEOUT_S)
    codes.append(err.value.code())
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 5
    assert "not a valid UploadUpdate message" in err.value.details()
    malformed = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(malformed) == 1  # one line per silo per interval
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert refusals(server, UPLOAD, "malformed") == 1


def test_malformed_body_from_a_revoked_silo_is_unauthenticated(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    issue_silo(federation.pki.root, "silo-revoked")
    revoke(federation.pki.root, "silo-revoked")
    server = federation.start()
    channel = federation.channel(server, "silo-revoked")
    caplog.set_level(logging.INFO)
    with pytest.raises(grpc.RpcError) as err:
        channel.unary_unary(f"{FEDERATION_SERVICE}/Join")(GARBAGE, timeout=TIMEOUT_S)
    with pytest.raises(grpc.RpcError) as stream_err:
        channel.stream_unary(UPLOAD)(iter([GARBAGE]), timeout=TIMEOUT_S)
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as check_err:
        health.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
    with pytest.raises(grpc.RpcError) as watch_err:
        next(health.Watch(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S))
    codes = {e.value.code() for e in (err, stream_err, check_err, watch_err)}
    assert codes == {grpc.StatusCode.UNAUTHENTICATED}
    assert refusals(server, f"{FEDERATION_SERVICE}/Join", "revoked") == 1
    assert refusals(server, "/grpc.health.v1.Health/Watch", "revoked") == 1
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_silo_beyond_its_calls_in_flight_is_refused_and_others_still_served(
    federation: Federation,
) -> None:
    federation.settings = {"limits": CallerLimits(max_concurrent_rpcs_per_silo=3)}
    server = federation.start()
    attacker = federation.channel(server, "silo-1")
    held = [Held() for _ in range(3)]
    calls = [attacker.stream_unary(UPLOAD).future(iter(h), timeout=TIMEOUT_S) for h in held]
    wait_for_in_flight(server, "silo-1", 3)
    with pytest.raises(grpc.RpcError) as err:
        attacker.stream_unary(UPLOAD)(iter([GARBAGE]), timeout=TIMEOUT_S)
    honest = federation.silo(server, "silo-2").join()
    for h in held:
        h.release.set()
    for call in calls:
        assert call.exception(TIMEOUT_S) is not None  # header-less: refused by the servicer
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "silo-1" in err.value.details()
    assert honest.silo_id == "silo-2"
    assert refusals(server, UPLOAD, "silo_busy") == 1
    wait_for_in_flight(server, "silo-1", 0)


def test_stream_without_a_header_is_cut_at_the_header_deadline(federation: Federation) -> None:
    federation.settings = {"limits": CallerLimits(stream_header_timeout_s=0.2)}
    server = federation.start()
    held = Held()
    call = (
        federation.channel(server, "silo-1")
        .stream_unary(UPLOAD)
        .future(iter(held), timeout=TIMEOUT_S)
    )
    error = call.exception(TIMEOUT_S)
    held.release.set()
    assert error is not None and error.code() == grpc.StatusCode.CANCELLED
    assert refusals(server, UPLOAD, "header_timeout") == 1
    wait_for_in_flight(server, "silo-1", 0)


def test_silo_cancelling_mid_upload_is_info_not_error_and_nothing_is_stored(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    server = federation.start()
    silo = federation.joined(server, ("silo-1", "silo-2"))[0]
    task = silo.pull()
    assert task.kind == pb.TASK_KIND_TRAIN
    _, globals_ = silo.download(task)
    header = silo.header(task, globals_ * 0)
    first_chunk = next(codec.iter_chunks(codec.to_bytes(globals_ * 0)))
    held = Held(
        (
            pb.UploadPart(header=header).SerializeToString(),
            pb.UploadPart(data=first_chunk[:16]).SerializeToString(),
        )
    )
    caplog.set_level(logging.INFO)
    raw = federation.channel(server, "silo-1").stream_unary(UPLOAD)
    future = raw.future(iter(held), timeout=TIMEOUT_S)
    wait_for_in_flight(server, "silo-1", 1)
    future.cancel()
    held.release.set()
    wait_for_in_flight(server, "silo-1", 0)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert [r for r in caplog.records if "ended early" in r.getMessage()]
    assert rpcs(server, UPLOAD, "CANCELLED") == 1
    assert server.store.submission(task.task_id) is None


def test_health_watches_beyond_the_silo_bound_are_refused(federation: Federation) -> None:
    federation.settings = {"limits": CallerLimits(max_waiting_per_silo=1)}
    server = federation.start()
    health = health_pb2_grpc.HealthStub(federation.channel(server, "silo-1"))
    first = health.Watch(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
    assert next(first).status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as err:
        next(health.Watch(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S))
    first.cancel()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refusals(server, "/grpc.health.v1.Health/Watch", "waiting_full") == 1
