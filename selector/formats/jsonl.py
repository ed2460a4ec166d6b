"""Our own JSONL (`prompt`, `chosen`, `rejected`, optional `silo`): `selector.data` reads it."""

from selector.data import read_jsonl

FORMAT = "jsonl"

__all__ = ["FORMAT", "read_jsonl"]
