"""Membership-hiding grouping: silos agree on clusters the relay cannot see or split."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from privacy.balanced_assignment import optimal_assignment
from privacy.membership import (
    CandidateRoster,
    GroupingAborted,
    agree_on_grouping,
    agreed_digest,
    check_cluster_quorum,
    open_loss_reports,
    seal_loss_report,
    view_from_bytes,
    view_to_bytes,
)
from privacy.secagg import SMALL, Roster, RoundContext, SecAggAborted, SecAggClient
from privacy.secagg.keys import verify_silo_certificate
from protos.errors import InvalidInput
from tests.privacy.membership.grouping_relay import (
    candidate_roster,
    grouping_context,
    identity,
    run_grouping,
)
from tests.privacy.secagg.harness import NOW, PLAN_HASH, Federation

K = 3


def _losses(ids: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s: rng.normal(0.7, 0.2, K) for s in ids}


def test_every_silo_computes_the_same_optimal_clusters(federation: Federation) -> None:
    ids = federation.ids(7)
    losses = _losses(ids)
    outcome = run_grouping(federation, losses, K)
    assert not outcome.aborted and set(outcome.views) == set(ids)
    digests = {v.digest for v in outcome.views.values()}
    assert len(digests) == 1
    view = outcome.views[ids[0]]
    np.testing.assert_array_equal(view.matrix.losses, np.stack([losses[s] for s in ids]))
    assert view.assignment == optimal_assignment(np.stack([losses[s] for s in ids]))
    assert sorted(view.sizes) == [2, 2, 3]
    shown = repr(view)  # what a log line would carry: the digest, no loss, no assignment
    assert "losses" not in shown and "assignment" not in shown and "matrix" not in shown


def test_the_relay_sees_only_blobs_that_do_not_open_for_it(federation: Federation) -> None:
    ids = federation.ids(4)
    losses = _losses(ids)
    roster = candidate_roster(federation, ids, grouping_context(K))
    sealed = seal_loss_report(identity(federation, ids[0]), roster, losses[ids[0]])
    assert set(sealed) == set(ids[1:])
    for blob in sealed.values():
        assert losses[ids[0]].astype("<f8").tobytes() not in blob
        assert repr(float(losses[ids[0]][0])).encode() not in blob
    with pytest.raises(GroupingAborted, match="does not open"):
        # silo 2 opening the blob meant for silo 1 (the relay swapped the recipient name)
        forged = {ids[0]: sealed[ids[1]].replace(ids[1].encode(), ids[2].encode())}
        open_loss_reports(
            identity(federation, ids[2]), roster, [ids[0], ids[2]], forged, losses[ids[2]]
        )


def _flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


VICTIMS = ("silo-00", "silo-03")


def _tamper(kind: str, federation: Federation, ids: list[str], losses):
    """What a malicious relay does to VICTIMS' inboxes (the others get everything intact)."""
    target = ids[5]
    stale = {}
    if kind == "replay-other-attempt":
        old = candidate_roster(federation, ids, grouping_context(K, attempt=1))
        stale = seal_loss_report(identity(federation, target), old, losses[target])
    if kind == "replay-other-recipient":
        roster = candidate_roster(federation, ids, grouping_context(K))
        stale = seal_loss_report(identity(federation, target), roster, losses[target])

    def deliver(recipient: str, inbox: dict[str, bytes]) -> dict[str, bytes]:
        if recipient not in VICTIMS:
            return inbox
        inbox = dict(inbox)
        if kind == "drop":
            del inbox[target]
        elif kind == "alter":
            inbox[target] = _flip_last_byte(inbox[target])
        elif kind == "replay-other-attempt":
            inbox[target] = stale[recipient]
        elif kind == "replay-other-recipient":
            inbox[target] = stale[ids[6]]
        elif kind == "relabel-sender":  # one silo's report presented as another's
            inbox[target], inbox[ids[6]] = inbox[ids[6]], inbox[target]
        elif kind == "duplicate":  # a second copy under another silo's name
            inbox[ids[6]] = inbox[target]
        return inbox

    return deliver


