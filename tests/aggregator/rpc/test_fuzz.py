"""The structured fuzzer (tests/request_fuzzer.py, short form) against a real aggregator
with a live round, from a sampled silo so requests get past the task check: whatever
arrives, no INTERNAL or UNKNOWN status and no traceback, and the round still completes."""

from __future__ import annotations

import contextlib
import logging
import time

import grpc
import numpy as np
import pytest

from aggregator.ops.status import read_status
from privacy.secagg import wire as secagg_wire
from protos import codec
from protos.v1 import federation_pb2 as pb
from tests.request_fuzzer import run, seeds_for

from ..conftest import SILOS, Federation, tiny_plan

CASES = 400
SEED = 14


def test_fuzzed_requests_of_every_type_never_crash_the_aggregator(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    server = federation.start()
    silos = federation.joined(server, SILOS)
    tasks = {silo.silo_id: silo.pull() for silo in silos}
    fuzzer = next(s for s in silos if tasks[s.silo_id].kind == pb.TASK_KIND_TRAIN)
    task = tasks[fuzzer.silo_id]
    globals_ = fuzzer.download(task)[1]
    header = fuzzer.header(task, np.zeros_like(globals_))
    data = next(codec.iter_chunks(codec.to_bytes(np.zeros_like(globals_))))
    seeds = seeds_for(task, header, data, header.ledger_entries[-1])
    caplog.set_level(logging.INFO)

    tally = run(federation.channel(server, fuzzer.silo_id), seeds, CASES, SEED)

    codes = {code for (_, code) in tally}
    assert not codes & {"INTERNAL", "UNKNOWN"}, tally
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert {method for (method, _) in tally} == set(seeds)
    # The federation goes on: every sampled silo uploads (re-runs if the fuzzer declined).
    for _ in range(3):
        for silo in silos:
            task = silo.pull()
            if task.kind == pb.TASK_KIND_TRAIN:
                with contextlib.suppress(grpc.RpcError):  # the fuzzer may have spent it
                    silo.upload(task, np.zeros_like(silo.download(task)[1]))
        if read_status(federation.root / "state").round >= 1:
            break
        federation.clock.now += federation.plan.round_deadline_s
    assert read_status(federation.root / "state").round >= 1


def test_fuzzed_requests_in_a_live_masked_round_never_crash_the_aggregator(
    federation: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    federation.plan = tiny_plan(
        protection="masking", silos_per_round=3, min_silos=3, secagg={"phase_timeout_s": 30.0}
    )
    federation.clock.now = time.time()  # certificates are checked at the aggregator's clock
    server = federation.start()
    silos = federation.joined(server, SILOS)
    fuzzer, task = silos[0], silos[0].pull()
    for other in silos[1:]:
        other.pull()
    keys = federation.secagg_client(fuzzer.silo_id, task)
    advertisement = secagg_wire.advertisement_to_proto(keys.advertise())
    globals_ = fuzzer.download(task)[1]
    header = fuzzer.header(task, np.zeros_like(globals_))
    data = next(codec.iter_chunks(codec.to_bytes(np.zeros_like(globals_))))
    seeds = seeds_for(task, header, data, header.ledger_entries[-1], advertisement)
    caplog.set_level(logging.INFO)

    tally = run(federation.channel(server, fuzzer.silo_id), seeds, CASES, SEED + 1)

    assert not {code for (_, code) in tally} & {"INTERNAL", "UNKNOWN"}, tally
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
