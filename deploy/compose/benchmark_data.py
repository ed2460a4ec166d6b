"""Write the synthetic preference benchmark as one train.jsonl per silo (compose demo only).

Usage: python benchmark_data.py OUT_DIR SILO_ID... ; a real silo points its config at its
own institution's pairs instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from selector.benchmark.generator import make_federated_dataset
from selector.data import write_jsonl


def main(out_dir: str, *silo_ids: str) -> None:
    dataset = make_federated_dataset(num_silos=len(silo_ids), train_pairs=256, test_pairs=0, seed=0)
    for silo_id, data in zip(silo_ids, dataset.values(), strict=True):
        path = Path(out_dir) / silo_id / "train.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, data.train)


if __name__ == "__main__":
    main(*sys.argv[1:])
