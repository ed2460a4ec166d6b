"""The rows a federation store keeps, as frozen dataclasses shared by every backend.

They carry no secrets and no tensors (updates and globals are stored and loaded separately),
so they can be logged, compared in tests and handed to the status view.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos.codec import TensorSpec


@dataclass(frozen=True)
class SiloRecord:
    silo_id: str
    joined_at_s: float
    exhausted: bool
    last_seen_s: float


@dataclass(frozen=True)
class TaskRecord:
    """An issued task. `kind` is "train" (train `adapter_index`, upload its delta) or
    "evaluate" (a FedBiscuit grouping: evaluate every adapter, report DP-noised losses)."""

    task_id: str
    silo_id: str
    round: int
    attempt: int
    issued_at_s: float
    kind: str = "train"
    adapter_index: int = 0


@dataclass(frozen=True)
class Submission:
    """An accepted upload; `aggregated` once its attempt went into the globals; `ledger_seq`
    is the seq of the silo's ledger entry recording its release (-1: none)."""

    task_id: str
    silo_id: str
    round: int
    attempt: int
    sha256: str
    num_examples: int
    received_at_s: float
    aggregated: bool = False
    ledger_seq: int = -1


@dataclass(frozen=True)
class LossReport:
    """A silo's DP-noised loss vector from a grouping (one mean loss per adapter, already
    clipped and noised by the silo); `ledger_seq` is the ledger entry of that release."""

    task_id: str
    silo_id: str
    round: int
    attempt: int
    losses: tuple[float, ...]
    received_at_s: float
    ledger_seq: int


@dataclass(frozen=True)
class Decline:
    task_id: str
    silo_id: str
    round: int
    attempt: int
    reason_code: str
    message: str
    epsilon_spent: float
    received_at_s: float


@dataclass(frozen=True)
class LedgerEntryRecord:
    """One verified, signed ledger entry of a silo, kept verbatim (`entry_json`) so an auditor
    can re-verify its signature; the other fields are indexed copies for status views."""

    silo_id: str
    seq: int
    round: int
    entry_hash: str
    epsilon_after: float
    budget_epsilon: float
    entry_json: bytes
    received_at_s: float


@dataclass(frozen=True)
class GlobalsRecord:
    """One adapter's globals at the start of a round (FedBis: adapter 0 only)."""

    round: int
    sha256: str
    layout: tuple[TensorSpec, ...]
    adapter: int = 0


@dataclass(frozen=True)
class ClosedAttempt:
    """A training attempt whose uploads are no longer needed (aggregated or abandoned)."""

    round: int
    attempt: int
    aggregated: bool
