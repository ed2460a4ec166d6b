"""Every silo computes the same clusters, and proves it to the others before training.

Why: the aggregator relays everything and could show silos different rosters or matrices
so that they train inconsistent clusters (or so that a cluster's secure sum covers a single
silo). Each silo computes the plan's balanced assignment (optimal or greedy,
:mod:`privacy.balanced_assignment`) from the matrix it holds: both are deterministic
algorithms over the bit-identical float64 matrix with silos in sorted-id order, so equal
inputs give equal clusters (greedy breaks ties by index; if two scipy versions ever broke an
exact tie of the optimal one differently, the digests below would differ and the grouping
would abort, never diverge silently). The digest of
(grouping, candidate roster, final roster, matrix, assignment) is then signed by every silo
(its *confirmation*, the grouping's consistency step, like SecAgg+'s survivor signatures),
and a silo trains under the grouping only once it holds a valid confirmation of the same
digest from every silo on the final roster. One silo shown anything else, or one that
aborted, withholds its confirmation, so every honest silo stops before training.

Rule for silos that decline (budget) or drop before grouping: the *final roster* is the
set of candidates whose sealed reports reached the aggregator before the reporting deadline;
the aggregator relays it, and the assignment is computed over exactly those silos (sorted
by id). Silos not on it have no cluster until the next grouping and are not sampled for
training. A final roster smaller than K × ``min_cluster_silos`` aborts the grouping (the
aggregator retries it). Which silos are on the final roster is the only thing the
aggregator decides; showing two silos different final rosters is caught by the digest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from privacy.balanced_assignment import (
    Assignment,
    AssignmentMethod,
    assign_clusters,
    cluster_sizes,
)
from privacy.membership._reports import LossMatrix
from privacy.membership._roster import CandidateRoster, GroupingAborted, MemberIdentity
from privacy.secagg import transcript
from privacy.secagg.keys import sign, signature_valid


@dataclass(frozen=True)
class GroupingView:
    """What one silo concluded from a grouping; equal digests mean equal everything."""

    roster: CandidateRoster = field(repr=False)
    matrix: LossMatrix = field(repr=False)  # never logged: other silos' losses
    assignment: Assignment = field(repr=False)  # never logged: who is in which cluster
    digest: bytes

    @property
    def silo_ids(self) -> tuple[str, ...]:
        return self.matrix.silo_ids

    def cluster_of(self, silo_id: str) -> int:
        return self.assignment[self.silo_ids.index(silo_id)]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Silos per cluster (what the aggregator is allowed to learn)."""
        return tuple(cluster_sizes(self.assignment, self.roster.context.adapters))


def _view_digest(roster: CandidateRoster, matrix: LossMatrix, assignment: Assignment) -> bytes:
    return transcript.digest(
        "membership/view",
        roster.context.digest,
        roster.digest,
        list(matrix.silo_ids),
        np.ascontiguousarray(matrix.losses, dtype="<f8").tobytes(),
        [str(k) for k in assignment],
    )


def agree_on_grouping(
    roster: CandidateRoster,
    matrix: LossMatrix,
    min_cluster_silos: int,
    method: AssignmentMethod = "optimal",
) -> GroupingView:
    """The plan's balanced clusters of ``matrix`` and the digest every silo must confirm."""
    adapters = roster.context.adapters
    if matrix.losses.shape != (len(matrix.silo_ids), adapters):
        raise GroupingAborted(f"the loss matrix is not {len(matrix.silo_ids)} x {adapters}")
    needed = adapters * min_cluster_silos
    if len(matrix.silo_ids) < needed:
        raise GroupingAborted(
            f"grouping round {roster.context.round}: only {len(matrix.silo_ids)} silos "
            f"reported; {adapters} clusters of at least {min_cluster_silos} need {needed}"
        )
    assignment = assign_clusters(matrix.losses, method)
    return GroupingView(roster, matrix, assignment, _view_digest(roster, matrix, assignment))


@dataclass(frozen=True)
class Confirmation:
    """A silo's signed statement "I hold the grouping with this digest" (safe to relay: the
    digest hashes DP-noised losses and the assignment, it reveals neither)."""

    silo_id: str
    digest: bytes
    signature: bytes = field(repr=False)


