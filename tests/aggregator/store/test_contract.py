"""The FederationStore contract, run against every backend in conftest.BACKENDS.

Only behaviour the round machine relies on is asserted here; what a backend does on disk is
tested next to it (test_sqlite.py).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from aggregator.store import ClosedAttempt, Decline, LossReport, TaskRecord
from protos import codec
from protos.errors import FailedPrecondition

from .conftest import PLAN, Crash, StoreOpener, ledger_entry, submission, update


def test_a_new_store_is_empty(open_store: StoreOpener) -> None:
    store = open_store()

    assert store.plan == PLAN
    assert store.load_state() is None
    assert store.globals_record(0) is None
    assert store.silos() == []
    assert store.task("r0.a0.silo-1") is None
    assert store.submission("r0.a0.silo-1") is None
    assert store.submissions() == []
    assert store.decline("r0.a0.silo-1") is None
    assert store.declines() == []
    assert store.ledger_entries() == []
    store.close()


def test_state_dir_of_another_plan_is_refused(open_store: StoreOpener) -> None:
    open_store().close()
    other = PLAN.model_copy(update={"rounds": 5})

    with pytest.raises(FailedPrecondition, match="belongs to plan"):
        open_store(other)


def test_plan_change_is_allowed_when_asked_but_never_for_another_selector(
    open_store: StoreOpener,
) -> None:
    open_store().close()
    store = open_store(PLAN.model_copy(update={"rounds": 5}), allow_plan_change=True)
    assert store.plan.rounds == 5
    store.close()
    other_selector = PLAN.model_copy(update={"selector": PLAN.selector.model_copy(
        update={"max_tokens_per_answer": 16})})  # fmt: skip

    with pytest.raises(FailedPrecondition, match="selector"):
        open_store(other_selector, allow_plan_change=True)


def test_state_and_globals_survive_a_reopen(open_store: StoreOpener) -> None:
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


def test_storing_the_same_globals_twice_gives_the_same_record(open_store: StoreOpener) -> None:
    store = open_store()
    tensors = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}

    first = store.put_globals(1, tensors)
    second = store.put_globals(1, tensors)

    assert first == second == store.globals_record(1)
    assert store.globals_record(0) is None


def test_globals_of_a_round_never_stored_cannot_be_loaded(open_store: StoreOpener) -> None:
    store = open_store()

    with pytest.raises(FailedPrecondition, match="no globals stored for round 3"):
        store.load_globals(3)


def test_globals_that_crash_before_commit_are_not_recorded(open_store: StoreOpener) -> None:
    def crash_after_blob(point: str) -> None:
        if point == "globals_written":
            raise Crash

    store = open_store(fault_hook=crash_after_blob)

    with pytest.raises(Crash):
        store.put_globals(0, {"w": np.zeros(4, np.float32)})
    store.close()

    assert open_store().globals_record(0) is None


def test_rejoining_keeps_the_first_join_time_and_seeing_updates_last_seen(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    store.join_silo("silo-2", 1.0)
    store.join_silo("silo-1", 2.0)
    rejoined = store.join_silo("silo-2", 3.0)

    seen = store.see_silo("silo-1", 4.0)

    assert (rejoined.joined_at_s, rejoined.last_seen_s) == (1.0, 3.0)
    assert (seen.joined_at_s, seen.last_seen_s) == (2.0, 4.0)
    assert [s.silo_id for s in store.silos()] == ["silo-1", "silo-2"]
    assert not any(s.exhausted for s in store.silos())


def test_a_silo_that_never_joined_is_not_seen(open_store: StoreOpener) -> None:
    store = open_store()

    assert store.see_silo("silo-9", 1.0) is None
    assert store.silos() == []


def test_issuing_a_task_twice_keeps_the_first_record(open_store: StoreOpener) -> None:
    store = open_store()
    store.add_task(TaskRecord("r0.a0.silo-1", "silo-1", 0, 0, 1.0))
    store.add_task(TaskRecord("r0.a0.silo-1", "silo-1", 0, 0, 9.0))

    assert store.task("r0.a0.silo-1").issued_at_s == 1.0
    assert store.task("unknown") is None


def test_upload_that_crashes_before_commit_leaves_no_accepted_row(
    open_store: StoreOpener,
) -> None:
    def crash_after_blob(point: str) -> None:
        if point == "upload_written":
            raise Crash

    store = open_store(fault_hook=crash_after_blob)
    store.join_silo("silo-1", 1.0)
    sub = submission()

    with pytest.raises(Crash):
        store.add_submission(sub, update())
    store.close()
    reopened = open_store()

    assert reopened.submission(sub.task_id) is None
    with pytest.raises(FailedPrecondition, match="no stored update"):
        reopened.load_update(sub.task_id)


def test_committed_upload_reads_back_until_its_attempt_closes(open_store: StoreOpener) -> None:
    store = open_store()
    sub = submission()
    store.add_submission(sub, update())

    np.testing.assert_array_equal(store.load_update(sub.task_id), update())
    assert store.submission(sub.task_id) == sub
    store.save_state({"round": 1}, ClosedAttempt(0, 0, aggregated=True))

    assert store.load_state() == {"round": 1}
    assert store.submission(sub.task_id).aggregated
    with pytest.raises(FailedPrecondition, match="no stored update"):
        store.load_update(sub.task_id)


def test_an_abandoned_attempt_drops_its_uploads_without_marking_them_aggregated(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    abandoned, kept = submission("silo-1", attempt=0), submission("silo-1", attempt=1, value=1)
    store.add_submission(abandoned, update())
    store.add_submission(kept, update(1))

    store.save_state({"round": 0, "attempt": 1}, ClosedAttempt(0, 0, aggregated=False))

    assert not store.submission(abandoned.task_id).aggregated
    with pytest.raises(FailedPrecondition, match="no stored update"):
        store.load_update(abandoned.task_id)
    np.testing.assert_array_equal(store.load_update(kept.task_id), update(1))


def test_submissions_filter_by_round_attempt_and_silo(open_store: StoreOpener) -> None:
    store = open_store()
    subs = [submission("silo-2", 0, 0), submission("silo-1", 0, 0), submission("silo-1", 0, 1)]
    for sub in subs:
        store.add_submission(sub, update())

    def ids(found: list) -> list[str]:
        return [s.task_id for s in found]

    assert ids(store.submissions()) == ["r0.a0.silo-1", "r0.a0.silo-2", "r0.a1.silo-1"]
    assert ids(store.submissions(round_=0, attempt=0)) == ["r0.a0.silo-1", "r0.a0.silo-2"]
    assert ids(store.submissions(silo_id="silo-1")) == ["r0.a0.silo-1", "r0.a1.silo-1"]
    assert store.submissions(round_=1) == []


def test_ledger_entries_come_back_in_silo_and_seq_order(open_store: StoreOpener) -> None:
    store = open_store()
    store.add_ledger_entries([ledger_entry("silo-2", 0), ledger_entry("silo-1", 1, 1)])
    store.add_ledger_entries([ledger_entry("silo-1", 0)])

    assert [(e.silo_id, e.seq) for e in store.ledger_entries()] == [
        ("silo-1", 0),
        ("silo-1", 1),
        ("silo-2", 0),
    ]
    assert store.ledger_entries("silo-2") == [ledger_entry("silo-2", 0)]


def test_a_stored_ledger_seq_is_never_replaced_and_a_batch_is_all_or_nothing(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    store.add_ledger_entries([ledger_entry("silo-1", 0)])

    with pytest.raises(FailedPrecondition, match="already stored"):
        store.add_ledger_entries([ledger_entry("silo-1", 1), ledger_entry("silo-1", 0)])

    assert [e.seq for e in open_store().ledger_entries("silo-1")] == [0]


def test_submission_keeps_the_ledger_seq_of_its_release(open_store: StoreOpener) -> None:
    store = open_store()
    sub = replace(submission(), ledger_seq=3)
    store.add_submission(sub, update())

    assert open_store().submission(sub.task_id).ledger_seq == 3


def test_budget_exhausted_decline_and_exhaustion_commit_together(open_store: StoreOpener) -> None:
    store = open_store()
    store.join_silo("silo-1", 1.0)
    decline = Decline("r0.a0.silo-1", "silo-1", 0, 0, "budget_exhausted", "", 3.9, 2.0)

    store.add_decline(decline, mark_exhausted=True)

    assert store.decline("r0.a0.silo-1") == decline
    assert store.declines(silo_id="silo-1") == [decline]
    assert store.silos()[0].exhausted


def test_other_declines_leave_the_silo_eligible(open_store: StoreOpener) -> None:
    store = open_store()
    store.join_silo("silo-1", 1.0)
    first = Decline("r0.a0.silo-1", "silo-1", 0, 0, "policy_violation", "too much", 0.5, 2.0)
    later = Decline("r1.a0.silo-1", "silo-1", 1, 0, "policy_violation", "too much", 0.5, 3.0)

    store.add_decline(first, mark_exhausted=False)
    store.add_decline(later, mark_exhausted=False)

    assert not store.silos()[0].exhausted
    assert store.declines() == [first, later]
    assert store.declines(round_=1, attempt=0) == [later]


def test_each_adapter_has_its_own_globals_per_round(open_store: StoreOpener) -> None:
    store = open_store()
    zero = store.put_globals(2, {"w": np.zeros(3, np.float32)}, adapter=0)
    one = store.put_globals(2, {"w": np.ones(3, np.float32)}, adapter=1)
    store.close()

    reopened = open_store()

    assert reopened.globals_record(2, adapter=1) == one != zero
    assert reopened.globals_record(2, adapter=2) is None
    np.testing.assert_array_equal(reopened.load_globals(2, adapter=1)["w"], np.ones(3))
    np.testing.assert_array_equal(reopened.load_globals(2)["w"], np.zeros(3))


def test_tasks_keep_their_kind_and_adapter(open_store: StoreOpener) -> None:
    store = open_store()
    store.add_task(TaskRecord("r3.a0.silo-1", "silo-1", 3, 0, 1.0, "train", 2))
    store.add_task(TaskRecord("r3.a1.eval.silo-1", "silo-1", 3, 1, 1.0, "evaluate", 0))

    assert store.task("r3.a0.silo-1").adapter_index == 2
    assert store.task("r3.a1.eval.silo-1").kind == "evaluate"


def test_loss_reports_survive_a_reopen_and_filter_by_attempt(open_store: StoreOpener) -> None:
    store = open_store()
    report = LossReport("r3.a1.eval.silo-1", "silo-1", 3, 1, (0.5, 0.25, 1.0), 7.0, 4)
    store.add_loss_report(report)
    store.add_loss_report(replace(report, task_id="r3.a2.eval.silo-2", silo_id="silo-2", attempt=2))
    store.close()

    reopened = open_store()

    assert reopened.loss_report(report.task_id) == report
    assert reopened.loss_reports(round_=3, attempt=1) == [report]
    assert reopened.loss_report("r3.a0.silo-1") is None


def test_artifacts_survive_a_reopen_and_are_listed_by_prefix(open_store: StoreOpener) -> None:
    store = open_store()
    store.put_artifact("he/e0/sealed/silo-2", b"first")
    store.put_artifact("he/e0/sealed/silo-2", b"second")
    store.put_artifact("he/e0/public", b"context")
    store.close()
    store = open_store()

    assert store.artifact("he/e0/sealed/silo-2") == b"second"
    assert store.artifact("he/e0/missing") is None
    assert store.artifact_keys("he/e0/sealed/") == ["he/e0/sealed/silo-2"]
    store.close()
