"""Membership-hiding FedBiscuit (DESIGN.md §3): clusters only the silos know.

Pure mechanisms, no I/O: the grouping context and candidate roster every value binds to,
loss reports signed and sealed silo to silo (the aggregator relays blobs it cannot open),
the assignment every silo computes alike and confirms to the others before training, the
per-cluster quorum a training round must meet, and the K-slot upload layouts (SecAgg+ and
CKKS) under which the aggregator learns per-cluster sums and sizes, never who is where.

Flow of one grouping (silo ``->`` aggregator ``=>`` silos)::

    CandidateRoster                  =>  every candidate
    seal_loss_report(...)       ->   relay: blobs addressed to each recipient
    final roster + blobs             =>  open_loss_reports -> agree_on_grouping
    confirm_grouping(...)       ->   relay: every confirmation
    check_confirmations(...)         (the aggregator: agreed_digest) then train under the view,
                                     each round's RoundContext binding the digest and
                                     check_cluster_quorum on its roster and survivors
"""

from privacy.membership._agreement import (
    Confirmation,
    GroupingView,
    agree_on_grouping,
    agreed_digest,
    check_cluster_quorum,
    check_confirmations,
    confirm_grouping,
)
from privacy.membership._member import GroupingMember, MemberPhase
from privacy.membership._relay import GroupingRelay, RelayPhase
from privacy.membership._reports import LossMatrix, open_loss_reports, seal_loss_report
from privacy.membership._roster import (
    CandidateRoster,
    GroupingAborted,
    GroupingContext,
    MemberIdentity,
)
from privacy.membership._slots import CkksSlotLayout, ClusterSums, KSlotLayout
from privacy.membership._view_codec import view_from_bytes, view_to_bytes

__all__ = [
    "CandidateRoster",
    "CkksSlotLayout",
    "ClusterSums",
    "Confirmation",
    "GroupingAborted",
    "GroupingContext",
    "GroupingMember",
    "GroupingRelay",
    "GroupingView",
    "KSlotLayout",
    "LossMatrix",
    "MemberIdentity",
    "MemberPhase",
    "RelayPhase",
    "agree_on_grouping",
    "agreed_digest",
    "check_cluster_quorum",
    "check_confirmations",
    "confirm_grouping",
    "open_loss_reports",
    "seal_loss_report",
    "view_from_bytes",
    "view_to_bytes",
]
