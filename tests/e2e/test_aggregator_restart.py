"""The aggregator killed with SIGKILL mid-federation and restarted resumes and finishes.

The federation masks its updates (SecAgg+): the secure sum in flight dies with the process,
and the restarted aggregator re-runs that round with fresh keys and seeds."""

from __future__ import annotations

import pytest

from aggregator.ops.status import read_status
from fedbiscuit.demo.layout import DemoOptions, lay_out
from privacy.ledger import Ledger

from .processes import kill, start, status_or_none, stop_all, wait_finished, wait_for

pytestmark = pytest.mark.slow


def test_aggregator_killed_mid_federation_resumes_and_finishes(tmp_path):
    layout = lay_out(tmp_path / "fed", DemoOptions(silos=3, rounds=4, tiny=True, local_steps=4))
    aggregator_args = ["aggregator", "run", "--config", str(layout.aggregator_config)]
    log = layout.logs_dir / "aggregator.log"
    aggregator = start(aggregator_args, log)
    silos = [
        start(["silo", "run", "--config", str(config)], layout.logs_dir / f"{silo_id}.log")
        for silo_id, config in layout.silo_configs.items()
    ]
    try:

        def one_round_done() -> bool:
            status = status_or_none(layout.aggregator_state)
            return status is not None and status.rounds_completed >= 1

        wait_for(one_round_done, "round 1 to complete", [aggregator, *silos])
        kill(aggregator)
        killed_at = read_status(layout.aggregator_state)
        assert not killed_at.finished, "killed too late to test a resume"

        aggregator = start(aggregator_args, log)
        wait_finished(aggregator, log, silos)
    finally:
        stop_all([aggregator, *silos])

    final = read_status(layout.aggregator_state)
    assert final.phase == "DONE" and final.rounds_completed == 4
    assert final.round >= killed_at.round
    assert (layout.selectors_dir / "adapters.safetensors").is_file()
    for silo in final.silos:
        ledger = Ledger.open(
            layout.workdir / "silos" / silo.id / "state" / "ledger.jsonl",
            federation_id="demo",
            silo_id=silo.id,
        )
        # Every round that used this silo's update is covered by a ledger entry; a spend for
        # an upload lost in the kill stays counted (never under-reported).
        assert {entry.round for entry in ledger.entries} >= set(range(4))
        assert ledger.entries[-1].epsilon_after == pytest.approx(silo.epsilon)
        assert silo.epsilon <= 8.0
