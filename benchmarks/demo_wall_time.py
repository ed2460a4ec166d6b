"""Wall time of `fedbiscuit demo` (default MiniLM and --tiny) and bytes each silo uploads.

Runs the demo exactly as a user does (separate processes, mutual TLS, DP-SGD) and prints,
per variant: wall time of the whole command, CPU seconds of all its processes (demo,
aggregator, silos: user + system), the 1-minute load average before and after, federation
time from its report, the adapter update payload each silo sends per round, and held-out
agreement. On a shared machine compare CPU seconds; on a quiet one of C cores the wall time
is about max(CPU / C, the critical path). Each backbone runs with
SecAgg+ masking (the default) and in plaintext, so the cost of masking on the real wire
shows. Targets: default < 5 min, --tiny < 1 min, --tiny --algorithm fedbiscuit < 2 min on
2 CPU cores. Run from the repository
root: `python benchmarks/demo_wall_time.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAINTEXT = ["--protection", "insecure_plaintext"]
VARIANTS = {
    "tiny": ["--tiny"],
    "tiny-plaintext": ["--tiny", *PLAINTEXT],
    "tiny-fedbiscuit": ["--tiny", "--algorithm", "fedbiscuit"],
    "minilm": [],
    "minilm-plaintext": PLAINTEXT,
}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_variant(flags: list[str], folder: Path) -> tuple[float, float, dict]:
    """Wall seconds, CPU seconds of the demo and every process it waited for, and the report."""
    report_path = folder / "report.json"
    cpu_before, started = _children_cpu_s(), time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "fedbiscuit", "demo", *flags, "--report", str(report_path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall, cpu = time.monotonic() - started, _children_cpu_s() - cpu_before
    return wall, cpu, json.loads(report_path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(VARIANTS), help="run one variant")
    args = parser.parse_args()
    print(
        f"{'variant':16} {'command s':>10} {'CPU s':>7} {'load':>10} {'report s':>9} "
        f"{'update KiB':>11} {'agreement':>10}"
    )
    for name, flags in VARIANTS.items():
        if args.only and name != args.only:
            continue
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            seconds, cpu, report = run_variant(flags, Path(tmp))
        load = f"{load_before:.1f}->{os.getloadavg()[0]:.1f}"
        print(
            f"{name:16} {seconds:10.1f} {cpu:7.1f} {load:>10} {report['wall_time_s']:9.1f} "
            f"{report['update_bytes'] / 1024:11.1f} {report['agreement']['overall']:10.3f}"
        )


if __name__ == "__main__":
    main()
