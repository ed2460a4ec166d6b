"""A whole hidden-membership grouping and training round, both sides, in memory.

The aggregator's side is a GroupingRelay and a SecAggServer, each silo's a GroupingMember
and a SecAggClient: the round binds the digest the relay saw confirmed, every silo checks
the per-cluster quorum on the roster (before training) and on the survivors (before
signing), and the decoded K-slot sum gives the aggregator the sizes and per-cluster sums
that per-cluster masking would, from one upload per silo of one size.
"""

from __future__ import annotations

import numpy as np

from privacy.balanced_assignment import cluster_sizes
from privacy.membership import GroupingMember, GroupingRelay, KSlotLayout, check_cluster_quorum
from privacy.secagg import SMALL, RoundContext
from tests.privacy.membership.grouping_relay import candidate_roster, grouping_context, identity
from tests.privacy.secagg.harness import NOW, PLAN_HASH, Federation, Round

K, DIM, MIN = 2, 64, 3


def test_a_hidden_round_sums_each_cluster_without_the_aggregator_seeing_who(
    federation: Federation,
) -> None:
    ids = federation.ids(7)
    rng = np.random.default_rng(3)
    losses = {s: rng.normal(0.7, 0.2, K) for s in ids}
    deltas = {s: np.round(rng.normal(0, 0.3, DIM) * 2**10) / 2**10 for s in ids}

    relay = GroupingRelay(candidate_roster(federation, ids, grouping_context(K)), MIN,
                          federation.ca, NOW)  # fmt: skip
    members = {
        s: GroupingMember(identity(federation, s), relay.roster, MIN, "optimal") for s in ids
    }
    for s in ids:
        relay.receive_reports(s, members[s].report(losses[s]))
    final = relay.close_reports()
    for s in final:
        relay.receive_confirmation(s, members[s].open(final, relay.inbox(s)))
    confirmations = relay.close_confirmations()
    views = {s: members[s].check(confirmations) for s in final}

    context = RoundContext("fed-a", 5, PLAN_HASH, bytes(32), grouping_digest=relay.digest)
    layout = KSlotLayout.for_encoding(DIM, K, SMALL.encoding)
    round_ = Round(federation, SMALL, ids, layout.length, ctx=context)
    keys = round_.advertise()
    for s in ids:  # before training: every cluster of the round's roster is big enough
        check_cluster_quorum(views[s], keys.silo_ids, MIN)
    deliveries = round_.share(keys)
    uploads = {s: layout.encode(deltas[s], views[s].cluster_of(s), views[s].sizes) for s in ids}
    request = round_.mask(deliveries, uploads)
    for s in ids:  # before signing: so is every cluster of the survivors
        check_cluster_quorum(views[s], request.survivors, MIN)
    result = round_.unmask(round_.sign(request))

    view = views[ids[0]]
    decoded = layout.decode(result.total)
    assert decoded.sizes == tuple(cluster_sizes(view.assignment, K)) == decoded.counts
    for k in range(K):
        members_k = [s for s in ids if view.cluster_of(s) == k]
        np.testing.assert_array_equal(
            decoded.sums[k], sum(np.clip(deltas[s], -1, 1) for s in members_k)
        )
