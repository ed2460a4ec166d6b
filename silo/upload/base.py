"""The one interface the task loop uploads through, whatever the plan's protection mode.

A mode (plaintext, SecAgg+ masking, CKKS encryption, …) is one :class:`Uploader` subclass in
its own module of `silo/upload/`, registered once in `silo/upload/__init__.py`. The task
loop asks the uploader for the globals a task starts from and for a :class:`TrainUpload`
per TRAIN task, and calls its three steps in the privacy contract's order (DESIGN.md §7):
``before_training`` (before any budget is spent: a round too small to hide this silo
aborts here), then ``send`` (after the ledger entry is on disk), then ``after_send``. An
uploader may also refuse a task before any spend (``refusal``), name what a DP-SGD release
binds (``release_binding``), and decide how a FedBiscuit loss report leaves
(``reusable_losses``, ``report_losses``, ``after_report``: in the clear by default; sealed
silo to silo under hidden membership, `silo/upload/hidden.py`).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from privacy.ledger import LedgerEntry
from privacy.re_release import release_binding
from protos import codec
from protos.errors import PolicyViolation
from protos.plan import Plan
from protos.v1 import federation_pb2 as pb
from silo.client import SiloClient
from silo.config import SiloConfig
from silo.grouping_store import PaidLosses
from silo.identity import SiloIdentity
from silo.policy import SiloPolicy

_MIB = 1 << 20


@dataclass(frozen=True)
class UploadContext:
    """What an uploader may use, fixed for one run of the task loop.

    `num_examples` is the silo's training-set size; a mode sends it only where the plan
    weights by example count (it reveals the silo's size).
    """

    config: SiloConfig
    identity: SiloIdentity
    client: SiloClient
    plan: Plan
    plan_sha256: str
    stop: threading.Event
    wait_ms: int
    num_examples: int


class TrainUpload(ABC):
    """One TRAIN task's upload, driven by the task loop in this order."""

    roster: tuple[str, ...] = ()
    """Who this upload is summed with, once known after `before_training` (masking: the
    silos that advertised keys); a paid-for release is re-sent only to the same roster."""
    sent_bytes: int = 0
    """Payload bytes of the upload once sent, for the silo's log (0: not counted)."""

    def before_training(self) -> None:  # noqa: B027 (optional step)
        """Work that must succeed before this silo spends budget on the task."""

    @abstractmethod
    def send(
        self, manifest: codec.Manifest, update: np.ndarray, ledger_entries: list[bytes]
    ) -> pb.Ack:
        """Protect `update` (laid out as `manifest`) and upload it with the ledger entries
        the aggregator lacks (the last one records this release)."""

    def after_send(self) -> None:  # noqa: B027 (optional step)
        """Work after the aggregator acknowledged the upload."""


class Uploader(ABC):
    """A protection mode on the silo: how globals arrive and how updates leave."""

    protection: ClassVar[str]
    membership: ClassVar[str] = "visible"  # FedBiscuit's `membership`: who may know clusters

    def __init__(self, context: UploadContext) -> None:
        self._context = context

    @classmethod
    def admit(cls, policy: SiloPolicy, plan: Plan) -> None:
        """Raise PolicyViolation if the silo's operator did not agree to this mode."""
        required = policy.required_protection
        if required is not None and cls.protection != required:
            raise PolicyViolation(
                f"plan.protection is {plan.protection!r} but policy.required_protection is "
                f"{required!r}"
            )

    def serve(self) -> None:  # noqa: B027 (optional duty)
        """Called before every task pull: a mode's standing duties (none by default)."""

    def globals_for(
        self, task: pb.Task, adapter_index: int | None = None
    ) -> tuple[codec.Manifest, np.ndarray]:
        """Globals for `task` (`adapter_index` None: a TRAIN task's own adapter; k: adapter
        k of an EVALUATE task), checked before any spend. By default downloaded in the
        clear and checked against the plan's size limit and the task's hash."""
        max_bytes = int(self._context.plan.max_update_mib * _MIB)
        return self._context.client.download_globals(task, max_bytes, adapter_index)

    def refusal(self, task: pb.Task) -> str | None:
        """Why this silo refuses the validated TRAIN `task` before spending anything (the
        task loop declines it with reason "policy_violation"), or None."""
        return None

    def release_binding(self, task: pb.Task) -> str:
        """The binding of the DP-SGD release a TRAIN task asks for (privacy.re_release)."""
        return release_binding(
            self._context.config.federation_id,
            task.plan_sha256,  # checked against the accepted plan by the task loop
            task.round,
            task.adapter_index,
            task.globals_sha256,
        )

    @abstractmethod
    def begin(self, task: pb.Task) -> TrainUpload:
        """The upload of one validated TRAIN task this silo can afford."""

    def reusable_losses(self, task: pb.Task, ledger: Sequence[LedgerEntry]) -> PaidLosses | None:
        """A loss report this silo already paid for that an EVALUATE `task` may re-send
        unpaid (`ledger`: the silo's entries), or None: by default every report is paid."""
        return None

    def report_losses(self, task: pb.Task, paid: PaidLosses, ledger_entries: list[bytes]) -> pb.Ack:
        """Send the noised loss vector of an EVALUATE task with the ledger entries the
        aggregator lacks (the last one records its release). By default in the clear."""
        return self._context.client.report_losses(task, list(paid.losses), ledger_entries)

    def after_report(self, task: pb.Task) -> None:  # noqa: B027 (optional step)
        """Work after the aggregator acknowledged a loss report (none by default)."""
