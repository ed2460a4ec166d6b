"""Real federation processes for e2e tests: `python -m fedbiscuit ...`, bounded polling, SIGKILL.

No timing is asserted: every wait polls a condition and fails early (with the process's log)
if a process that should be running died. The deadline measures lack of progress, not total
time: it runs out only when none of the processes waited on has written to its log for
QUIET_S, so a loaded machine slows a test down without failing it, and a hung one still
fails. DEADLINE_S bounds single calls that show no progress of their own (a health probe).
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
QUIET_S = 300
POLL_S = 0.01
_PROGRESS_EVERY_S = 1.0
# Each started process's log, to watch for progress (output appended since the last look).
_LOGS: dict[int, Path] = {}


def start(
    args: list[str], log: Path, env: dict[str, str] | None = None, prefix: list[str] | None = None
) -> subprocess.Popen:
    """`python -m fedbiscuit *args`, appending its output to `log` (kept across restarts);
    `env` adds variables, `prefix` runs it under another command (`ip netns exec NS`)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **(env or {}))
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "fedbiscuit", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    _LOGS[process.pid] = log
    return process


class Progress:
    """Whether the watched processes still make progress: some log grew within QUIET_S.

    `logs` (re-listed at every look) replaces the processes' own logs, for a process whose
    parties write logs of their own (a script, the demo)."""

    def __init__(
        self,
        processes: Iterable[subprocess.Popen],
        logs: Callable[[], Iterable[Path]] | None = None,
    ) -> None:
        own = [_LOGS[p.pid] for p in processes if p.pid in _LOGS]
        self._logs = logs or (lambda: own)
        self._seen = self._sizes()
        self._since = self._checked = time.monotonic()

    def _sizes(self) -> dict[Path, int]:
        return {log: log.stat().st_size for log in self._logs() if log.exists()}

    def stalled(self) -> bool:
        now = time.monotonic()
        if now - self._checked >= _PROGRESS_EVERY_S:
            self._checked = now
            sizes = self._sizes()
            if sizes != self._seen:
                self._seen, self._since = sizes, now
        return now - self._since > QUIET_S


def wait_exit(
    process: subprocess.Popen,
    watched: Iterable[subprocess.Popen],
    what: str,
    logs: Callable[[], Iterable[Path]] | None = None,
) -> int:
    """`process`'s exit status, waiting as long as `watched` (or `logs`) make progress."""
    progress = Progress(watched, logs)
    while process.poll() is None:
        assert not progress.stalled(), f"no log output for {QUIET_S}s waiting for {what}"
        time.sleep(POLL_S * 10)
    return process.returncode


def kill(process: subprocess.Popen) -> None:
    """SIGKILL: no handler, no flush, no goodbye."""
    process.send_signal(signal.SIGKILL)
    process.wait()


def wait_finished(
    aggregator: subprocess.Popen, aggregator_log: Path, silos: Iterable[subprocess.Popen]
) -> None:
    """The federation ran to its end: the aggregator exits 0 (else its log's tail is shown),
    then every silo agent exits 0."""
    silos = list(silos)
    status = wait_exit(aggregator, [aggregator, *silos], "the aggregator to finish")
    assert status == 0, aggregator_log.read_text()[-3000:]
    for silo in silos:
        assert wait_exit(silo, [silo], f"silo {silo.args} to finish") == 0


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
    progress = Progress(processes)
    while not predicate():
        for process in processes:
            assert process.poll() in (None, 0), f"{process.args} died waiting for {what}"
        assert not progress.stalled(), f"no log output for {QUIET_S}s waiting for {what}"
        time.sleep(POLL_S)
