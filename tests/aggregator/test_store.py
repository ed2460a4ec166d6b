"""Contract tests for FederationStore backends (parametrize `store` with each backend)."""

from pathlib import Path

import numpy as np
import pytest

from aggregator.store import (
    ClosedAttempt,
    Decline,
    PrivacySpendRecord,
    SqliteStore,
    Submission,
    TaskRecord,
)
from protos import codec
from protos.errors import FailedPrecondition
from protos.plan import Plan

PLAN = Plan(federation_id="fed-test", rounds=2, silos_per_round=2, min_silos=1)


class Crash(Exception):
    pass


@pytest.fixture(params=["sqlite"])
def open_store(request, tmp_path):
    """Opens (or re-opens, as after a restart) the backend on the same durable location."""

    def opener(plan: Plan = PLAN, **kwargs):
        return SqliteStore.create(tmp_path / "state", plan, **kwargs)

    return opener


def _spend(silo: str, seq: int, round_: int = 0) -> PrivacySpendRecord:
    return PrivacySpendRecord(
        silo, seq, round_, "dp-sgd", 1.1, 0.05, 5, 1.0, PLAN.delta, 0.7, 4.0, "rdp", False, 10.0
    )


def _submission(silo: str = "silo-1", round_: int = 0, attempt: int = 0) -> Submission:
    update = np.arange(4, dtype=np.float32)
    task_id = f"r{round_}.a{attempt}.{silo}"
    return Submission(task_id, silo, round_, attempt, codec.sha256_of(update), 0, 10.0)


def _upload_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "state" / "blobs" / "uploads").iterdir())


def test_state_dir_of_another_plan_is_refused(open_store):
    open_store().close()
    other = PLAN.model_copy(update={"rounds": 5})

    with pytest.raises(FailedPrecondition, match="belongs to plan"):
        open_store(other)


def test_plan_change_is_allowed_when_asked_but_never_for_another_selector(open_store):
    open_store().close()
    store = open_store(PLAN.model_copy(update={"rounds": 5}), allow_plan_change=True)
    assert store.plan.rounds == 5
    store.close()
    other_selector = PLAN.model_copy(update={"selector": PLAN.selector.model_copy(
        update={"max_tokens_per_answer": 16})})  # fmt: skip

    with pytest.raises(FailedPrecondition, match="selector"):
        open_store(other_selector, allow_plan_change=True)


def test_state_and_globals_survive_a_reopen(open_store):
    store = open_store()
    tensors = {"b": np.ones((2, 3), np.float32), "a": np.arange(4, dtype=np.float32)}
    record = store.put_globals(0, tensors)
    store.save_state({"phase": "TRAINING", "round": 0})
    store.close()

    reopened = open_store()

    assert reopened.load_state() == {"phase": "TRAINING", "round": 0}
    assert reopened.globals_record(0) == record
    assert [t.name for t in record.layout] == ["a", "b"]
    loaded = reopened.load_globals(0)
    np.testing.assert_array_equal(loaded["b"], tensors["b"])
    assert codec.flatten(loaded)[0].sha256 == record.sha256


def test_upload_that_crashes_before_commit_leaves_no_accepted_row(open_store, tmp_path):
    def crash_after_blob(point: str) -> None:
        if point == "upload_written":
            raise Crash

    store = open_store(fault_hook=crash_after_blob)
    store.join_silo("silo-1", 1.0)
    sub = _submission()

    with pytest.raises(Crash):
        store.add_submission(sub, np.arange(4, dtype=np.float32), _spend("silo-1", 1))
    store.close()
    reopened = open_store()

    assert reopened.submission(sub.task_id) is None
    assert reopened.privacy_spends("silo-1") == []
    assert _upload_files(tmp_path) == []


def test_committed_upload_reads_back_until_its_attempt_closes(open_store, tmp_path):
    store = open_store()
    sub = _submission()
    update = np.arange(4, dtype=np.float32)
    store.add_submission(sub, update, _spend("silo-1", 1))

    np.testing.assert_array_equal(store.load_update(sub.task_id), update)
    assert store.privacy_spends("silo-1") == [_spend("silo-1", 1)]
    store.save_state({"round": 1}, ClosedAttempt(0, 0, aggregated=True))

    assert _upload_files(tmp_path) == []
    assert store.submission(sub.task_id).aggregated
    with pytest.raises(FailedPrecondition, match="no stored update"):
        store.load_update(sub.task_id)


def test_budget_exhausted_decline_and_exhaustion_commit_together(open_store):
    store = open_store()
    store.join_silo("silo-1", 1.0)
    decline = Decline("r0.a0.silo-1", "silo-1", 0, 0, "budget_exhausted", "", 3.9, 2.0)

    store.add_decline(decline, mark_exhausted=True)

    assert store.decline("r0.a0.silo-1") == decline
    assert store.declines(silo_id="silo-1") == [decline]
    assert store.silos()[0].exhausted


def test_issuing_a_task_twice_keeps_the_first_record(open_store):
    store = open_store()
    store.add_task(TaskRecord("r0.a0.silo-1", "silo-1", 0, 0, 1.0))
    store.add_task(TaskRecord("r0.a0.silo-1", "silo-1", 0, 0, 9.0))

    assert store.task("r0.a0.silo-1").issued_at_s == 1.0
    assert store.task("unknown") is None


def test_read_only_view_sees_the_state_without_a_plan_argument(open_store, tmp_path):
    store = open_store()
    store.join_silo("silo-1", 1.0)

    view = SqliteStore.open_read_only(tmp_path / "state")

    assert view.plan == PLAN
    assert [s.silo_id for s in view.silos()] == ["silo-1"]
    view.close()
    store.close()
