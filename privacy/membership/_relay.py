"""The aggregator's side of a membership-hiding grouping: relay blobs it cannot open.

Phases (a ``close_*`` call moves on; the driver decides when, e.g. at a deadline)::

    REPORTS -> CONFIRMATIONS -> AGREED      (or ABORTED)

The relay checks what it can without learning anything: that a report comes from a
candidate (the mTLS-authenticated sender), is addressed to exactly the other candidates,
and that each blob's clear header names this federation, grouping, sender and recipient.
It never sees a loss, the assignment or a cluster; what it learns is who reported, and at
the end one digest that every silo on the final roster signed, which training rounds bind
into their SecAgg+ context (:class:`~privacy.secagg.RoundContext`). Blobs and confirmations
are kept in memory only: a restart re-runs the grouping as a new attempt.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from datetime import datetime
from types import MappingProxyType

from cryptography import x509

from privacy.membership._agreement import Confirmation, agreed_digest
from privacy.membership._reports import report_binding
from privacy.membership._roster import CandidateRoster, GroupingAborted
from privacy.secagg.keys import verify_silo_certificate
from protos.errors import FailedPrecondition, FedbiscuitError, InvalidInput, PermissionDenied

MAX_REPORT_BYTES = 4096  # one sealed K-vector: header, ciphertext and signature, K <= 64


class RelayPhase(enum.Enum):
    REPORTS = "reports"
    CONFIRMATIONS = "confirmations"
    AGREED = "agreed"
    ABORTED = "aborted"


class GroupingRelay:
    """One grouping attempt on the aggregator; ``sender`` is the mTLS-authenticated silo id."""

    def __init__(
        self,
        roster: CandidateRoster,
        min_cluster_silos: int,
        ca_certificate: x509.Certificate,
        now: datetime,
        *,
        revoked_serials: Collection[int] = frozenset(),
    ) -> None:
        self.roster = roster
        self.phase = RelayPhase.REPORTS
        self._min = min_cluster_silos
        self._keys = {}
        for silo_id in roster.silo_ids:
            try:
                self._keys[silo_id] = verify_silo_certificate(
                    roster.certificates[silo_id],
                    ca_certificate,
                    roster.context.federation_id,
                    silo_id,
                    now,
                    revoked_serials,
                )
            except FedbiscuitError as error:
                raise InvalidInput(f"grouping roster: {error}") from None
        self._reports: dict[str, Mapping[str, bytes]] = {}
        self._final: tuple[str, ...] = ()
        self._confirmations: dict[str, Confirmation] = {}
        self.digest = b""

    def _expect(self, phase: RelayPhase, sender: str) -> None:
        if self.phase is not phase:
            raise FailedPrecondition(
                f"silo {sender!r}: grouping round {self.roster.context.round} is in phase "
                f"{self.phase.value}, not {phase.value}"
            )

    def _abort(self, reason: str) -> None:
        self.phase = RelayPhase.ABORTED
        self._reports.clear()
        raise GroupingAborted(f"grouping round {self.roster.context.round}: {reason}")

    @property
    def reporters(self) -> tuple[str, ...]:
        """Who has reported so far (what status and metrics may show, with counts)."""
        return tuple(sorted(self._reports))

    def receive_reports(self, sender: str, sealed: Mapping[str, bytes]) -> None:
        """A candidate's sealed loss report, one blob per other candidate (idempotent)."""
        self._expect(RelayPhase.REPORTS, sender)
        context = self.roster.context
        if sender not in self.roster.certificates:
            raise PermissionDenied(f"silo {sender!r} is not a candidate of this grouping")
        expected = set(self.roster.silo_ids) - {sender}
        if set(sealed) != expected:
            raise InvalidInput(
                f"silo {sender!r}: a loss report must be sealed to every other candidate "
                f"{sorted(expected)}, got {sorted(sealed)}"
            )
        for recipient, blob in sealed.items():
            if len(blob) > MAX_REPORT_BYTES:
                raise InvalidInput(f"silo {sender!r}: a sealed report exceeds {MAX_REPORT_BYTES} B")
            binding = report_binding(blob)
            if binding != (context.federation_id, context.digest.hex(), sender, recipient):
                raise InvalidInput(
                    f"silo {sender!r}: the report for {recipient!r} is sealed for another "
                    "federation, grouping, sender or recipient"
                )
        if sender in self._reports and self._reports[sender] != sealed:
            raise FailedPrecondition(f"silo {sender!r} already sent a different loss report")
        self._reports[sender] = MappingProxyType(dict(sealed))

    def close_reports(self) -> tuple[str, ...]:
        """Fix the final roster (every candidate that reported); aborts if it is too small."""
        if self.phase is RelayPhase.REPORTS:
            needed = self.roster.context.adapters * self._min
            if len(self._reports) < needed:
                self._abort(f"only {len(self._reports)} silos reported; {needed} are needed")
        self._expect(RelayPhase.REPORTS, "aggregator")
        self.phase = RelayPhase.CONFIRMATIONS
        self._final = tuple(sorted(self._reports))
        return self._final

    def inbox(self, recipient: str) -> dict[str, bytes]:
        """What ``recipient`` on the final roster is relayed: each other reporter's blob."""
        if self.phase is not RelayPhase.CONFIRMATIONS:
            raise FailedPrecondition(
                "reports are relayed between fixing the final roster and agreement"
            )
        if recipient not in self._final:
            raise PermissionDenied(f"silo {recipient!r} is not on this grouping's final roster")
        return {s: self._reports[s][recipient] for s in self._final if s != recipient}

    def receive_confirmation(self, sender: str, confirmation: Confirmation) -> None:
        self._expect(RelayPhase.CONFIRMATIONS, sender)
        if sender not in self._final or confirmation.silo_id != sender:
            raise PermissionDenied(f"silo {sender!r} cannot confirm this grouping")
        if sender in self._confirmations and self._confirmations[sender] != confirmation:
            raise FailedPrecondition(f"silo {sender!r} already confirmed another grouping")
        self._confirmations[sender] = confirmation

    def close_confirmations(self) -> dict[str, Confirmation]:
        """Every confirmation, once all final-roster silos confirmed one digest; else abort."""
        self._expect(RelayPhase.CONFIRMATIONS, "aggregator")
        try:
            self.digest = agreed_digest(self.roster, self._final, self._confirmations, self._keys)
        except GroupingAborted as error:
            self._abort(str(error))
        self.phase = RelayPhase.AGREED
        self._reports.clear()  # nothing of the reports is needed any more
        return dict(self._confirmations)
