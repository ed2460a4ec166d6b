from dataclasses import replace

import numpy as np
import pytest

from aggregator.rounds.round_machine import RoundMachine
from aggregator.rounds.round_table import (
    Facts,
    Phase,
    RoundState,
    adapter_for,
    next_transition,
    sample_silos,
)
from aggregator.store import SqliteStore
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import FedBiscuitSpec, Plan

from ..conftest import FakeClock

PLAN = Plan(
    federation_id="fed-test",
    rounds=2,
    silos_per_round=2,
    min_silos=2,
    round_deadline_s=60.0,
    protection="insecure_plaintext",
)
SILOS = ("silo-1", "silo-2", "silo-3")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _machine(tmp_path, clock, plan=PLAN) -> RoundMachine:
    store = SqliteStore.create(tmp_path / "state", plan)
    if store.globals_record(0) is None:
        store.put_globals(0, {"w": np.zeros(4, np.float32)})
    return RoundMachine(store, clock)


def _upload(machine: RoundMachine, silo: str, value: float = 1.0) -> None:
    task = machine.pull(silo, 0).task
    seq = len(machine._store.submissions(silo_id=silo))
    machine.accept_upload(silo, task.task_id, np.full(4, value, np.float32), 0, seq)


def _decline(machine: RoundMachine, silo: str, reason: str = "budget_exhausted") -> None:
    task = machine.pull(silo, 0).task
    machine.decline(silo, task.task_id, reason, "out of budget", 7.9)


def test_round_starts_once_silos_per_round_silos_joined(tmp_path, clock):
    machine = _machine(tmp_path, clock)
    machine.join("silo-1")
    assert machine.state.phase == Phase.WAITING_FOR_SILOS

    machine.join("silo-2")

    assert machine.state.phase == Phase.TRAINING
    assert machine.state.sampled == ("silo-1", "silo-2")


def test_round_starts_with_min_silos_only_after_the_deadline(tmp_path, clock):
    plan = PLAN.model_copy(update={"silos_per_round": 3})
    machine = _machine(tmp_path, clock, plan)
    machine.join("silo-1")
    machine.join("silo-2")
    assert machine.tick().phase == Phase.WAITING_FOR_SILOS

    clock.now += plan.round_deadline_s

    assert machine.tick().phase == Phase.TRAINING
    assert machine.state.sampled == ("silo-1", "silo-2")


def test_sample_is_reproducible_from_seed_round_and_attempt():
    silos = tuple(f"silo-{i}" for i in range(10))
    draws = {sample_silos(PLAN, 0, attempt, silos) for attempt in range(5)}

    assert sample_silos(PLAN, 0, 0, silos) == sample_silos(PLAN, 0, 0, tuple(reversed(silos)))
    assert len(draws) > 1
    assert all(len(d) == PLAN.silos_per_round for d in draws)


def test_unsampled_silo_waits_and_sampled_silo_trains(tmp_path, clock):
    machine = _machine(tmp_path, clock)
    for silo in SILOS:
        machine.join(silo)
    sampled = machine.state.sampled
    idle = next(s for s in SILOS if s not in sampled)

    train = machine.pull(sampled[0], 0)

    assert train.kind == "TRAIN"
    assert train.deadline_s == clock.now + PLAN.round_deadline_s
    assert machine.pull(idle, 0).kind == "WAIT"


def test_deadline_with_too_few_uploads_reruns_the_round_and_drops_its_uploads(tmp_path, clock):
    machine = _machine(tmp_path, clock)
    for silo in SILOS:
        machine.join(silo)
    first = machine.state.sampled
    _upload(machine, first[0])

    clock.now += PLAN.round_deadline_s
    state = machine.tick()

    assert (state.phase, state.round, state.attempt) == (Phase.TRAINING, 0, 1)
    assert list((tmp_path / "state" / "blobs" / "uploads").iterdir()) == []
    assert not machine._store.submissions(round_=0, attempt=0)[0].aggregated


def test_all_sampled_silos_uploading_advances_the_round(tmp_path, clock):
    machine = _machine(tmp_path, clock)
    for silo in SILOS[:2]:
        machine.join(silo)
    _upload(machine, "silo-1", 1.0)
    _upload(machine, "silo-2", 3.0)

    state = machine.state

    assert (state.phase, state.round, state.attempt) == (Phase.TRAINING, 1, 0)
    np.testing.assert_array_equal(machine._store.load_globals(1)["w"], np.full(4, 2.0))


