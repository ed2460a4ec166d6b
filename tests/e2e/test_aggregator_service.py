"""The aggregator as a service process: env config, JSON logs, health, SIGTERM drains it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator.ops.status import read_status
from fedbiscuit.demo.layout import DemoOptions, lay_out

from . import processes

pytestmark = pytest.mark.slow


def json_lines(log: Path) -> list[dict]:
    """The log records in `log` (complete lines; the CLI's own last words are plain text)."""
    text = log.read_text()
    lines = text.splitlines()[: text.count("\n")]
    return [json.loads(line) for line in lines if not line.startswith("fedbiscuit aggregator:")]


def logged_port(log: Path, what: str) -> int | None:
    ports = [doc["port"] for doc in json_lines(log) if doc["message"].startswith(
        f"federation=demo {what} port=")]  # fmt: skip
    return ports[0] if ports else None


def test_sigterm_turns_health_off_and_stops_cleanly_with_json_logs(tmp_path: Path) -> None:
    layout = lay_out(
        tmp_path / "fed", DemoOptions(silos=2, rounds=1, tiny=True, protection="insecure_plaintext")
    )
    log = layout.logs_dir / "aggregator.log"
    aggregator = processes.start(
        ["aggregator", "run", "--config", str(layout.aggregator_config), "--log-format", "json"],
        log,
        env={"FEDBISCUIT_AGGREGATOR__HEALTH_ADDRESS": "127.0.0.1:0"},
    )
    try:
        processes.wait_for(
            lambda: logged_port(log, "health") is not None, "health port", [aggregator]
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{logged_port(log, 'health')}")
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=processes.DEADLINE_S
        )
        channel.close()

        aggregator.send_signal(signal.SIGTERM)
        code = aggregator.wait(timeout=processes.DEADLINE_S)
    finally:
        processes.stop_all([aggregator])

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert code == 128 + signal.SIGTERM
    docs = json_lines(log)
    messages = [doc["message"] for doc in docs]
    assert any(m.startswith("federation=demo shutting down grace_s=") for m in messages)
    assert messages[-1] == "federation=demo stopped"
    assert {doc["federation"] for doc in docs if "federation" in doc} == {"demo"}
    assert read_status(layout.aggregator_state).round == 0  # the store was closed, readable
