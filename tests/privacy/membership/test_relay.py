"""The aggregator's grouping relay: routes sealed reports and confirmations, learns no loss."""

from __future__ import annotations

import numpy as np
import pytest

from privacy.membership import (
    GroupingAborted,
    GroupingMember,
    GroupingRelay,
    MemberPhase,
    RelayPhase,
    agree_on_grouping,
    confirm_grouping,
    open_loss_reports,
    seal_loss_report,
)
from protos.errors import InvalidInput, PermissionDenied
from tests.privacy.membership.grouping_relay import candidate_roster, grouping_context, identity
from tests.privacy.secagg.harness import NOW, Federation

K = 2


def _relay(federation: Federation, ids: list[str], attempt: int = 0) -> GroupingRelay:
    roster = candidate_roster(federation, ids, grouping_context(K, attempt))
    return GroupingRelay(roster, 2, federation.ca, NOW)


def test_a_grouping_through_the_relay_agrees_without_the_relay_seeing_a_loss(
    federation: Federation,
) -> None:
    ids = federation.ids(6)
    declined = ids[4]  # budget: it sends nothing, and is simply not on the final roster
    losses = {s: np.random.default_rng(i).normal(0.7, 0.2, K) for i, s in enumerate(ids)}
    relay = _relay(federation, ids)
    members = {s: GroupingMember(identity(federation, s), relay.roster, 2, "optimal") for s in ids}
    received: list[bytes] = []
    for s in ids:
        if s != declined:
            sealed = members[s].report(losses[s])
            relay.receive_reports(s, sealed)
            relay.receive_reports(s, sealed)  # a resend is harmless
            received += sealed.values()
    final = relay.close_reports()
    assert final == tuple(s for s in ids if s != declined)
    for s in final:
        confirmation = members[s].open(final, relay.inbox(s))
        relay.receive_confirmation(s, confirmation)
        received += [confirmation.digest, confirmation.signature]
    confirmations = relay.close_confirmations()
    assert relay.phase is RelayPhase.AGREED
    views = {s: members[s].check(confirmations) for s in final}
    assert {v.digest for v in views.values()} == {relay.digest}
    assert all(members[s].phase is MemberPhase.CONFIRMED for s in final)
    everything = b"".join(received)
    for vector in losses.values():
        for value in vector:
            assert np.float64(value).tobytes() not in everything
            assert np.float32(value).tobytes() not in everything
            assert f"{value:.6f}".encode() not in everything


def test_the_relay_refuses_misaddressed_or_foreign_reports(federation: Federation) -> None:
    ids = federation.ids(5)
    relay = _relay(federation, ids)
    me = identity(federation, ids[0])
    sealed = seal_loss_report(me, relay.roster, [0.5, 0.6])
    with pytest.raises(PermissionDenied, match="not a candidate"):
        relay.receive_reports(federation.ids(6)[5], sealed)
    with pytest.raises(InvalidInput, match="every other candidate"):
        relay.receive_reports(ids[0], {r: b for r, b in sealed.items() if r != ids[1]})
    other_attempt = seal_loss_report(me, _relay(federation, ids, attempt=1).roster, [0.5, 0.6])
    with pytest.raises(InvalidInput, match="sealed for another"):
        relay.receive_reports(ids[0], other_attempt)
    with pytest.raises(InvalidInput, match="sealed for another"):  # as if from another silo
        relay.receive_reports(ids[1], {**{r: b for r, b in sealed.items() if r != ids[1]},
                                      ids[0]: sealed[ids[1]]})  # fmt: skip
    assert relay.reporters == ()


def test_too_few_reports_or_a_dissenting_confirmation_aborts(federation: Federation) -> None:
    ids = federation.ids(5)
    relay = _relay(federation, ids)
    for s in ids[:3]:
        relay.receive_reports(s, seal_loss_report(identity(federation, s), relay.roster, [1, 2]))
    with pytest.raises(GroupingAborted, match="only 3 silos reported; 4 are needed"):
        relay.close_reports()
    assert relay.phase is RelayPhase.ABORTED

    relay = _relay(federation, ids)
    for s in ids:
        relay.receive_reports(s, seal_loss_report(identity(federation, s), relay.roster, [1, 2]))
    relay.close_reports()
    with pytest.raises(GroupingAborted, match="no silo confirmed"):
        relay.close_confirmations()  # the deadline passed before any confirmation

    relay = _relay(federation, ids)
    losses = {s: np.array([0.1 * i, 1 - 0.1 * i]) for i, s in enumerate(ids)}
    for s in ids:
        relay.receive_reports(s, seal_loss_report(identity(federation, s), relay.roster, losses[s]))
    final = relay.close_reports()
    for s in final:
        inbox = relay.inbox(s)
        if s == ids[0]:  # shown one report less (and a final roster without its sender)
            inbox.pop(ids[1])
            shown = [x for x in final if x != ids[1]]
        else:
            shown = list(final)
        me = identity(federation, s)
        view = agree_on_grouping(
            relay.roster, open_loss_reports(me, relay.roster, shown, inbox, losses[s]), 2
        )
        relay.receive_confirmation(s, confirm_grouping(me, view))
    with pytest.raises(GroupingAborted, match="2 different groupings"):
        relay.close_confirmations()


def test_a_member_cannot_skip_a_step_and_stays_aborted(federation: Federation) -> None:
    ids = federation.ids(4)
    relay = _relay(federation, ids)
    member = GroupingMember(identity(federation, ids[0]), relay.roster, 2, "greedy")
    with pytest.raises(GroupingAborted, match="step check called in report"):
        member.check({})
    with pytest.raises(GroupingAborted, match="step report called in aborted"):
        member.report([0.1, 0.2])
