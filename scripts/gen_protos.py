"""Regenerate the Python code for protos/v1/*.proto (run from anywhere).

`--check` regenerates into a temporary folder and fails if the committed files differ, so CI
catches a .proto edited without regenerating. Nobody edits the generated files by hand.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = Path("protos") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc for every .proto under protos/v1, writing below `out_root`."""
    protos = sorted((ROOT / PROTO_DIR).glob("*.proto"))
    (out_root / PROTO_DIR).mkdir(parents=True, exist_ok=True)
    for proto in protos:
        rel = proto.relative_to(ROOT)
        args = [
            "grpc_tools.protoc",
            f"-I{ROOT}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            str(rel),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {rel}")
    return [
        p.relative_to(out_root)
        for p in sorted((out_root / PROTO_DIR).iterdir())
        if p.name.endswith(GENERATED_SUFFIXES)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    args = parser.parse_args()
    if not args.check:
        for rel in generate(ROOT):
            print(f"wrote {rel}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = {
            p.relative_to(ROOT)
            for p in (ROOT / PROTO_DIR).iterdir()
            if p.name.endswith(GENERATED_SUFFIXES)
        }
        stale = [
            str(rel)
            for rel in fresh
            if rel not in committed or not filecmp.cmp(Path(tmp) / rel, ROOT / rel, shallow=False)
        ]
        stale += [str(rel) for rel in committed - set(fresh)]
    if stale:
        print("generated protobuf code is stale; run python scripts/gen_protos.py:", *stale)
        return 1
    print("generated protobuf code is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
