"""The gRPC health service: SERVING while running, NOT_SERVING as soon as shutdown begins."""

from __future__ import annotations

import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator.rpc.health import FEDERATION_SERVICE
from fedbiscuit.cli import main
from protos.v1 import federation_pb2 as pb
from protos.v1 import federation_pb2_grpc as pb_grpc

from ..conftest import TIMEOUT_S, Federation

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_over_mtls_turns_not_serving_when_shutdown_begins(federation: Federation) -> None:
    server = federation.start()
    stub = health_pb2_grpc.HealthStub(federation.channel(server, "silo-1"))
    request = health_pb2.HealthCheckRequest(service=FEDERATION_SERVICE)
    assert stub.Check(request, timeout=TIMEOUT_S).status == SERVING
    watch = stub.Watch(health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S)
    assert next(watch).status == SERVING

    stopping = threading.Thread(target=server.stop, args=(TIMEOUT_S,))
    stopping.start()
    seen = next(watch).status  # told while the call is still allowed to run (the drain)
    watch.cancel()
    stopping.join()

    assert seen == NOT_SERVING


def test_plaintext_health_port_answers_probes_and_serves_nothing_else(
    federation: Federation,
) -> None:
    federation.settings = {"health_address": "127.0.0.1:0"}
    server = federation.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.health_port}")

    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S
    )
    with pytest.raises(grpc.RpcError) as refused:
        pb_grpc.FederationStub(channel).Join(
            pb.JoinRequest(federation_id="fed-test"), timeout=TIMEOUT_S
        )
    channel.close()

    assert reply.status == SERVING
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_probe_command_exits_0_while_serving_and_1_once_stopped(
    federation: Federation, capsys: pytest.CaptureFixture[str]
) -> None:
    federation.settings = {"health_address": "127.0.0.1:0"}
    server = federation.start()
    address = f"127.0.0.1:{server.health_port}"

    serving = main(["aggregator", "probe", address])
    server.stop(0)
    stopped = main(["aggregator", "probe", address, "--timeout-s", "2"])

    assert (serving, stopped) == (0, 1)
    assert f"{address}: SERVING" in capsys.readouterr().out
