"""Run a membership-hiding grouping in memory through a relay that may misbehave.

The relay is the aggregator: it forwards every sealed report and every confirmation, and
a test gives it hooks to change what a chosen silo is shown. The driver plays each silo
honestly and records, per silo, either its confirmed view or why it aborted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from privacy.membership import (
    CandidateRoster,
    Confirmation,
    GroupingAborted,
    GroupingContext,
    GroupingView,
    MemberIdentity,
    agree_on_grouping,
    check_confirmations,
    confirm_grouping,
    open_loss_reports,
    seal_loss_report,
)
from tests.privacy.secagg.harness import NOW, PLAN_HASH, Federation

MIN_CLUSTER_SILOS = 2

# (recipient, blobs addressed to it: sender -> blob) -> what the relay hands it
Deliver = Callable[[str, dict[str, bytes]], dict[str, bytes]]


def identity(federation: Federation, silo_id: str) -> MemberIdentity:
    silo = federation.silos[silo_id]
    return MemberIdentity(silo_id, silo.certificate_pem, silo.key, federation.ca, NOW)


def grouping_context(adapters: int, attempt: int = 0) -> GroupingContext:
    return GroupingContext("fed-a", 4, attempt, PLAN_HASH, adapters)


def candidate_roster(federation: Federation, ids: Sequence[str], ctx: GroupingContext):
    return CandidateRoster(ctx, {s: federation.silos[s].certificate_pem for s in ids})


@dataclass
class Outcome:
    views: dict[str, GroupingView] = field(default_factory=dict)  # silos that may train
    aborted: dict[str, str] = field(default_factory=dict)  # silo -> reason
    confirmations: dict[str, Confirmation] = field(default_factory=dict)  # what was relayed


def run_grouping(
    federation: Federation,
    losses: Mapping[str, np.ndarray],
    adapters: int,
    *,
    rosters: Mapping[str, CandidateRoster] | None = None,
    final_rosters: Mapping[str, Sequence[str]] | None = None,
    deliver: Deliver | None = None,
) -> Outcome:
    """One grouping; ``rosters``/``final_rosters``/``deliver`` override what a silo is shown."""
    ids = sorted(losses)
    honest = candidate_roster(federation, ids, grouping_context(adapters))
    shown = {s: (rosters or {}).get(s, honest) for s in ids}
    sealed = {s: seal_loss_report(identity(federation, s), shown[s], losses[s]) for s in ids}
    outcome, views = Outcome(), {}
    confirmations = outcome.confirmations
    for s in ids:
        inbox = {sender: blobs[s] for sender, blobs in sealed.items() if s in blobs}
        if deliver is not None:
            inbox = deliver(s, inbox)
        final = (final_rosters or {}).get(s, ids)
        me = identity(federation, s)
        try:
            matrix = open_loss_reports(me, shown[s], final, inbox, losses[s])
            views[s] = agree_on_grouping(shown[s], matrix, MIN_CLUSTER_SILOS)
        except GroupingAborted as error:
            outcome.aborted[s] = str(error)
            continue
        confirmations[s] = confirm_grouping(me, views[s])
    for s, view in views.items():  # the relay forwards every confirmation to every silo
        try:
            check_confirmations(identity(federation, s), view, confirmations)
        except GroupingAborted as error:
            outcome.aborted[s] = str(error)
            continue
        outcome.views[s] = view
    return outcome