@pytest.mark.parametrize(
    "kind",
    [
        "drop",
        "alter",
        "replay-other-attempt",
        "replay-other-recipient",
        "relabel-sender",
        "duplicate",
    ],
)
def test_tampering_with_one_report_for_some_silos_stops_every_silo(
    federation: Federation, kind: str
) -> None:
    ids = federation.ids(8)
    losses = _losses(ids, seed=1)
    outcome = run_grouping(federation, losses, K, deliver=_tamper(kind, federation, ids, losses))
    assert outcome.views == {}, "no silo may train under a tampered grouping"
    assert set(outcome.aborted) == set(ids)
    for victim in VICTIMS:
        assert "confirmations" not in outcome.aborted[victim]  # caught at the report itself
    for other in set(ids) - set(VICTIMS):
        assert "confirmations missing from" in outcome.aborted[other]


def test_withholding_a_silo_from_some_silos_final_roster_stops_every_silo(
    federation: Federation,
) -> None:
    ids = federation.ids(8)
    losses = _losses(ids, seed=2)
    smaller = [s for s in ids if s != ids[5]]
    withheld = run_grouping(
        federation,
        losses,
        K,
        final_rosters={v: smaller for v in VICTIMS},
        deliver=lambda r, inbox: (
            {s: b for s, b in inbox.items() if s != ids[5]} if r in VICTIMS else inbox
        ),
    )
    assert withheld.views == {} and set(withheld.aborted) == set(ids)


def test_two_silos_shown_different_candidate_rosters_stop_every_silo(
    federation: Federation,
) -> None:
    ids = federation.ids(8)
    losses = _losses(ids, seed=3)
    ctx = grouping_context(K)
    honest = candidate_roster(federation, ids, ctx)
    # silo-00 is shown a roster where silo-05's certificate is silo-09's (the same CA).
    swapped = dict(honest.certificates)
    swapped[ids[5]] = federation.silos[federation.ids(10)[9]].certificate_pem
    with pytest.raises(GroupingAborted, match="names 'silo-09'"):
        run_grouping(federation, losses, K, rosters={ids[0]: CandidateRoster(ctx, swapped)})
    # ...or a roster with one more candidate: reports signed over it fail for the others.
    larger = candidate_roster(federation, [*ids, federation.ids(10)[9]], ctx)
    outcome = run_grouping(federation, losses, K, rosters={ids[0]: larger})
    assert outcome.views == {} and set(outcome.aborted) == set(ids)


def test_a_declined_silo_is_left_out_and_the_rest_agree(federation: Federation) -> None:
    """The rule: the final roster is whoever's reports arrived; everyone groups exactly it."""
    ids = federation.ids(8)
    losses = _losses(ids, seed=4)
    declined = ids[2]
    reporters = {s: v for s, v in losses.items() if s != declined}
    # The decliner was a candidate (reports were sealed to it too) but sent nothing.
    roster = candidate_roster(federation, ids, grouping_context(K))
    sealed = {s: seal_loss_report(identity(federation, s), roster, reporters[s]) for s in reporters}
    views = {}
    for s in reporters:
        inbox = {sender: blobs[s] for sender, blobs in sealed.items() if sender != s}
        me = identity(federation, s)
        matrix = open_loss_reports(me, roster, sorted(reporters), inbox, losses[s])
        views[s] = agree_on_grouping(roster, matrix, 2)
    assert len({v.digest for v in views.values()}) == 1
    view = next(iter(views.values()))
    assert declined not in view.silo_ids and sorted(view.sizes) == [2, 2, 3]


def test_too_few_reporters_abort_the_grouping(federation: Federation) -> None:
    ids = federation.ids(5)
    outcome = run_grouping(federation, _losses(ids), K)  # 5 < 3 clusters x 2
    assert outcome.views == {}
    assert all("need 6" in reason for reason in outcome.aborted.values())


