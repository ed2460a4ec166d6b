"""`kill -9` of the aggregator at seeded-random points of a masked federation, again and again:
every restart resumes at the round it was in, and at the end nothing was lost or duplicated.

Kill points are chosen by progress, not time: for each kill the test waits until the
federation reaches a seeded-random round (one of the first ROUNDS - 2: rounds after a
restart can pass faster than a poll sees them, so two are left to land the kill in), then for a
seeded-random number of further committed state changes (phase, attempt, accepted uploads,
stored ledger entries), and kills the aggregator the moment it sees the last one, i.e. right
after a commit whose acknowledgement may still be in flight (or, when slow polls coalesce
commits, as soon as the next round shows). A masked round cut by a kill is
re-run with fresh keys and costs the silos again, so the plan budgets a spare participation
per kill.
"""

from __future__ import annotations

import random
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from aggregator.ops.status import FederationStatus, read_status
from aggregator.store import SqliteStore
from fedbiscuit.demo.layout import FEDERATION_ID, DemoOptions, lay_out
from privacy.ledger import Ledger
from protos.operator_formats.config_files import load_model_file, save_model_file
from protos.plan import Plan

from .processes import (
    audit,
    kill,
    start,
    status_or_none,
    stop_all,
    wait_finished,
    wait_for,
)

pytestmark = pytest.mark.slow

ROUNDS = 4
KILLS = 4
SEED = 3  # kills in rounds 0, 0, 1 and 1
EPSILON = 8.0  # the demo silos' budget


def _progress(status: FederationStatus | None) -> tuple:
    """What a commit of the aggregator changes, as seen from outside the process."""
    if status is None:
        return ()
    entries = sum(silo.ledger_entries for silo in status.silos)
    return (status.round, status.attempt, status.phase, status.round_uploads, entries)


def _budget_a_spare_participation_per_kill(plan_path: Path) -> None:
    plan = load_model_file(plan_path, Plan)
    spare = plan.dp.model_copy(update={"planned_participations": ROUNDS + KILLS + 1})
    save_model_file(plan_path, plan.model_copy(update={"dp": spare}))


def test_aggregator_sigkilled_at_random_points_resumes_without_loss_or_duplicates(tmp_path):
    layout = lay_out(
        tmp_path / "fed", DemoOptions(silos=3, rounds=ROUNDS, tiny=True, local_steps=2)
    )
    _budget_a_spare_participation_per_kill(layout.aggregator_config.parent / "plan.yaml")
    state = layout.aggregator_state
    aggregator_args = ["aggregator", "run", "--config", str(layout.aggregator_config)]
    aggregator_log = layout.logs_dir / "aggregator.log"
    rng = random.Random(SEED)
    seen: list[tuple] = []  # every progress observed, in order, each change once

    def observe() -> int:
        progress = _progress(status_or_none(state))
        if progress and (not seen or seen[-1] != progress):
            seen.append(progress)
        return len(seen)

    def in_round(target: int) -> bool:
        return observe() > 0 and (seen[-1][0] >= target or seen[-1][2] in ("DONE", "FAILED"))

    def observed(changes: int, target: int) -> bool:
        # A slow poll sees several commits as one change: kill at the latest once the round
        # after the target shows, so a loaded machine cannot let the federation run to DONE.
        progressed = observe() >= changes or seen[-1][0] > target
        return progressed or seen[-1][2] in ("DONE", "FAILED")

    aggregator = start(aggregator_args, aggregator_log)
    silos = [
        start(["silo", "run", "--config", str(config)], layout.logs_dir / f"{silo_id}.log")
        for silo_id, config in layout.silo_configs.items()
    ]
    try:
        for kill_number, target in enumerate(
            sorted(rng.randrange(ROUNDS - 2) for _ in range(KILLS))
        ):
            running = [aggregator, *silos]
            wait_for(partial(in_round, target), f"round {target}", running)
            more = partial(observed, observe() + rng.randint(1, 3), target)
            wait_for(more, "more commits", running)
            kill(aggregator)
            killed_at = read_status(state)
            assert not killed_at.finished, f"finished before kill {kill_number + 1} of {KILLS}"
            aggregator = start(aggregator_args, aggregator_log)

        wait_finished(aggregator, aggregator_log, silos)
    finally:
        stop_all([aggregator, *silos])

    final = read_status(state)
    assert final.phase == "DONE" and final.rounds_completed == ROUNDS
    # Resumed where it was: round and attempt never went back across the restarts.
    positions = [(round_, attempt) for round_, attempt, *_ in seen]
    assert positions == sorted(positions)

    store = SqliteStore.open_read_only(state)
    try:
        submissions = store.submissions()
        by_task = Counter(s.task_id for s in submissions)
        assert max(by_task.values()) == 1  # one accepted submission per task
        aggregated = Counter((s.silo_id, s.round) for s in submissions if s.aggregated)
        assert set(aggregated.values()) == {1}  # each silo counted once per round
        assert len(aggregated) == ROUNDS * len(layout.silo_configs)
        for silo in final.silos:
            path = layout.workdir / "silos" / silo.id / "state" / "ledger.jsonl"
            ledger = Ledger.open(path, federation_id=FEDERATION_ID, silo_id=silo.id)  # verifies
            held = [record.entry_json for record in store.ledger_entries(silo.id)]
            # The aggregator's copy is the silo's ledger entry for entry: none lost, none
            # duplicated (seq runs 0..n-1 on both sides), none altered.
            assert held == [entry.to_line() for entry in ledger.entries]
            assert [entry.seq for entry in ledger.entries] == list(range(len(ledger.entries)))
            assert ledger.entries[-1].epsilon_after == pytest.approx(silo.epsilon)
            assert silo.epsilon <= EPSILON
            seqs = [s.ledger_seq for s in submissions if s.silo_id == silo.id and s.aggregated]
            assert len(seqs) == len(set(seqs))  # no release paid for two updates
    finally:
        store.close()
    audited = audit(layout.workdir, layout.pki_dir / "ca.pem")
    assert audited.returncode == 0, audited.stdout + audited.stderr
