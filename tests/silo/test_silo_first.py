"""A silo started before its aggregator waits for it like a service, then takes part."""

from __future__ import annotations

import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

from protos.plan import Plan
from silo.agent import run_silo
from tests.silo.conftest import AggregatorFactory, SiloConfigFactory

PROGRESS_TIMEOUT_S = 120.0


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Waiting(logging.Handler):
    """Sets `seen` once every silo has said it is waiting for the aggregator."""

    def __init__(self, silos: int) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()
        self._threads: set[int] = set()
        self._silos = silos

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting for it" in record.getMessage():
            self._threads.add(record.thread or 0)
            if len(self._threads) >= self._silos:
                self.seen.set()


def test_silos_started_before_the_aggregator_wait_then_train_to_done(
    tiny_plan: Plan, aggregator: AggregatorFactory, silo_config: SiloConfigFactory
) -> None:
    port = _unused_port()
    configs = [silo_config(silo_id, port) for silo_id in ("silo-1", "silo-2")]
    waiting = _Waiting(len(configs))
    client_log = logging.getLogger("silo.client")
    client_log.addHandler(waiting)
    stop = threading.Event()
    try:
        with ThreadPoolExecutor(len(configs)) as pool:
            futures = [pool.submit(run_silo, config, stop, wait_ms=2_000) for config in configs]
            assert waiting.seen.wait(PROGRESS_TIMEOUT_S), "the silos never said they wait"
            with aggregator(tiny_plan, port=port):
                results = [future.result(timeout=PROGRESS_TIMEOUT_S) for future in futures]
    finally:
        stop.set()
        client_log.removeHandler(waiting)

    assert results == [0, 0]
    for config in configs:
        assert (config.state_dir / "ledger.jsonl").exists()
