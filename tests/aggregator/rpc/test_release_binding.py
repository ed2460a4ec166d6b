"""The aggregator takes a re-release (no new ε) only when it repeats a DP-SGD release of the
same silo bound to this task's round, adapter and global; a release bound elsewhere is
refused too. The honest re-run path is in tests/silo/test_re_release.py."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from privacy.re_release import release_binding
from protos.v1 import federation_pb2 as pb

from ..conftest import SILOS, Federation


def _binding(federation: Federation, task: pb.Task, globals_sha256: str | None = None) -> str:
    return release_binding(
        federation.plan.federation_id,
        federation.plan.sha256(),
        task.round,
        task.adapter_index,
        globals_sha256 or task.globals_sha256,
    )


def _upload_with(silo, task: pb.Task, delta: np.ndarray, **entry_fields: object) -> pb.Ack:
    header = silo.header(task, delta)
    silo.entries.pop()  # replace the header's own release entry
    silo.entries.append(silo.next_entry(task.round, **entry_fields))
    del header.ledger_entries[:]
    header.ledger_entries.extend(entry.to_line() for entry in silo.entries)
    return silo.upload(task, delta, header)


def test_release_bound_to_another_global_is_refused(federation: Federation) -> None:
    server = federation.start()
    silo = federation.joined(server, SILOS[:2])[0]
    task = silo.pull()
    delta = np.zeros_like(silo.download(task)[1])

    with pytest.raises(grpc.RpcError) as caught:
        _upload_with(silo, task, delta, release_binding=_binding(federation, task, "f" * 64))

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "bound to another round, adapter or global" in caught.value.details()


def test_re_release_of_nothing_paid_is_refused(federation: Federation) -> None:
    server = federation.start()
    silo = federation.joined(server, SILOS[:2])[0]
    task = silo.pull()
    delta = np.zeros_like(silo.download(task)[1])

    with pytest.raises(grpc.RpcError) as caught:
        _upload_with(
            silo,
            task,
            delta,
            mechanism="re_release",
            re_release_of=0,
            release_binding=_binding(federation, task),
        )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not an earlier entry" in caught.value.details()


def test_release_bound_to_its_task_is_accepted(federation: Federation) -> None:
    server = federation.start()
    silo = federation.joined(server, SILOS[:2])[0]
    task = silo.pull()
    delta = np.zeros_like(silo.download(task)[1])

    ack = _upload_with(silo, task, delta, release_binding=_binding(federation, task))

    assert ack.accepted
