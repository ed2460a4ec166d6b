"""The secure-aggregation RPCs of a masking plan, driven message by message over mTLS."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

from privacy.secagg import RoundContext, SecAggClient
from privacy.secagg import wire as secagg_wire
from protos.v1 import federation_pb2 as pb

from ..conftest import SILOS, Federation, Silo, tiny_plan

PHASE_TIMEOUT_S = 30.0


@pytest.fixture
def masked(federation: Federation) -> Federation:
    federation.plan = tiny_plan(
        protection="masking",
        silos_per_round=3,
        min_silos=3,
        secagg={"phase_timeout_s": PHASE_TIMEOUT_S},
    )
    # Certificates are checked at the aggregator's clock: start it at the real date.
    federation.clock.now = time.time()
    return federation


def _advertise(silo: Silo, task: pb.Task, client: SecAggClient) -> pb.Ack:
    request = pb.SecAggSubmission(
        federation_id=task.federation_id,
        task_id=task.task_id,
        context=task.secagg,
        advertisement=secagg_wire.advertisement_to_proto(client.advertise()),
    )
    return silo.stub.SecAggSubmit(request, timeout=10)


def _fetch(silo: Silo, task: pb.Task, stage: int = pb.SEC_AGG_STAGE_ROSTER) -> pb.SecAggBroadcast:
    request = pb.SecAggFetchRequest(
        federation_id=task.federation_id, task_id=task.task_id, stage=stage, wait_ms=0
    )
    return silo.stub.SecAggFetch(request, timeout=10)


def test_masked_tasks_join_one_fresh_secure_round_bound_to_the_plan(masked: Federation) -> None:
    server = masked.start()
    tasks = [silo.pull() for silo in masked.joined(server)]

    contexts = {secagg_wire.context_from_proto(task.secagg) for task in tasks}
    assert len(contexts) == 1
    context = contexts.pop()
    assert (context.federation_id, context.round, context.plan_hash) == (
        masked.plan.federation_id,
        0,
        masked.plan.sha256(),
    )
    assert len(context.seed) == 32


def test_the_roster_is_broadcast_once_every_sampled_silo_advertised(masked: Federation) -> None:
    server = masked.start()
    silos = masked.joined(server)
    tasks = [silo.pull() for silo in silos]
    clients = [masked.secagg_client(s.silo_id, t) for s, t in zip(silos, tasks, strict=True)]

    for silo, task, client in zip(silos[:2], tasks, clients, strict=False):
        assert _advertise(silo, task, client).accepted
    early = _fetch(silos[0], tasks[0])
    _advertise(silos[2], tasks[2], clients[2])
    roster = _fetch(silos[0], tasks[0])

    assert early.WhichOneof("step") is None and not early.aborted
    assert [a.silo_id for a in roster.roster.advertisements] == list(SILOS)


def test_a_round_below_the_minimum_aborts_before_anything_is_masked(masked: Federation) -> None:
    server = masked.start()
    silos = masked.joined(server)
    tasks = [silo.pull() for silo in silos]
    for silo, task in zip(silos[:2], tasks, strict=False):
        _advertise(silo, task, masked.secagg_client(silo.silo_id, task))

    masked.clock.now += PHASE_TIMEOUT_S  # silo-3 never advertises
    server.machine.tick()
    reply = _fetch(silos[0], tasks[0])

    assert reply.aborted and "2 distinct silos, fewer than the plan's minimum 3" in reply.message
    assert reply.WhichOneof("step") is None


def test_a_replayed_or_cross_round_message_is_refused(masked: Federation) -> None:
    server = masked.start()
    silo = masked.joined(server)[0]
    task = silo.pull()
    context = secagg_wire.context_from_proto(task.secagg)
    stale = RoundContext(context.federation_id, 5, context.plan_hash, context.seed)
    task.secagg.CopyFrom(secagg_wire.context_to_proto(stale))

    with pytest.raises(grpc.RpcError) as caught:
        _advertise(silo, task, masked.secagg_client(silo.silo_id, task))

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "message for round 5" in caught.value.details()


def test_a_silo_cannot_advertise_keys_in_another_silos_name(masked: Federation) -> None:
    server = masked.start()
    silos = masked.joined(server)
    task = silos[0].pull()
    other_task = silos[1].pull()
    impostor = masked.secagg_client(silos[1].silo_id, other_task)  # silo-2's keys, silo-1's channel

    with pytest.raises(grpc.RpcError) as caught:
        _advertise(silos[0], task, impostor)

    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_unmasked_update_is_refused_under_masking(masked: Federation) -> None:
    server = masked.start()
    silo = masked.joined(server)[0]
    task = silo.pull()
    delta = np.full(silo.download(task)[1].size, 0.01, dtype=np.float32)

    with pytest.raises(grpc.RpcError) as caught:
        silo.upload(task, delta)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "manifest dtype 'float32'" in caught.value.details()


def test_a_restart_reruns_the_masked_round_with_a_fresh_seed(masked: Federation) -> None:
    server = masked.start()
    silos = masked.joined(server)
    before = [silo.pull() for silo in silos]
    server.stop(0)

    server = masked.start()
    silos = masked.joined(server)
    after = [silo.pull() for silo in silos]
    with pytest.raises(grpc.RpcError) as caught:
        _fetch(silos[0], before[0])

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert {t.task_id for t in after}.isdisjoint(t.task_id for t in before)
    assert after[0].secagg.seed != before[0].secagg.seed