def test_budget_exhausted_silo_is_never_sampled_again_and_too_few_silos_fail(tmp_path, clock):
    machine = _machine(tmp_path, clock)
    for silo in SILOS:
        machine.join(silo)
    exhausted = machine.state.sampled[0]
    _decline(machine, exhausted)
    _upload(machine, machine.state.sampled[1])

    state = machine.state  # one upload < min_silos: re-run without the exhausted silo
    assert (state.round, state.attempt) == (0, 1)
    assert exhausted not in state.sampled
    _decline(machine, state.sampled[0])

    assert machine.state.phase == Phase.FAILED
    assert "min_silos is 2" in machine.state.reason
    with pytest.raises(FailedPrecondition, match="failed"):
        machine.pull(exhausted, 0)


def test_restarted_machine_resumes_the_same_round_and_attempt(tmp_path, clock):
    machine = _machine(tmp_path, clock)
    for silo in SILOS:
        machine.join(silo)
    _upload(machine, machine.state.sampled[0])
    before = machine.state
    machine._store.close()

    resumed = _machine(tmp_path, clock)

    assert resumed.state == before
    assert len(resumed._store.submissions(round_=0, attempt=0)) == 1


def _fedbiscuit_plan() -> Plan:
    return Plan(
        federation_id="test-fed",
        algorithm="fedbiscuit",
        rounds=6,
        silos_per_round=2,
        min_silos=1,
        protection="insecure_plaintext",
        fedbiscuit=FedBiscuitSpec(clusters=2, warmup_rounds_per_adapter=2, regroup_every=3),
    )


def test_fedbiscuit_table_trains_warmup_then_groups_before_training():
    plan = _fedbiscuit_plan()
    facts = Facts(0.0, ("a", "b", "c"), frozenset(), frozenset())
    warm = [adapter_for(RoundState(Phase.TRAINING, r, 0, 0.0), plan, "a") for r in range(4)]
    waiting = RoundState(Phase.WAITING_FOR_SILOS, 4, 0, 0.0)
    grouping = replace(waiting, phase=Phase.GROUPING, sampled=("a", "b", "c"))
    reported = replace(facts, reported=frozenset({"a", "b", "c"}))
    grouped = replace(waiting, attempt=1, grouped_round=4, assignment=(("a", 1), ("b", 0)))

    assert warm == [0, 0, 1, 1]
    assert next_transition(waiting, facts, plan).guard == "grouping_ready"
    assert next_transition(grouping, facts, plan) is None  # waiting for reports
    assert next_transition(grouping, reported, plan).guard == "reports_enough"
    # After grouping: training, and silo c (no cluster yet) is not among the trainable.
    assert next_transition(grouped, facts, plan).guard == "silos_ready"
    assert adapter_for(grouped, plan, "a") == 1
    assert plan.grouping_rounds() == (4,)


def test_a_visible_grouping_assigns_clusters_from_the_loss_reports(tmp_path, clock):
    plan = _fedbiscuit_plan()
    store = SqliteStore.create(tmp_path / "state", plan)
    for k in range(plan.adapters):
        store.put_globals(4, {"w": np.full(4, float(k), np.float32)}, k)
    for silo in SILOS:
        store.join_silo(silo, clock())
    store.save_state(RoundState(Phase.WAITING_FOR_SILOS, 4, 0, clock()).to_dict())
    machine = RoundMachine(store, clock)
    losses = {"silo-1": (0.2, 0.9), "silo-2": (0.8, 0.1), "silo-3": (0.3, 0.7)}
    tasks = {silo: machine.pull(silo, 0).task for silo in SILOS}

    with pytest.raises(InvalidInput, match="`sealed` must be empty"):
        machine.accept_loss_report("silo-1", tasks["silo-1"].task_id, (), 0, {"silo-2": b"x"})
    with pytest.raises(InvalidInput, match="has 1 values; the plan has 2 adapters"):
        machine.accept_loss_report("silo-1", tasks["silo-1"].task_id, (0.5,), 0)
    for seq, silo in enumerate(SILOS):
        assert machine.accept_loss_report(silo, tasks[silo].task_id, losses[silo], seq)

    state = machine.state
    assert (state.phase, state.grouped_round, state.grouping_digest) == (Phase.TRAINING, 4, "")
    assert state.assignment == (("silo-1", 0), ("silo-2", 1), ("silo-3", 0))
    assert {machine.pull(s, 0).task.adapter_index for s in state.sampled} <= {0, 1}
