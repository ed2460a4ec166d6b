"""Wall time of `fedbiscuit demo` (default MiniLM and --tiny) and bytes each silo uploads.

Runs the demo exactly as a user does (separate processes, mutual TLS, DP-SGD) and prints,
per variant: wall time of the whole command, federation time from its report, the adapter
update payload each silo sends per round, and held-out agreement. Each backbone runs with
SecAgg+ masking (the default) and in plaintext, so the cost of masking on the real wire
shows. Targets: default < 5 min, --tiny < 1 min, --tiny --algorithm fedbiscuit < 2 min on
2 CPU cores. Run from the repository
root: `python benchmarks/demo_wall_time.py`.
"""

from __future__ import annotations

import argparse
import json
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


def run_variant(flags: list[str], folder: Path) -> tuple[float, dict]:
    report_path = folder / "report.json"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "fedbiscuit", "demo", *flags, "--report", str(report_path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started, json.loads(report_path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(VARIANTS), help="run one variant")
    args = parser.parse_args()
    print(f"{'variant':16} {'command s':>10} {'report s':>9} {'update KiB':>11} {'agreement':>10}")
    for name, flags in VARIANTS.items():
        if args.only and name != args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            seconds, report = run_variant(flags, Path(tmp))
        print(
            f"{name:16} {seconds:10.1f} {report['wall_time_s']:9.1f} "
            f"{report['update_bytes'] / 1024:11.1f} {report['agreement']['overall']:10.3f}"
        )


if __name__ == "__main__":
    main()