def test_a_round_with_a_cluster_below_the_minimum_is_refused(federation: Federation) -> None:
    ids = federation.ids(9)
    view = run_grouping(federation, _losses(ids, seed=5), K).views[ids[0]]
    members = [[s for s in ids if view.cluster_of(s) == k] for k in range(K)]
    assert check_cluster_quorum(view, ids, 3) == view.sizes
    survivors = [s for s in ids if s != members[1][0]]
    with pytest.raises(GroupingAborted, match="fewer than 3"):
        check_cluster_quorum(view, survivors, 3)
    with pytest.raises(GroupingAborted, match="not on this grouping"):
        check_cluster_quorum(view, [*ids, "silo-20"], 2)


def _keys(federation: Federation, ids: list[str]):
    return {
        s: verify_silo_certificate(
            federation.silos[s].certificate_pem, federation.ca, "fed-a", s, NOW
        )
        for s in ids
    }


def test_the_aggregator_learns_one_agreed_digest_or_retries(federation: Federation) -> None:
    ids = federation.ids(7)
    losses = _losses(ids, seed=6)
    roster = candidate_roster(federation, ids, grouping_context(K))
    outcome = run_grouping(federation, losses, K)
    digest = agreed_digest(roster, ids, outcome.confirmations, _keys(federation, ids))
    assert digest == outcome.views[ids[0]].digest
    shown_less = {ids[0]: ids[:6], ids[1]: ids[:6]}
    split = run_grouping(
        federation,
        losses,
        K,
        final_rosters=shown_less,
        deliver=lambda r, inbox: {
            s: b for s, b in inbox.items() if r not in shown_less or s != ids[6]
        },
    )
    assert len({c.digest for c in split.confirmations.values()}) == 2
    with pytest.raises(GroupingAborted, match="2 different groupings"):
        agreed_digest(roster, ids, split.confirmations, _keys(federation, ids))


def test_silos_holding_different_groupings_refuse_each_others_keys_before_training(
    federation: Federation,
) -> None:
    ids = federation.ids(4)
    mine, theirs = (
        RoundContext("fed-a", 5, PLAN_HASH, bytes(32), grouping_digest=bytes([b]) * 32)
        for b in (1, 2)
    )
    adverts = []
    for s in ids:
        ctx = theirs if s == ids[3] else mine
        silo = federation.silos[s]
        client = SecAggClient(SMALL, ctx, s, silo.certificate_pem, silo.key, federation.ca, NOW)
        adverts.append((client, client.advertise()))
    # Relayed as is, the odd one out is another round; relabelled, its signature fails.
    relabelled = replace(adverts[3][1], context=mine)
    for odd, match in ((adverts[3][1], "not this round"), (relabelled, "not signed by it")):
        roster = Roster(mine, (*(a for _, a in adverts[:3]), odd))
        client = SecAggClient(
            SMALL, mine, ids[0], federation.silos[ids[0]].certificate_pem,
            federation.silos[ids[0]].key, federation.ca, NOW,
        )  # fmt: skip
        client.advertise()
        with pytest.raises(SecAggAborted, match=match):
            client.share_keys(roster)


def test_a_stored_view_reloads_only_if_it_reproduces_the_confirmed_digest(
    federation: Federation,
) -> None:
    ids = federation.ids(6)
    view = run_grouping(federation, _losses(ids, seed=7), K).views[ids[2]]
    stored = view_to_bytes(view, "optimal", 2)
    reloaded = view_from_bytes(stored, "state/grouping.json")
    assert reloaded.digest == view.digest and reloaded.assignment == view.assignment
    assert reloaded.cluster_of(ids[2]) == view.cluster_of(ids[2])
    raw = json.loads(stored)
    losses = bytearray(bytes.fromhex(raw["losses"]))
    losses[3] ^= 1  # one bit of one loss
    with pytest.raises(InvalidInput, match="does not reproduce"):
        view_from_bytes(json.dumps({**raw, "losses": losses.hex()}).encode(), "g.json")
    with pytest.raises(InvalidInput, match="malformed"):
        view_from_bytes(stored[:-5], "g.json")
