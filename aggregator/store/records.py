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
    task_id: str
    silo_id: str
    round: int
    attempt: int
    issued_at_s: float


@dataclass(frozen=True)
class Submission:
    """An accepted upload; `aggregated` once its attempt went into the globals."""

    task_id: str
    silo_id: str
    round: int
    attempt: int
    sha256: str
    num_examples: int
    received_at_s: float
    aggregated: bool = False


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
class PrivacySpendRecord:
    """One DP release as the silo reported it with its upload (the nascent ledger)."""

    silo_id: str
    seq: int
    round: int
    mechanism: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    clip_norm: float
    delta: float
    epsilon_after: float
    budget_epsilon: float
    accountant: str
    secure_rng: bool
    received_at_s: float


@dataclass(frozen=True)
class GlobalsRecord:
    round: int
    sha256: str
    layout: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class ClosedAttempt:
    """A training attempt whose uploads are no longer needed (aggregated or abandoned)."""

    round: int
    attempt: int
    aggregated: bool
