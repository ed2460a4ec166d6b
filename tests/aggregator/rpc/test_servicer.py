"""The aggregator's gRPC surface, through a real server over mutual TLS."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from aggregator.ops.status import read_status
from protos import codec
from protos.plan import DpSpec
from protos.v1 import federation_pb2 as pb

from ..conftest import SILOS, Federation, tiny_plan


def _train_tasks(silos):
    tasks = {silo.silo_id: silo.pull() for silo in silos}
    return {s: t for s, t in tasks.items() if t.kind == pb.TASK_KIND_TRAIN}


def _uploads(federation: Federation) -> int:
    return read_status(federation.root / "state").round_uploads


@pytest.mark.parametrize(("weighting", "expected_shift"), [("uniform", 2.0), ("num_examples", 2.5)])
def test_fedavg_of_known_deltas_gives_exactly_the_expected_globals(
    federation, weighting, expected_shift
):
    federation.plan = tiny_plan(weighting=weighting)
    server = federation.start()
    silos = federation.joined(server, SILOS[:2])
    tasks = [silo.pull() for silo in silos]
    manifest, start = silos[0].download(tasks[0])
    assert manifest.sha256 == tasks[0].globals_sha256

    for silo, task, value, examples in zip(silos, tasks, (1.0, 3.0), (1, 3), strict=True):
        delta = np.full_like(start, value)
        header = silo.header(task, delta)
        if weighting == "num_examples":
            header.num_examples = examples
        assert silo.upload(task, delta, header).accepted

    next_task = silos[0].pull()
    assert (next_task.kind, next_task.round) == (pb.TASK_KIND_TRAIN, 1)
    _, globals_after = silos[0].download(next_task)
    expected = (start.astype(np.float64) + expected_shift).astype(np.float32)
    np.testing.assert_array_equal(globals_after, expected)
    assert next_task.globals_sha256 == codec.sha256_of(expected)


def test_train_task_names_everything_the_silo_must_check(federation):
    server = federation.start()
    silo = federation.joined(server, SILOS[:2])[0]

    task = silo.pull()

    assert task.kind == pb.TASK_KIND_TRAIN
    assert (task.federation_id, task.round, task.phase) == ("fed-test", 0, "TRAINING")
    assert task.plan_sha256 == federation.plan.sha256()
    assert task.local_steps == federation.plan.training.local_steps
    assert task.deadline_unix_s == federation.clock.now + federation.plan.round_deadline_s


def test_deadline_with_min_silos_uploads_aggregates(federation):
    federation.plan = tiny_plan(silos_per_round=3, min_silos=2)
    server = federation.start()
    silos = federation.joined(server)
    tasks = _train_tasks(silos)
    for silo in silos[:2]:
        silo.upload(tasks[silo.silo_id], np.zeros_like(silo.download(tasks[silo.silo_id])[1]))

    federation.clock.now += federation.plan.round_deadline_s
    task = silos[0].pull()

    assert (task.round, task.kind) == (1, pb.TASK_KIND_TRAIN)


def test_deadline_with_too_few_uploads_reruns_the_round_with_a_fresh_sample(federation):
    server = federation.start()
    silos = federation.joined(server)
    tasks = _train_tasks(silos)
    first = next(iter(tasks))
    by_id = {s.silo_id: s for s in silos}
    delta = np.zeros_like(by_id[first].download(tasks[first])[1])
    by_id[first].upload(tasks[first], delta)

    federation.clock.now += federation.plan.round_deadline_s
    rerun = _train_tasks(silos)

    status = read_status(federation.root / "state")
    assert (status.round, status.attempt) == (0, 1)
    assert all(t.round == 0 for t in rerun.values())
    assert not {t.task_id for t in rerun.values()} & {t.task_id for t in tasks.values()}


# Ledger entries for an upload whose recorded release is not what the plan asks for.
_WRONG_SPEND = {
    "spend over budget": {"epsilon_after": 9.0},
    "spend delta": {"delta": 0.5},
    "spend mechanism": {"mechanism": "gaussian", "sample_rate": 1.0},
    "spend steps": {"steps": 3},
    "spend clip": {"clip_norm": 2.0},
    "spend noise": {"noise_multiplier": 0.7},
    "spend sample rate": {"sample_rate": 0.3},  # 16 / 0.3 is no whole number of examples
}


def _bad_header(silo, task, delta, problem):
    layout = silo.download(task)[0].layout()
    if problem == "another round":
        return silo.header(task, delta, round=task.round + 1)
    if problem == "old plan":
        return silo.header(task, delta, plan_sha256="0" * 64)
    if problem == "wrong layout":
        wrong = codec.Manifest((codec.TensorSpec("x", (delta.size,)),), codec.sha256_of(delta))
        return silo.header(task, delta, manifest=codec.manifest_to_proto(wrong))
    if problem == "oversize":
        huge = codec.Manifest((codec.TensorSpec("x", (1 << 30,)),), "0" * 64)
        return silo.header(task, delta, manifest=codec.manifest_to_proto(huge))
    if problem == "bad hash":
        fake = codec.Manifest(layout, codec.sha256_of(delta + 1))
        return silo.header(task, delta, manifest=codec.manifest_to_proto(fake))
    if problem == "protection":
        return silo.header(task, delta, protection="secagg")
    if problem in _WRONG_SPEND:
        header = silo.header(task, delta)
        silo.entries.pop()
        silo.entries.append(silo.next_entry(task.round, **_WRONG_SPEND[problem]))
        del header.ledger_entries[:]
        header.ledger_entries.extend(entry.to_line() for entry in silo.entries)
        return header
    return silo.header(task, delta)


@pytest.mark.parametrize(
    ("problem", "code", "words"),
    [
        ("another round", grpc.StatusCode.FAILED_PRECONDITION, "round 1"),
        ("old plan", grpc.StatusCode.FAILED_PRECONDITION, "current plan"),
        ("wrong layout", grpc.StatusCode.INVALID_ARGUMENT, "tensor 'x'"),
        ("oversize", grpc.StatusCode.RESOURCE_EXHAUSTED, "exceeds the limit"),
        ("bad hash", grpc.StatusCode.INVALID_ARGUMENT, "SHA-256"),
        ("nan", grpc.StatusCode.INVALID_ARGUMENT, "non-finite"),
        ("protection", grpc.StatusCode.FAILED_PRECONDITION, "protection 'secagg'"),
        ("spend over budget", grpc.StatusCode.FAILED_PRECONDITION, "exceeds the silo's budget"),
        ("spend delta", grpc.StatusCode.FAILED_PRECONDITION, "seq 0: delta 0.5 differs"),
        ("spend mechanism", grpc.StatusCode.FAILED_PRECONDITION, "is a gaussian release"),
        ("spend steps", grpc.StatusCode.FAILED_PRECONDITION, "seq 0: 3 steps, but the plan"),
        ("spend clip", grpc.StatusCode.FAILED_PRECONDITION, "seq 0: clip_norm 2.0 differs"),
        ("spend noise", grpc.StatusCode.FAILED_PRECONDITION, "noise_multiplier 0.7 differs"),
        ("spend sample rate", grpc.StatusCode.FAILED_PRECONDITION, "sample rate 0.3 is not"),
    ],
)
def test_invalid_upload_is_refused_with_a_reason_and_stores_nothing(
    federation, problem, code, words
):
    # The plan fixes sigma, so the aggregator can check the recorded one too.
    federation.plan = tiny_plan(dp=DpSpec(noise_multiplier=1.0))
    server = federation.start()
    silo = federation.joined(server, SILOS[:2])[0]
    task = silo.pull()
    delta = np.zeros_like(silo.download(task)[1])
    if problem == "nan":
        delta[3] = np.nan
    header = _bad_header(silo, task, delta, problem)

    with pytest.raises(grpc.RpcError) as caught:
        silo.upload(task, delta, header)

    assert caught.value.code() == code
    assert words in caught.value.details()
    assert _uploads(federation) == 0


def test_another_silos_task_is_refused(federation):
    server = federation.start()
    owner, thief = federation.joined(server, SILOS[:2])
    task = owner.pull()
    delta = np.zeros_like(owner.download(task)[1])

    with pytest.raises(grpc.RpcError) as caught:
        thief.upload(task, delta, thief.header(task, delta))

    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not issued to silo 'silo-2'" in caught.value.details()
    assert _uploads(federation) == 0


def test_upload_must_start_with_its_header(federation):
    server = federation.start()
    silo = federation.joined(server, SILOS[:2])[0]
    silo.pull()

    with pytest.raises(grpc.RpcError) as caught:
        silo.stub.UploadUpdate(iter([pb.UploadPart(data=b"\0" * 16)]), timeout=10)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UpdateHeader" in caught.value.details()


def test_task_of_a_finished_round_cannot_be_replayed(federation):
    federation.plan = tiny_plan(rounds=3)
    server = federation.start()
    silos = federation.joined(server, SILOS[:2])
    old = {s.silo_id: s.pull() for s in silos}
    delta = np.zeros_like(silos[0].download(old["silo-1"])[1])
    headers = {s.silo_id: s.header(old[s.silo_id], delta) for s in silos}
    for s in silos:
        s.upload(old[s.silo_id], delta, headers[s.silo_id])
    silos[0].pull()

    with pytest.raises(grpc.RpcError) as caught:
        silos[0].download(old["silo-1"])

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "round 0" in caught.value.details()


def test_same_upload_twice_is_accepted_once_and_a_different_payload_is_refused(federation):
    federation.plan = tiny_plan(silos_per_round=3)
    server = federation.start()
    silo = federation.joined(server)[0]
    task = silo.pull()
    delta = np.zeros_like(silo.download(task)[1])
    header = silo.header(task, delta)

    first, again = silo.upload(task, delta, header), silo.upload(task, delta, header)

    assert first.accepted and again.accepted
    assert again.message == "already accepted"
    assert _uploads(federation) == 1
    with pytest.raises(grpc.RpcError) as caught:
        silo.upload(task, delta + 1)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "different payload" in caught.value.details()


def test_exhausted_silo_is_never_scheduled_again_and_too_few_silos_fail(federation):
    server = federation.start()
    silos = federation.joined(server)
    by_id = {s.silo_id: s for s in silos}
    tasks = _train_tasks(silos)
    exhausted = next(iter(tasks))

    by_id[exhausted].decline(tasks[exhausted])  # min_silos now unreachable: re-run at once

    rerun = _train_tasks(silos)
    assert exhausted not in rerun
    assert by_id[exhausted].pull().kind == pb.TASK_KIND_WAIT
    second = next(iter(rerun))
    by_id[second].decline(rerun[second])  # one eligible silo left, min_silos is 2
    status = read_status(federation.root / "state")
    assert status.phase == "FAILED"
    assert "min_silos is 2" in status.reason
    with pytest.raises(grpc.RpcError) as caught:
        silos[0].pull()
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "failed" in caught.value.details()


def test_pull_before_join_is_refused(federation):
    server = federation.start()
    silo = federation.silo(server, "silo-1")

    with pytest.raises(grpc.RpcError) as caught:
        silo.pull()

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "call Join first" in caught.value.details()


def _with_entries(header, entries):
    del header.ledger_entries[:]
    header.ledger_entries.extend(entries)
    return header


@pytest.mark.parametrize(
    ("problem", "code", "words"),
    [
        ("unsigned", grpc.StatusCode.INVALID_ARGUMENT, "ledger entry #0: malformed"),
        ("forged", grpc.StatusCode.INVALID_ARGUMENT, "seq 0: signature does not verify"),
        ("gap", grpc.StatusCode.FAILED_PRECONDITION, "seq 1: expected seq 0"),
        ("another silo's key", grpc.StatusCode.PERMISSION_DENIED, "seq 0 is signed with another"),
        ("none", grpc.StatusCode.INVALID_ARGUMENT, "no signed ledger entry"),
        ("raised budget", grpc.StatusCode.FAILED_PRECONDITION, "seq 1: budget_epsilon 20 exceeds"),
    ],
)
def test_upload_without_a_valid_signed_entry_in_sequence_is_refused(
    federation, problem, code, words
):
    server = federation.start()
    silo, other = federation.joined(server, SILOS[:2])
    task = silo.pull()
    delta = np.zeros_like(silo.download(task)[1])
    header = silo.header(task, delta)
    entry = json.loads(header.ledger_entries[0])
    if problem == "unsigned":
        del entry["signature"]
        entries = [json.dumps(entry).encode()]
    elif problem == "forged":
        entry["signature"] = json.loads(other.next_entry(0).to_line())["signature"]
        entries = [json.dumps(entry).encode()]
    elif problem == "gap":
        entries = [silo.next_entry(task.round, seq=1).to_line()]
    elif problem == "another silo's key":
        forged = other.next_entry(task.round).model_copy(update={"silo_id": silo.silo_id})
        entries = [forged.to_line()]
    elif problem == "raised budget":  # the first entry pinned the budget at 8
        raised = silo.next_entry(task.round, budget_epsilon=20.0, epsilon_after=9.0)
        entries = [silo.entries[0].to_line(), raised.to_line()]
    else:
        entries = []

    with pytest.raises(grpc.RpcError) as caught:
        silo.upload(task, delta, _with_entries(header, entries))

    assert caught.value.code() == code
    assert words in caught.value.details()
    assert _uploads(federation) == 0
    assert read_status(federation.root / "state").silos[0].ledger_entries == 0
