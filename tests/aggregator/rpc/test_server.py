"""The aggregator process: restart from its state dir, export when done, refuse a foreign dir."""

from __future__ import annotations

import numpy as np
import pytest

from aggregator.ops.status import read_status
from aggregator.rounds.round_table import Phase
from aggregator.rpc.server import AggregatorServer
from protos import codec
from protos.errors import FailedPrecondition
from protos.v1 import federation_pb2 as pb
from selector.checkpoint import load_selector
from selector.model import adapter_state

from ..conftest import SILOS, tiny_plan


def _finish_round(silos, value: float) -> np.ndarray:
    """Every silo uploads `value`; returns the globals the round started from."""
    start = None
    for silo in silos:
        task = silo.pull()
        _, start = silo.download(task)
        assert silo.upload(task, np.full_like(start, value)).accepted
    return start


def test_restarted_server_resumes_the_same_round_and_finishes(federation):
    server = federation.start()
    first, second = federation.joined(server, SILOS[:2])
    task = first.pull()
    _, start = first.download(task)
    first.upload(task, np.full_like(start, 1.0))
    second_task = second.pull()
    server.stop(0)

    ledger = first.entries
    server = federation.start()
    first, second = (federation.silo(server, s) for s in SILOS[:2])
    first.entries = ledger  # the silo's ledger outlives the aggregator's restart

    assert first.pull().kind == pb.TASK_KIND_WAIT  # its upload survived the restart
    resumed = second.pull()
    assert (resumed.task_id, resumed.round) == (second_task.task_id, 0)
    second.upload(resumed, np.full_like(start, 3.0))
    _finish_round([first, second], 0.5)
    assert server.wait_until_finished(timeout_s=10) == Phase.DONE
    assert first.pull().kind == pb.TASK_KIND_DONE
    assert read_status(federation.root / "state").rounds_completed == 2


def test_done_exports_the_final_selector(federation):
    federation.plan = tiny_plan(rounds=1)
    server = federation.start()
    silos = federation.joined(server, SILOS[:2])

    start = _finish_round(silos, 0.25)

    assert server.wait_until_finished(timeout_s=10) == Phase.DONE
    model, spec, meta = load_selector(federation.root / "selector")
    assert spec == federation.plan.selector
    assert meta["plan_sha256"] == federation.plan.sha256()
    assert (meta["federation_id"], meta["rounds"]) == ("fed-test", 1)
    _, exported = codec.flatten(adapter_state(model))
    np.testing.assert_array_equal(exported, (start.astype(np.float64) + 0.25).astype(np.float32))


def test_state_dir_of_another_plan_is_refused_at_start(federation):
    federation.start().stop(0)
    federation.plan = tiny_plan(rounds=7)

    with pytest.raises(FailedPrecondition, match="belongs to plan"):
        AggregatorServer(federation.config(), clock=federation.clock)


def test_status_reports_participation_and_reported_epsilon(federation):
    server = federation.start()
    silos = federation.joined(server, SILOS[:2])
    _finish_round(silos, 0.0)

    status = read_status(federation.root / "state")

    assert (status.phase, status.round, status.rounds_total) == ("TRAINING", 1, 2)
    by_id = {s.id: s for s in status.silos}
    assert by_id["silo-1"].rounds_participated == 1
    assert by_id["silo-1"].last_round == 0
    assert (by_id["silo-1"].epsilon, by_id["silo-1"].budget_epsilon) == (0.5, 8.0)
