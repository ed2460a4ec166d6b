"""The silo's side of a membership-hiding grouping, as a small state machine.

Why: the order is the protection — report, then open and agree, then confirm, and only with
every other silo's confirmation of the same digest is there a view to train under. The task
loop drives a :class:`GroupingMember` and cannot take a view out of it early; any failed
check leaves it aborted for good (the silo waits for the next grouping).

    REPORT -> OPEN -> CHECK -> CONFIRMED     (or ABORTED)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

import numpy as np

from privacy.balanced_assignment import AssignmentMethod
from privacy.membership._agreement import (
    Confirmation,
    GroupingView,
    agree_on_grouping,
    check_confirmations,
    confirm_grouping,
)
from privacy.membership._reports import open_loss_reports, seal_loss_report
from privacy.membership._roster import CandidateRoster, GroupingAborted, MemberIdentity
from protos.errors import FedbiscuitError


class MemberPhase(enum.Enum):
    REPORT = "report"
    OPEN = "open"
    CHECK = "check"
    CONFIRMED = "confirmed"
    ABORTED = "aborted"


class GroupingMember:
    """One silo in one grouping attempt. Holds its losses and key; never pickle or log it."""

    def __init__(
        self,
        me: MemberIdentity,
        roster: CandidateRoster,
        min_cluster_silos: int,
        method: AssignmentMethod,
    ) -> None:
        self.phase = MemberPhase.REPORT
        self._me = me
        self._roster = roster
        self._min = min_cluster_silos
        self._method: AssignmentMethod = method
        self._losses = np.zeros(0)
        self._view: GroupingView | None = None

    def __reduce__(self) -> object:
        raise TypeError("a GroupingMember holds a private key and losses; it cannot be pickled")

    def _enter(self, phase: MemberPhase) -> None:
        if self.phase is not phase:
            found, self.phase = self.phase, MemberPhase.ABORTED
            raise GroupingAborted(
                f"silo {self._me.silo_id!r}: grouping step {phase.value} called in {found.value}"
            )

    def _fail(self, error: FedbiscuitError) -> GroupingAborted:
        self.phase = MemberPhase.ABORTED
        return error if isinstance(error, GroupingAborted) else GroupingAborted(str(error))

    def report(self, losses: Sequence[float] | np.ndarray) -> dict[str, bytes]:
        """The DP-noised (already ledgered) loss vector, sealed to every other candidate."""
        self._enter(MemberPhase.REPORT)
        try:
            sealed = seal_loss_report(self._me, self._roster, losses)
        except FedbiscuitError as error:
            raise self._fail(error) from None
        self._losses = np.asarray(losses, dtype=np.float64)
        self.phase = MemberPhase.OPEN
        return sealed

    def open(self, final_roster: Sequence[str], inbox: Mapping[str, bytes]) -> Confirmation:
        """Open the relayed reports, compute the clusters, and confirm them to the others."""
        self._enter(MemberPhase.OPEN)
        try:
            matrix = open_loss_reports(self._me, self._roster, final_roster, inbox, self._losses)
            self._view = agree_on_grouping(self._roster, matrix, self._min, self._method)
        except FedbiscuitError as error:
            raise self._fail(error) from None
        self.phase = MemberPhase.CHECK
        return confirm_grouping(self._me, self._view)

    def check(self, confirmations: Mapping[str, Confirmation]) -> GroupingView:
        """The view to train under, once every silo on the final roster confirmed it."""
        self._enter(MemberPhase.CHECK)
        assert self._view is not None
        try:
            check_confirmations(self._me, self._view, confirmations)
        except FedbiscuitError as error:
            raise self._fail(error) from None
        self.phase = MemberPhase.CONFIRMED
        return self._view
