"""The standard gRPC health service (grpc.health.v1) for probes and load balancers.

SERVING from start until shutdown begins, NOT_SERVING from then on (watchers are told at
once, so a load balancer drains the aggregator before its calls are cancelled). Served on the
mTLS port to unrevoked silos of a hosted federation (the silo interceptor checks them as for
every other method, and the admission limits bound their watches), and optionally on a
plaintext port that serves nothing else, for probes that cannot present a client certificate
(kubelet).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from protos.errors import InvalidInput

FEDERATION_SERVICE = "fedbiscuit.v1.Federation"
# The health methods: they say only SERVING or NOT_SERVING; on the mTLS port only to
# authenticated silos.
HEALTH_METHODS: frozenset[str] = frozenset(
    {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"}
)
_SERVICES = ("", FEDERATION_SERVICE)  # "" is the whole server, as probes ask by default


class Health:
    """One health state, shared by every server it is added to."""

    def __init__(self) -> None:
        self._servicer = health.HealthServicer()
        for service in _SERVICES:
            self._servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        self._plain: grpc.Server | None = None

    def add_to(self, server: grpc.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)

    def serve_plaintext(self, address: str) -> int:
        """Bind a health-only plaintext server on `address`; returns its port."""
        self._plain = grpc.server(
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="aggregator-health")
        )
        self.add_to(self._plain)
        try:
            port = self._plain.add_insecure_port(address)
        except RuntimeError as exc:
            raise InvalidInput(f"cannot listen on health_address {address}: {exc}") from exc
        self._plain.start()
        return port

    def serving(self) -> None:
        for service in _SERVICES:
            self._servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    def shutting_down(self) -> None:
        """NOT_SERVING for good: later `set` calls are ignored by the servicer."""
        self._servicer.enter_graceful_shutdown()

    def close(self) -> None:
        if self._plain is not None:
            self._plain.stop(0).wait()
