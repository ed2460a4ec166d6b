"""Real federation processes for e2e tests: `python -m fedbiscuit ...`, bounded polling, SIGKILL.

No timing is asserted: every wait polls a condition until DEADLINE_S, failing early (with the
process's log) if a process that should be running died.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from aggregator.ops.status import FederationStatus, read_status
from protos.errors import FedbiscuitError

DEADLINE_S = 180
POLL_S = 0.01


def start(
    args: list[str], log: Path, env: dict[str, str] | None = None, prefix: list[str] | None = None
) -> subprocess.Popen:
    """`python -m fedbiscuit *args`, appending its output to `log` (kept across restarts);
    `env` adds variables, `prefix` runs it under another command (`ip netns exec NS`)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **(env or {}))
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "fedbiscuit", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def kill(process: subprocess.Popen) -> None:
    """SIGKILL: no handler, no flush, no goodbye."""
    process.send_signal(signal.SIGKILL)
    process.wait()


def wait_finished(
    aggregator: subprocess.Popen, aggregator_log: Path, silos: Iterable[subprocess.Popen]
) -> None:
    """The federation ran to its end: the aggregator exits 0 (else its log's tail is shown),
    then every silo agent exits 0."""
    assert aggregator.wait(timeout=DEADLINE_S) == 0, aggregator_log.read_text()[-3000:]
    for silo in silos:
        assert silo.wait(timeout=60) == 0


def stop_all(processes: Iterable[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            kill(process)


def status_or_none(state_dir: Path) -> FederationStatus | None:
    try:
        return read_status(state_dir)
    except FedbiscuitError:
        return None


def stored_entries(state_dir: Path, silo_id: str) -> int:
    """Ledger entries of `silo_id` the aggregator holds durably (0 before it has a state)."""
    status = status_or_none(state_dir)
    silo = next((s for s in status.silos if s.id == silo_id), None) if status else None
    return silo.ledger_entries if silo else 0


def ledger_lines(path: Path) -> int:
    """Complete lines (entries) in a silo's ledger file."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def audit(workdir: Path, ca_cert: Path) -> subprocess.CompletedProcess:
    """`fedbiscuit audit` over a demo workdir, as an auditor runs it."""
    return subprocess.run(
        [sys.executable, "-m", "fedbiscuit", "audit", "--ledger", str(workdir),
         "--ca", str(ca_cert)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def wait_for(
    predicate: Callable[[], bool], what: str, processes: Iterable[subprocess.Popen]
) -> None:
    processes = list(processes)
    give_up = time.monotonic() + DEADLINE_S
    while not predicate():
        for process in processes:
            assert process.poll() in (None, 0), f"{process.args} died waiting for {what}"
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        time.sleep(POLL_S)
