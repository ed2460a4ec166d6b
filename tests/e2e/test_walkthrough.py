"""The README's walkthrough, run as written: PKI, init, check-config, a silo started before
the aggregator, a masked federation on the tiny backbone to DONE, status and audit."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .processes import wait_exit

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "walkthrough" / "across-machines.sh"


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_readme_walkthrough_runs_from_pki_init_to_audit(tmp_path: Path) -> None:
    work, log = tmp_path / "federation", tmp_path / "walkthrough.log"
    bin_dir = Path(sys.executable).parent  # `fedbiscuit` and `python` of this environment
    env = dict(
        os.environ,
        WORK=str(work),
        PORT=str(_unused_port()),
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
    )
    with log.open("wb") as out:
        script = subprocess.Popen(
            ["bash", str(SCRIPT)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: the script and every party it starts
        )
    try:
        # Progress: the script's output or any party's log (WORK/<host>/*.log) grows.
        code = wait_exit(script, [], "the walkthrough", lambda: [log, *work.glob("*/*.log")])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(script.pid, signal.SIGKILL)  # parties left behind by a failed run
        script.wait()

    output = log.read_text()
    assert code == 0, output[-4000:]
    assert "federation hospitals (fedbis): DONE, round 2/2 done" in output
    assert output.count("silo.yaml: ok") == 3
    assert output.rstrip().endswith("audit: ok")
