"""Durable aggregator state behind one abstract class (DESIGN.md §8).

`FederationStore` (base.py) is the interface the round machine uses; `SqliteStore`
(sqlite.py) is the production backend, `MemoryStore` (memory.py) one without a disk; the
records (records.py) are what every backend hands back.
Everything a store acknowledges is durable on return, so the aggregator commits before it
acknowledges a silo. Import from here: the submodules are an implementation detail.
"""

from aggregator.store.base import FederationStore
from aggregator.store.memory import MemoryMedium, MemoryStore
from aggregator.store.records import (
    ClosedAttempt,
    Decline,
    GlobalsRecord,
    LedgerEntryRecord,
    LossReport,
    SiloRecord,
    Submission,
    TaskRecord,
)
from aggregator.store.sqlite import DB_NAME, SqliteStore

__all__ = [
    "DB_NAME",
    "ClosedAttempt",
    "Decline",
    "FederationStore",
    "GlobalsRecord",
    "LedgerEntryRecord",
    "LossReport",
    "MemoryMedium",
    "MemoryStore",
    "SiloRecord",
    "SqliteStore",
    "Submission",
    "TaskRecord",
]
