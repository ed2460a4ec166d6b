"""Durable aggregator state behind one abstract class (DESIGN.md §8).

`FederationStore` (base.py) is the interface the round machine uses; `SqliteStore`
(sqlite.py) is the production backend; the records (records.py) are what both hand back.
Everything a store acknowledges is durable on return, so the aggregator commits before it
acknowledges a silo. Import from here: the submodules are an implementation detail.
"""

from aggregator.store.base import FederationStore
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
    "SiloRecord",
    "SqliteStore",
    "Submission",
    "TaskRecord",
]