def _confirmation_payload(context_digest: bytes, digest: bytes) -> bytes:
    return transcript.encode("membership/confirm", context_digest, digest)


def confirm_grouping(me: MemberIdentity, view: GroupingView) -> Confirmation:
    """This silo's confirmation of its view (relayed to every other silo)."""
    payload = _confirmation_payload(view.roster.context.digest, view.digest)
    return Confirmation(me.silo_id, view.digest, sign(me.signing_key, payload))


def _check_all(
    context_digest: bytes,
    digest: bytes,
    final_roster: Collection[str],
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    confirmations: Mapping[str, Confirmation],
    who: str,
) -> None:
    expected = set(final_roster)
    if set(confirmations) != expected:
        missing = sorted(expected - set(confirmations))
        extra = sorted(set(confirmations) - expected)
        raise GroupingAborted(
            f"{who}: grouping confirmations missing from {missing}, unexpected from {extra}; "
            "not training under this grouping"
        )
    payload = _confirmation_payload(context_digest, digest)
    for silo_id in sorted(expected):
        confirmation = confirmations[silo_id]
        if (
            confirmation.silo_id != silo_id
            or confirmation.digest != digest
            or not signature_valid(keys[silo_id], confirmation.signature, payload)
        ):
            raise GroupingAborted(
                f"{who}: silo {silo_id!r} confirmed a different grouping (another roster, "
                "matrix or assignment); not training under this grouping"
            )


def check_confirmations(
    me: MemberIdentity, view: GroupingView, confirmations: Mapping[str, Confirmation]
) -> None:
    """Returns only if every silo on the final roster confirmed exactly this view."""
    keys = view.roster.verified_keys(me)
    who = f"silo {me.silo_id!r}"
    _check_all(view.roster.context.digest, view.digest, view.silo_ids, keys, confirmations, who)


def agreed_digest(
    roster: CandidateRoster,
    final_roster: Collection[str],
    confirmations: Mapping[str, Confirmation],
    keys: Mapping[str, ec.EllipticCurvePublicKey],
) -> bytes:
    """The aggregator's check: every final-roster silo confirmed one and the same digest.

    ``keys`` are the candidates' verified certificate keys. The digest then goes into every
    training round's :class:`~privacy.secagg.RoundContext`; a grouping that fails here is
    retried instead of being sent to silos that would refuse it anyway.
    """
    digests = {c.digest for c in confirmations.values()}
    if not digests:
        raise GroupingAborted(f"grouping round {roster.context.round}: no silo confirmed it")
    if len(digests) != 1:
        raise GroupingAborted(
            f"grouping round {roster.context.round}: silos confirmed {len(digests)} different "
            "groupings"
        )
    digest = digests.pop()
    unknown = sorted(set(final_roster) - set(keys))
    if unknown:
        raise GroupingAborted(f"final roster names silos without a verified key: {unknown}")
    _check_all(roster.context.digest, digest, final_roster, keys, confirmations, "aggregator")
    return digest


def check_cluster_quorum(
    view: GroupingView, silos: Collection[str], min_cluster_silos: int
) -> tuple[int, ...]:
    """Silos of ``silos`` per cluster; aborts if a non-empty cluster has fewer than the minimum.

    A training round's secure sum reveals each cluster's sum: a silo calls this on the
    round's roster before training and on the survivors before signing them, so no cluster
    sum ever covers fewer than ``min_cluster_silos`` silos. Every honest silo reaches the
    same verdict, so an abort tells the aggregator one bit about the survivors it chose.
    """
    unknown = sorted(set(silos) - set(view.silo_ids))
    if unknown:
        raise GroupingAborted(f"silos {unknown} are not on this grouping's final roster")
    counts = [0] * view.roster.context.adapters
    for silo_id in silos:
        counts[view.cluster_of(silo_id)] += 1
    if any(0 < c < min_cluster_silos for c in counts) or not any(counts):
        raise GroupingAborted(
            f"a cluster would be summed over fewer than {min_cluster_silos} silos; refusing"
        )
    return tuple(counts)
