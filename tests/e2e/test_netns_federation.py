"""Aggregator and silos on different (virtual) hosts: separate network namespaces, mTLS over
real addresses. Cutting one silo's link mid-round leaves the federation running to DONE."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.ops.status import read_status
from fedbiscuit.demo.layout import DemoOptions, lay_out
from privacy import pki
from protos.operator_formats.config_files import save_model_file
from silo.config import load_silo_config

from . import processes
from .netns import AGGREGATOR_IP, Topology, unavailable_reason

pytestmark = pytest.mark.slow

PORT = 50051
ROUNDS = 2


@pytest.fixture(scope="module")
def netns_available() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces cannot be made here: {reason}")


def test_cutting_a_silos_link_mid_round_leaves_the_federation_running(
    tmp_path: Path, netns_available: None
) -> None:
    # Every round samples all four silos and needs three (masked sums need at least three):
    # a lost silo costs a deadline only, and its masks are recovered from its neighbours.
    layout = lay_out(
        tmp_path / "fed",
        DemoOptions(silos=4, rounds=ROUNDS, tiny=True, local_steps=2, round_deadline_s=30),
    )
    pki.issue_aggregator(layout.pki_dir, ["localhost"], [AGGREGATOR_IP], force=True)
    for path in layout.silo_configs.values():
        config = load_silo_config(path)
        save_model_file(
            path, config.model_copy(update={"aggregator_address": f"{AGGREGATOR_IP}:{PORT}"})
        )
    silo_ids = sorted(layout.silo_configs)
    cut = silo_ids[-1]

    with Topology(silo_ids) as net:
        aggregator = processes.start(
            ["aggregator", "run", "--config", str(layout.aggregator_config)],
            layout.logs_dir / "aggregator.log",
            env={
                "FEDBISCUIT_AGGREGATOR__LISTEN_ADDRESS": f"0.0.0.0:{PORT}",
                "FEDBISCUIT_AGGREGATOR__FINISH_LINGER_S": "1",
            },
            prefix=net.exec_prefix(net.aggregator_ns),
        )
        silos = {
            silo: processes.start(
                ["silo", "run", "--config", str(layout.silo_configs[silo])],
                layout.logs_dir / f"{silo}.log",
                prefix=net.exec_prefix(net.silo_ns[silo]),
            )
            for silo in silo_ids
        }
        try:

            def first_round_started() -> bool:
                # A masked round needs every sampled silo through key sharing before anyone
                # uploads, so a cut now lands mid-round, before the cut silo can complete it.
                status = processes.status_or_none(layout.aggregator_state)
                return status is not None and (status.phase == "TRAINING" or status.round >= 1)

            processes.wait_for(first_round_started, "round 0", [aggregator, *silos.values()])
            net.cut(cut)
            survivors = [silos[s] for s in silo_ids if s != cut]
            processes.wait_for(lambda: aggregator.poll() is not None, "DONE", survivors)
            log = (layout.logs_dir / "aggregator.log").read_text()[-3000:]
            assert aggregator.returncode == 0, log
        finally:
            processes.stop_all([aggregator, *silos.values()])

    final = read_status(layout.aggregator_state)
    assert (final.phase, final.rounds_completed) == ("DONE", ROUNDS)
    rounds = {silo.id: silo.rounds_participated for silo in final.silos}
    assert rounds[cut] < ROUNDS
    assert all(rounds[s] == ROUNDS for s in silo_ids if s != cut)
