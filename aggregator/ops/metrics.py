"""Prometheus metrics of one aggregator process (every federation it hosts): instruments fed
by events, served on their own port.

What is counted as it happens lives here (RPCs, bytes, phase durations, aggregation latency,
dropped silos); what the store already knows durably (rounds, phase, silos, declines, epsilon
per silo from the verified ledger) is read at scrape time by `FederationCollector`, so it is
right after a restart. Labels carry federation, phase, method, status code and silo ids, never
updates, losses or data. Each server has its own registry, so tests can run several.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.registry import Collector

from protos.errors import InvalidInput

# Phases last seconds (tiny tests) to hours (real rounds with slow silos).
_PHASE_BUCKETS_S = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
_AGGREGATION_BUCKETS_S = (0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 120)


class AggregatorMetrics:
    """The event-fed instruments; `serve(address)` exposes them (and any added collector)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpcs = Counter(
            "fedbiscuit_rpcs",
            "RPCs handled, by full method name and final status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.received_bytes = Counter(
            "fedbiscuit_rpc_received_bytes",
            "Serialized request bytes received (before TLS and HTTP/2 framing).",
            ["method"],
            registry=self.registry,
        )
        self.sent_bytes = Counter(
            "fedbiscuit_rpc_sent_bytes",
            "Serialized response bytes sent (before TLS and HTTP/2 framing).",
            ["method"],
            registry=self.registry,
        )
        self.phase_seconds = Histogram(
            "fedbiscuit_phase_duration_seconds",
            "How long each phase lasted, observed when it ends (federation clock).",
            ["federation", "phase"],
            buckets=_PHASE_BUCKETS_S,
            registry=self.registry,
        )
        self.aggregation_seconds = Histogram(
            "fedbiscuit_aggregation_seconds",
            "Wall time from reading a round's first upload to its new globals being committed.",
            ["federation"],
            buckets=_AGGREGATION_BUCKETS_S,
            registry=self.registry,
        )
        self.dropped = Counter(
            "fedbiscuit_silos_dropped",
            "Sampled silos that neither delivered nor declined before their attempt closed.",
            ["federation", "phase"],
            registry=self.registry,
        )
        self._http: WSGIServer | None = None

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def serve(self, address: str) -> int:
        """Serve /metrics over HTTP on `address` (host:port, port 0 picks one); returns the port."""
        host, port = address.rsplit(":", 1)
        try:
            self._http, _thread = start_http_server(
                int(port), addr=host.strip("[]"), registry=self.registry
            )
        except OSError as exc:
            raise InvalidInput(f"cannot listen on metrics_address {address}: {exc}") from exc
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
