"""Membership-hiding FedBiscuit as real processes over loopback mTLS (issue 16).

The demo's layout writes `fedbiscuit.membership: hidden` for masked FedBiscuit plans. Six
silo agents and the aggregator run as `python -m fedbiscuit` processes: the silos group
themselves and keep one shared view (each knows its own cluster, `silo status` shows it);
the aggregator's whole state dir, its log and the export hold no loss value and no silo's
cluster; every silo's upload of a grouped round has the same size. The aggregator is killed
with SIGKILL in the grouped round (its grouping or its training) and restarted: it still
finishes with one shared assignment. One run checks all of it (each run costs minutes).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from aggregator.ops.status import read_status
from fedbiscuit.cli import main
from fedbiscuit.demo.layout import DemoLayout, DemoOptions, lay_out
from privacy.ledger import Ledger
from selector.checkpoint import load_selector_set
from silo.config import load_silo_config
from silo.grouping_store import VIEW_FILE, GroupingStore

from .processes import kill, start, status_or_none, stop_all, wait_finished, wait_for

pytestmark = pytest.mark.slow

# K=2 clusters of 3 silos (masking hides a silo only in a sum of at least 3): warm-up rounds
# 0 and 1 train one adapter each, a grouping before round 2, round 2 trains both clusters.
OPTIONS = DemoOptions(
    silos=6,
    rounds=3,
    algorithm="fedbiscuit",
    clusters=2,
    regroup_every=1,
    tiny=True,
    local_steps=2,
    train_pairs_per_silo=64,
    test_pairs_per_silo=16,
)
GROUPED_ROUND = 2
_UPLOADED = re.compile(r"phase=uploaded round=(\d+) .*bytes=(\d+)")


def _run(layout: DemoLayout, *, kill_in_round: int | None = None) -> None:
    """Run the federation to its end; SIGKILL and restart the aggregator once
    `kill_in_round` has started, if given."""
    aggregator_args = ["aggregator", "run", "--config", str(layout.aggregator_config)]
    log = layout.logs_dir / "aggregator.log"
    aggregator = start(aggregator_args, log)
    silos = [
        start(["silo", "run", "--config", str(config)], layout.logs_dir / f"{silo_id}.log")
        for silo_id, config in layout.silo_configs.items()
    ]
    try:
        if kill_in_round is not None:

            def in_round() -> bool:
                status = status_or_none(layout.aggregator_state)
                return status is not None and status.round >= kill_in_round

            wait_for(in_round, f"round {kill_in_round} to start", [aggregator, *silos])
            kill(aggregator)
            assert not read_status(layout.aggregator_state).finished, "killed too late"
            aggregator = start(aggregator_args, log)
        wait_finished(aggregator, log, silos)
    finally:
        stop_all([aggregator, *silos])


def _state_dirs(layout: DemoLayout) -> dict[str, Path]:
    return {s: load_silo_config(path).state_dir for s, path in layout.silo_configs.items()}


def _check_one_shared_view(layout: DemoLayout, capsys: pytest.CaptureFixture[str]) -> None:
    """Every silo holds the same confirmed view, and `silo status` shows its own cluster."""
    states = _state_dirs(layout)
    files = {s: (state / VIEW_FILE).read_bytes() for s, state in states.items()}
    assert len(set(files.values())) == 1, "the silos hold different groupings"
    view = GroupingStore(next(iter(states.values()))).load_view()
    assert view is not None and view.silo_ids == tuple(sorted(states)) and view.sizes == (3, 3)
    for silo_id, config in layout.silo_configs.items():
        capsys.readouterr()
        assert main(["silo", "status", "--config", str(config)]) == 0
        assert f"own cluster: {view.cluster_of(silo_id)} " in capsys.readouterr().out
    # One release binding for every silo's DP-SGD release of the grouped round: it names
    # no adapter, so the ledgers the aggregator verifies do not tell the clusters apart.
    bindings = set()
    for silo_id, state in states.items():
        ledger = Ledger.open(state / "ledger.jsonl", federation_id="demo", silo_id=silo_id)
        bindings |= {
            e.release_binding
            for e in ledger.entries
            if e.round == GROUPED_ROUND and e.mechanism == "dp_sgd"
        }
    assert len(bindings) == 1


def _check_aggregator_learned_sizes_only(layout: DemoLayout) -> None:
    """No loss value and no silo's cluster in the aggregator's state, log or export."""
    view = GroupingStore(next(iter(_state_dirs(layout).values()))).load_view()
    assert view is not None
    aggregator_log = (layout.logs_dir / "aggregator.log").read_text()
    persisted = b"".join(
        path.read_bytes() for path in layout.aggregator_state.rglob("*") if path.is_file()
    )
    exported = b"".join(
        path.read_bytes() for path in layout.selectors_dir.rglob("*") if path.is_file()
    )
    everything = persisted + exported + aggregator_log.encode()
    for value in view.matrix.losses.ravel():
        assert np.float64(value).tobytes() not in everything
        assert repr(float(value)).encode() not in everything
        assert f"{value:.6f}".encode() not in everything
    assert load_selector_set(layout.selectors_dir)[2] == {}  # no silo -> cluster map
    status = read_status(layout.aggregator_state)
    assert status.clusters == () and all(silo.cluster is None for silo in status.silos)
    for line in aggregator_log.splitlines():
        assert not ("cluster" in line.lower() and re.search(r"silo-\d", line)), line
    assert "cluster sizes=3,3" in aggregator_log


def _upload_sizes(layout: DemoLayout, round_: int) -> list[int]:
    """Payload bytes each silo logged for its upload of `round_` (its last attempt)."""
    sizes = []
    for silo_id in layout.silo_configs:
        found = [
            int(m.group(2))
            for m in _UPLOADED.finditer((layout.logs_dir / f"{silo_id}.log").read_text())
            if int(m.group(1)) == round_
        ]
        assert found, f"{silo_id} logged no upload of round {round_}"
        sizes.append(found[-1])
    return sizes


def test_a_hidden_federation_survives_a_kill_with_one_view_the_aggregator_never_sees(
    tmp_path, capsys
):
    layout = lay_out(tmp_path / "fed", OPTIONS)
    assert layout.plan.fedbiscuit is not None and layout.plan.fedbiscuit.membership == "hidden"
    _run(layout, kill_in_round=GROUPED_ROUND)

    final = read_status(layout.aggregator_state)
    assert final.phase == "DONE" and final.rounds_completed == OPTIONS.rounds
    _check_one_shared_view(layout, capsys)
    _check_aggregator_learned_sizes_only(layout)
    grouped = _upload_sizes(layout, GROUPED_ROUND)
    warmup = _upload_sizes(layout, 0)
    assert len(set(grouped)) == 1 and len(set(warmup)) == 1
    # K slots of the adapter plus a count and a sizes slot per cluster: about K times a
    # warm-up upload, whatever cluster each silo is in.
    assert grouped[0] == 2 * warmup[0] + 4 * 4
