"""The aggregator process: mTLS gRPC server + round machine + a deadline ticker, with the
health service, Prometheus metrics and graceful shutdown of a managed service.

`AggregatorServer` is a context manager bound at construction (port 0 picks a free port,
see `.port`). Everything lives in `config.state_dir`, so a new server on the same dir
resumes the same round, attempt, globals and accepted submissions. Stopping it turns health
to NOT_SERVING first, refuses new calls, gives calls in flight `shutdown_grace_s`, and closes
the store last: the state on disk is what the next start resumes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from cryptography import x509

from aggregator.auth import SiloAuthInterceptor
from aggregator.config import AggregatorConfig
from aggregator.coordinator import RoundMachine
from aggregator.he_rpcs import HeRpcs
from aggregator.he_vault import HeVault
from aggregator.health import Health
from aggregator.ledger_intake import LedgerIntake
from aggregator.masked_round import MaskingTrust
from aggregator.metrics import AggregatorMetrics
from aggregator.metrics_collector import FederationCollector
from aggregator.phase_observer import PhaseObservingStore
from aggregator.round_machine import Phase
from aggregator.rpc_metrics import RpcMetricsInterceptor
from aggregator.servicer import FederationServicer
from privacy.pki import RevocationList, server_credentials
from protos import codec
from protos.errors import InvalidInput
from protos.log_format import configure_logging
from protos.plan import Plan
from protos.v1 import federation_pb2_grpc as pb_grpc
from selector.checkpoint import save_federation_export
from selector.model import adapter_state, build_selector

log = logging.getLogger(__name__)

# Chunks are at most 1 MiB; the rest is headroom for a header with its manifest.
MAX_MESSAGE_BYTES = 2 << 20
# Each silo's long-poll holds a worker thread while it waits.
MAX_WORKERS = 64
FINISHED = (Phase.DONE, Phase.FAILED)


class AggregatorServer:
    def __init__(
        self,
        config: AggregatorConfig,
        clock: Callable[[], float] = time.time,
        tick_interval_s: float = 1.0,
    ):
        """Open the state (initialising round-0 globals once) and bind the port; `start()`
        (or `with`) serves. `clock` drives round deadlines; the ticker polls it."""
        self.config = config
        self.plan = config.load_plan()
        self.metrics = AggregatorMetrics(self.plan.federation_id)
        self.health = Health()
        self.metrics_port: int | None = None
        self.health_port: int | None = None
        self._store = PhaseObservingStore.create(
            config.state_dir, self.plan, allow_plan_change=config.allow_plan_change
        )
        self._store.observe(self.metrics)
        try:
            he = None
            if self.plan.protection == "he":
                # The aggregator keeps no plaintext model: the public initial globals are
                # encrypted once the key custodian provides the public context.
                he = HeVault(self._store, lambda k: codec.flatten(_initial_state(self.plan, k))[1])
            else:
                for adapter in range(self.plan.adapters):
                    if self._store.globals_record(0, adapter) is None:
                        self._store.put_globals(0, _initial_state(self.plan, adapter), adapter)
            export = self._export if config.export_dir is not None else None
            if he is not None and export is not None:
                log.warning(
                    "federation=%s protection=he: the aggregator cannot export selectors (it "
                    "holds no key); a silo exports them with `fedbiscuit silo export`",
                    self.plan.federation_id,
                )
            self.machine = RoundMachine(self._store, clock, export, _masking_trust(config), he)
            self._server = grpc.server(
                ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="aggregator-rpc"),
                interceptors=[
                    RpcMetricsInterceptor(self.metrics),  # outermost: counts refusals too
                    SiloAuthInterceptor(self.plan.federation_id, config.pki.revocation_list),
                ],
                options=[
                    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ],
            )
            he_rpcs = None
            if he is not None:
                revocations = config.pki.revocation_list
                he_rpcs = HeRpcs(
                    self.machine,
                    self.plan,
                    config.pki.ca_cert.read_bytes(),
                    lambda: frozenset(e.serial for e in RevocationList.load(revocations).entries),
                    clock,
                )
            servicer = FederationServicer(
                self.machine,
                self.plan,
                config.max_long_poll_s,
                LedgerIntake(self._store, clock),
                he_rpcs,
            )
            pb_grpc.add_FederationServicer_to_server(servicer, self._server)
            self.health.add_to(self._server)
            self.metrics.add_collector(
                FederationCollector(self._store, lambda: self.machine.state, clock)
            )
            credentials = server_credentials(
                config.pki.server_cert, config.pki.server_key, config.pki.ca_cert
            )
            try:
                self.port = self._server.add_secure_port(config.listen_address, credentials)
            except RuntimeError as exc:
                raise InvalidInput(f"cannot listen on {config.listen_address}: {exc}") from exc
        except BaseException:
            self._store.close()
            raise
        self._tick_interval_s = tick_interval_s
        self._stopping = threading.Event()
        self._ticker = threading.Thread(
            target=self._tick_loop, name="aggregator-ticker", daemon=True
        )

    def start(self) -> AggregatorServer:
        """Serve; the metrics and plaintext health ports (if configured) are bound here."""
        try:
            if self.config.metrics_address is not None:
                self.metrics_port = self.metrics.serve(self.config.metrics_address)
            if self.config.health_address is not None:
                self.health_port = self.health.serve_plaintext(self.config.health_address)
        except BaseException:
            self.stop(0)
            raise
        self._server.start()
        self._ticker.start()
        self.health.serving()
        log.info("federation=%s listening port=%d", self.plan.federation_id, self.port)
        if self.health_port is not None:
            log.info("federation=%s health port=%d", self.plan.federation_id, self.health_port)
        return self

    def __enter__(self) -> AggregatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, grace_s: float | None = None) -> None:
        """NOT_SERVING, refuse new calls, let calls in flight finish for `grace_s` (default:
        the config's shutdown_grace_s), then close the store. Safe to call twice."""
        grace_s = self.config.shutdown_grace_s if grace_s is None else grace_s
        self.health.shutting_down()
        if not self._stopping.is_set():
            log.info("federation=%s shutting down grace_s=%g", self.plan.federation_id, grace_s)
        self._stopping.set()
        self._server.stop(grace_s).wait()
        if self._ticker.is_alive():
            self._ticker.join()
        self.health.close()
        self.metrics.close()
        self._store.close()
        log.info("federation=%s stopped", self.plan.federation_id)

    @property
    def phase(self) -> Phase:
        return self.machine.state.phase

    def wait_until_finished(self, timeout_s: float | None = None) -> Phase:
        """Block until DONE or FAILED (or the timeout) and return the phase then."""
        return self.machine.wait_until_finished(timeout_s)

    def _tick_loop(self) -> None:
        while not self._stopping.wait(self._tick_interval_s):
            try:
                self.machine.tick()
            except Exception:
                log.exception("federation=%s deadline tick failed", self.plan.federation_id)

    def _export(
        self, finals: Sequence[Mapping[str, np.ndarray]], clusters: Mapping[str, int]
    ) -> None:
        save_federation_export(self.config.export_dir, self.plan, finals, clusters)
        log.info(
            "federation=%s selector exported to %s", self.plan.federation_id, self.config.export_dir
        )


def serve_forever(config: AggregatorConfig, stop: threading.Event | None = None) -> Phase:
    """Serve until the federation is DONE or FAILED, or `stop` is set (e.g. on SIGTERM)."""
    configure_logging(config.log_level, config.log_format)
    stop = stop or threading.Event()
    with AggregatorServer(config) as server:
        phase = server.phase
        while phase not in FINISHED and not stop.is_set():
            phase = server.wait_until_finished(1.0)
        if phase == Phase.DONE and server.plan.protection == "he":
            stop.wait(config.finish_linger_s)  # silos decrypt the selectors: `silo export`
        elif phase in FINISHED:
            _linger_until_silos_know(server, config.finish_linger_s, stop)
        return phase


def _linger_until_silos_know(
    server: AggregatorServer, linger_s: float, stop: threading.Event
) -> None:
    """Silos learn the outcome by pulling: keep serving until each has, the linger ends, or
    `stop` is set, so no silo's long-poll is cut off by the process exiting."""
    give_up = time.monotonic() + linger_s
    while not stop.is_set():
        remaining = give_up - time.monotonic()
        if server.machine.wait_until_all_told_finished(min(1.0, max(0.0, remaining))):
            return
        if remaining <= 0:
            log.warning(
                "federation=%s stopping before every silo learnt it is %s",
                server.plan.federation_id,
                server.phase,
            )
            return


def _initial_state(plan: Plan, adapter: int) -> dict[str, np.ndarray]:
    """Adapter k starts from seed + k (FedBis, k = 0, keeps its initial globals): public."""
    return adapter_state(build_selector(plan.selector, seed=plan.seed + adapter))


def _masking_trust(config: AggregatorConfig) -> MaskingTrust:
    """What silos' secure-aggregation keys are checked against: the federation CA and the
    revocation list as it stands at start (revoked silos are also refused at every call)."""
    ca = x509.load_pem_x509_certificate(config.pki.ca_cert.read_bytes())
    revoked = RevocationList.load(config.pki.revocation_list)
    return MaskingTrust(ca, frozenset(e.serial for e in revoked.entries))
