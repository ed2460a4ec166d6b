"""`fedbiscuit aggregator status`: rounds, phase, silos, FedBiscuit clusters and budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aggregator.rounds.round_table import Phase, RoundState
from aggregator.store import Decline, SqliteStore
from fedbiscuit.cli import main
from protos.plan import FedBiscuitSpec, LossReportSpec

from ..conftest import SILOS, tiny_plan

NOW_S = 1_700_000_000.0


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A FedBiscuit federation in round 3, grouped before round 2, one decline on record."""
    plan = tiny_plan(
        algorithm="fedbiscuit",
        rounds=5,
        fedbiscuit=FedBiscuitSpec(
            clusters=2,
            warmup_rounds_per_adapter=1,
            regroup_every=2,
            loss_report=LossReportSpec(clip=4.0, sample_size=32, noise_multiplier=4.0),
        ),
    )
    store = SqliteStore.create(tmp_path / "state", plan)
    for silo in SILOS:
        store.join_silo(silo, NOW_S)
    assignment = (("silo-1", 0), ("silo-2", 1), ("silo-3", 0))
    state = RoundState(
        Phase.TRAINING, 3, 0, NOW_S, sampled=("silo-1", "silo-2"), grouped_round=2,
        assignment=assignment,
    )  # fmt: skip
    store.save_state(state.to_dict())
    store.add_decline(
        Decline("r3.a0.silo-2", "silo-2", 3, 0, "policy_violation", "no", 1.0, NOW_S),
        mark_exhausted=False,
    )
    store.close()
    return tmp_path / "state"


def test_json_status_shows_clusters_sampled_silos_and_declines(state_dir: Path, capsys) -> None:
    assert main(["aggregator", "status", "--state-dir", str(state_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)

    assert (status["phase"], status["round"], status["rounds_total"]) == ("TRAINING", 3, 5)
    assert status["clusters"] == [[0, ["silo-1", "silo-3"]], [1, ["silo-2"]]]
    assert status["grouped_round"] == 2
    assert status["declines_by_reason"] == [["policy_violation", 1]]
    by_id = {silo["id"]: silo for silo in status["silos"]}
    assert {s: (v["cluster"], v["sampled"]) for s, v in by_id.items()} == {
        "silo-1": (0, True),
        "silo-2": (1, True),
        "silo-3": (0, False),
    }


def test_table_status_lists_clusters_and_each_silos_cluster(state_dir: Path, capsys) -> None:
    assert main(["aggregator", "status", "--state-dir", str(state_dir)]) == 0
    out = capsys.readouterr().out

    assert "clusters (grouped before round 2):" in out
    assert "adapter 0: silo-1, silo-3" in out and "adapter 1: silo-2" in out
    assert "declines: policy_violation 1" in out
    assert "silo-3" in out and "* sampled in the attempt in progress" in out
