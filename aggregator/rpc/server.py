"""The aggregator process: one mTLS gRPC server hosting one or several federations, each with
its own round machine ticked by a deadline ticker, plus the health service, Prometheus metrics
and graceful shutdown of a managed service.

`AggregatorServer` is a context manager bound at construction (port 0 picks a free port,
see `.port`). Each federation lives in its own `state_dir`, so a new server on the same dirs
resumes every federation at its round, attempt, globals and accepted submissions. Stopping it
turns health to NOT_SERVING first, refuses new calls, gives calls in flight
`shutdown_grace_s`, and closes the stores last: the state on disk is what the next start
resumes. Federations are kept apart by `SiloAuthInterceptor` (a call is bound to the one
federation its certificate belongs to) and `FederationRouter` (it reaches only that
federation's servicer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import grpc

from aggregator.config import AggregatorConfig
from aggregator.hosted_federation import HostedFederation
from aggregator.ops.metrics import AggregatorMetrics
from aggregator.rounds.round_machine import RoundMachine
from aggregator.rounds.round_table import Phase
from aggregator.rpc.admission import AdmissionInterceptor
from aggregator.rpc.auth import SiloAuthInterceptor
from aggregator.rpc.health import Health
from aggregator.rpc.router import FederationRouter
from aggregator.rpc.rpc_metrics import RpcMetricsInterceptor
from aggregator.store import FederationStore
from privacy.pki import hosting_credentials
from protos.errors import InvalidInput
from protos.operator_formats.log_format import configure_logging
from protos.plan import Plan

log = logging.getLogger(__name__)

# Chunks are at most 1 MiB; the rest is headroom for a header with its manifest.
MAX_MESSAGE_BYTES = 2 << 20
# Calls queued for a worker beyond this many per worker thread are refused by gRPC itself.
QUEUED_CALLS_PER_WORKER = 4
FINISHED = (Phase.DONE, Phase.FAILED)


class AggregatorServer:
    def __init__(
        self,
        config: AggregatorConfig,
        clock: Callable[[], float] = time.time,
        tick_interval_s: float = 1.0,
    ):
        """Open every federation's state (initialising round-0 globals once) and bind the
        port; `start()` (or `with`) serves. `clock` drives round deadlines; the ticker polls
        it."""
        self.config = config
        self.health = Health()
        self.metrics = AggregatorMetrics()  # one registry, labelled by federation
        self.metrics_port: int | None = None
        self.health_port: int | None = None
        self.federations: dict[str, HostedFederation] = {}
        try:
            for index, federation_config in enumerate(config.hosted()):
                hosted = HostedFederation(
                    federation_config, self.metrics, clock, config.max_long_poll_s
                )
                if hosted.federation_id in self.federations:
                    hosted.close()
                    raise InvalidInput(
                        f"federations.{index}.plan_path: federation {hosted.federation_id!r} "
                        "is already hosted by this config; each federation once"
                    )
                self.federations[hosted.federation_id] = hosted
            self._name = ",".join(self.federations)
            workers = config.limits.worker_threads
            self.admission = AdmissionInterceptor(config.limits, self.metrics)
            self._server = grpc.server(
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aggregator-rpc"),
                interceptors=[
                    RpcMetricsInterceptor(self.metrics),  # outermost: counts refusals too
                    SiloAuthInterceptor(
                        {f: h.trust for f, h in self.federations.items()},
                        on_refusal=self.admission.count_refusal,
                    ),
                    self.admission,  # innermost: only authenticated calls are admitted
                ],
                maximum_concurrent_rpcs=workers * QUEUED_CALLS_PER_WORKER,
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ],
            )
            router = FederationRouter({f: h.servicer for f, h in self.federations.items()})
            self._server.add_generic_rpc_handlers((router,))
            self.health.add_to(self._server)
            credentials = hosting_credentials(
                [(h.config.pki.server_cert, h.config.pki.server_key) for h in self._hosted],
                [h.config.pki.ca_cert for h in self._hosted],
            )
            try:
                self.port = self._server.add_secure_port(config.listen_address, credentials)
            except RuntimeError as exc:
                raise InvalidInput(f"cannot listen on {config.listen_address}: {exc}") from exc
        except BaseException:
            for hosted in self.federations.values():
                hosted.close()
            raise
        self._tick_interval_s = tick_interval_s
        self._stopping = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick_loop, name="aggregator-ticker", daemon=True
        )

    @property
    def _hosted(self) -> Iterable[HostedFederation]:
        return self.federations.values()

    def start(self) -> AggregatorServer:
        """Serve; the metrics and plaintext health ports (if configured) are bound here."""
        try:
            if self.config.metrics_address is not None:
                self.metrics_port = self.metrics.serve(self.config.metrics_address)
                log.info("federation=%s metrics port=%d", self._name, self.metrics_port)
            if self.config.health_address is not None:
                self.health_port = self.health.serve_plaintext(self.config.health_address)
        except BaseException:
            self.stop(0)
            raise
        self._server.start()
        self._ticker.start()
        self.health.serving()
        log.info("federation=%s listening port=%d", self._name, self.port)
        if self.health_port is not None:
            log.info("federation=%s health port=%d", self._name, self.health_port)
        return self

    def __enter__(self) -> AggregatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, grace_s: float | None = None) -> None:
        """NOT_SERVING, refuse new calls, let calls in flight finish for `grace_s` (default:
        the config's shutdown_grace_s), then close the stores. Safe to call twice."""
        grace_s = self.config.shutdown_grace_s if grace_s is None else grace_s
        self.health.shutting_down()
        if not self._stopping.is_set():
            log.info("federation=%s shutting down grace_s=%g", self._name, grace_s)
        self._stopping.set()
        self._server.stop(grace_s).wait()
        if self._ticker.is_alive():
            self._ticker.join()
        self.health.close()
        self.admission.close()
        self.metrics.close()
        for hosted in self._hosted:
            hosted.close()
        log.info("federation=%s stopped", self._name)

    @property
    def phase(self) -> Phase:
        """DONE when every federation is; FAILED when all finished and one failed; else the
        phase of the first federation still running."""
        return _overall(hosted.phase for hosted in self._hosted)

    def wait_until_finished(self, timeout_s: float | None = None) -> Phase:
        """Block until every federation is DONE or FAILED (or the timeout) and return
        `phase` then."""
        give_up = None if timeout_s is None else time.monotonic() + timeout_s
        for hosted in self._hosted:
            remaining = None if give_up is None else max(0.0, give_up - time.monotonic())
            hosted.machine.wait_until_finished(remaining)
        return self.phase

    @property
    def plan(self) -> Plan:
        return self._only().plan

    @property
    def machine(self) -> RoundMachine:
        return self._only().machine

    @property
    def store(self) -> FederationStore:
        return self._only().store

    def _only(self) -> HostedFederation:
        """The federation of a single-federation server (several: use `federations`)."""
        if len(self.federations) != 1:
            raise InvalidInput(f"this server hosts {len(self.federations)} federations, not one")
        return next(iter(self._hosted))

    def _tick_loop(self) -> None:
        while not self._stopping.wait(self._tick_interval_s):
            for hosted in self._hosted:
                try:
                    hosted.machine.tick()
                except Exception:
                    log.exception("federation=%s deadline tick failed", hosted.federation_id)


def _overall(phases: Iterable[Phase]) -> Phase:
    phases = list(phases)
    running = [phase for phase in phases if phase not in FINISHED]
    if running:
        return running[0]
    return Phase.FAILED if Phase.FAILED in phases else Phase.DONE


def serve_forever(config: AggregatorConfig, stop: threading.Event | None = None) -> Phase:
    """Serve until every hosted federation is DONE or FAILED, or `stop` is set (e.g. on
    SIGTERM); returns `AggregatorServer.phase` then."""
    configure_logging(config.log_level, config.log_format)
    stop = stop or threading.Event()
    with AggregatorServer(config) as server:
        phase = server.phase
        while phase not in FINISHED and not stop.is_set():
            phase = server.wait_until_finished(1.0)
        encrypted = any(not h.holds_plaintext for h in server.federations.values())
        if phase == Phase.DONE and encrypted:
            stop.wait(config.finish_linger_s)  # silos decrypt the selectors: `silo export`
        elif phase in FINISHED:
            _linger_until_silos_know(server, config.finish_linger_s, stop)
        return phase


def _linger_until_silos_know(
    server: AggregatorServer, linger_s: float, stop: threading.Event
) -> None:
    """Silos learn the outcome by pulling: keep serving until each silo of every federation
    has, the linger ends, or `stop` is set, so no silo's long-poll is cut off by the process
    exiting."""
    give_up = time.monotonic() + linger_s
    waiting = list(server.federations.values())
    while waiting and not stop.is_set():
        remaining = give_up - time.monotonic()
        slice_s = min(1.0, max(0.0, remaining)) / len(waiting)
        waiting = [h for h in waiting if not h.machine.wait_until_all_told_finished(slice_s)]
        if waiting and remaining <= 0:
            for hosted in waiting:
                log.warning(
                    "federation=%s stopping before every silo learnt it is %s",
                    hosted.federation_id,
                    hosted.phase,
                )
            return
