"""`fedbiscuit demo` stopped with SIGTERM (as `timeout` does) stops the aggregator and silos
it started, and prints its workdir on one line however narrow the terminal."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .processes import start, status_or_none, stop_all, wait_exit, wait_for

pytestmark = pytest.mark.slow


def _processes_mentioning(text: str) -> list[int]:
    """Live (not zombie) processes whose command line contains `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def test_demo_stopped_with_sigterm_leaves_no_party_running(tmp_path: Path) -> None:
    workdir = tmp_path / ("a-folder-with-a-rather-long-name-" * 3) / "demo"
    log = tmp_path / "demo.log"
    demo = start(
        ["demo", "--tiny", "--silos", "3", "--rounds", "40", "--workdir", str(workdir)],
        log,
        env={"COLUMNS": "60"},
    )
    try:
        state = workdir / "aggregator" / "state"
        wait_for(lambda: status_or_none(state) is not None, "the aggregator's state", [demo])
        parties = [pid for pid in _processes_mentioning(str(workdir)) if pid != demo.pid]
        assert len(parties) == 4, parties  # the aggregator and three silos

        demo.send_signal(signal.SIGTERM)
        code = wait_exit(demo, [demo], "the demo to stop")
    finally:
        stop_all([demo])

    assert code == 128 + signal.SIGTERM
    assert _processes_mentioning(str(workdir)) == []
    assert any(f"workdir {workdir}" in line for line in log.read_text().splitlines())
