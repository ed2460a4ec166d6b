"""An aggregator that deviates from the protocol: honest silos abort and reveal nothing."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from privacy.secagg import (
    MEDIUM,
    ClientPhase,
    ConsistencyRequest,
    Roster,
    SecAggAborted,
    UnmaskRequest,
)
from protos.errors import FailedPrecondition, PermissionDenied
from tests.privacy.secagg.harness import Federation, Round, context

LENGTH = 32


def _updates(ids):
    return {s: np.full(LENGTH, 0.25, dtype=np.float32) for s in ids}


def _round(federation: Federation, n: int = 6, **kwargs) -> tuple[Round, list[str]]:
    ids = federation.ids(n)
    return Round(federation, MEDIUM, ids, LENGTH, **kwargs), ids


def test_substituted_public_key_is_detected(federation: Federation) -> None:
    rnd, ids = _round(federation)
    roster = rnd.advertise()
    victim = roster.advertisements[2]
    attacker = rnd.clients[ids[0]]  # any X25519 key the aggregator controls would do
    forged = dataclasses.replace(victim, mask_public_key=bytes(range(32)))
    tampered = Roster(
        roster.context, (*roster.advertisements[:2], forged, *roster.advertisements[3:])
    )
    with pytest.raises(SecAggAborted, match="substituted"):
        attacker.share_keys(tampered)
    assert attacker.phase is ClientPhase.ABORTED


def test_own_key_replaced_in_roster_is_detected(federation: Federation) -> None:
    rnd, ids = _round(federation)
    roster = rnd.advertise()
    # Same context, other keys, all validly signed: e.g. a stale advert from an earlier attempt.
    other = Round(federation, MEDIUM, ids, LENGTH, ctx=rnd.ctx, seed=1)
    with pytest.raises(SecAggAborted, match="own keys"):
        rnd.clients[ids[0]].share_keys(
            Roster(roster.context, (other.clients[ids[0]].advertise(), *roster.advertisements[1:]))
        )


def test_sybil_silos_from_another_ca_are_rejected(
    federation: Federation, rogue: Federation
) -> None:
    rnd, ids = _round(federation, n=3)
    roster = rnd.advertise()
    sybils = Round(rogue, MEDIUM, rogue.ids(4), LENGTH)
    sybil_adverts = {s: c.advertise() for s, c in sybils.clients.items()}
    padded = Roster(roster.context, (roster.advertisements[0], *sybil_adverts.values()))
    with pytest.raises(SecAggAborted, match="not issued by the federation CA"):
        rnd.clients[ids[0]].share_keys(padded)
    # An honest aggregator (fresh round) refuses them too.
    with pytest.raises(PermissionDenied, match="not issued by the federation CA"):
        Round(federation, MEDIUM, ids, LENGTH).server.receive_advertisement(
            "sybil-00", sybil_adverts["sybil-00"]
        )


def test_round_narrowed_to_one_honest_silo_is_refused(federation: Federation) -> None:
    rnd, ids = _round(federation)
    deliveries = rnd.share(rnd.advertise())
    target = ids[0]
    masked = rnd.clients[target].mask(deliveries[target], _updates(ids)[target])
    assert not np.array_equal(masked.vector, np.zeros(LENGTH))
    # The aggregator claims everyone else dropped, hoping to unmask the target alone.
    with pytest.raises(SecAggAborted, match="fewer than the plan's minimum"):
        rnd.clients[target].sign_survivors(ConsistencyRequest(rnd.ctx, (target,)))


def test_roster_below_minimum_is_refused_by_the_silo(federation: Federation) -> None:
    rnd, ids = _round(federation)
    roster = rnd.advertise()
    with pytest.raises(SecAggAborted, match="minimum"):
        rnd.clients[ids[0]].share_keys(Roster(roster.context, roster.advertisements[:2]))


def test_asking_for_both_shares_of_a_peer_is_refused(federation: Federation) -> None:
    rnd, ids = _round(federation)
    request = rnd.sign(rnd.mask(rnd.share(rnd.advertise()), _updates(ids)))
    greedy = UnmaskRequest(request.context, request.survivors, (ids[3],), request.signatures)
    with pytest.raises(SecAggAborted, match="both kinds of share"):
        rnd.clients[ids[0]].unmask(greedy)


def test_a_second_unmask_request_is_refused(federation: Federation) -> None:
    rnd, ids = _round(federation)
    request = rnd.sign(rnd.mask(rnd.share(rnd.advertise()), _updates(ids)))
    client = rnd.clients[ids[0]]
    first = client.unmask(request)
    assert set(first.self_mask_shares) == set(ids[1:]) and not first.mask_key_shares
    with pytest.raises(SecAggAborted):
        client.unmask(request)


def test_dropped_set_contradicting_the_signed_view_is_refused(federation: Federation) -> None:
    rnd, ids = _round(federation)
    request = rnd.sign(rnd.mask(rnd.share(rnd.advertise()), _updates(ids)))
    narrowed = UnmaskRequest(
        request.context, tuple(s for s in request.survivors if s != ids[4]), (ids[4],), {}
    )
    with pytest.raises(SecAggAborted, match="differ from those this silo signed"):
        rnd.clients[ids[0]].unmask(narrowed)


def test_inconsistent_dropout_sets_across_silos_make_honest_silos_abort(
    federation: Federation,
) -> None:
    rnd, ids = _round(federation, n=8)
    request = rnd.mask(rnd.share(rnd.advertise()), _updates(ids))
    # Half the silos are told ids[7] survived, the other half that it dropped.
    told_dropped = ConsistencyRequest(request.context, tuple(s for s in ids if s != ids[7]))
    signatures = {}
    for s in ids[:4]:
        signatures[s] = rnd.clients[s].sign_survivors(request).signature
    for s in ids[4:7]:
        signatures[s] = rnd.clients[s].sign_survivors(told_dropped).signature
    for s in ids[:4]:
        forged = UnmaskRequest(request.context, request.survivors, (), signatures)
        with pytest.raises(SecAggAborted, match="signed a different view"):
            rnd.clients[s].unmask(forged)
    for s in ids[4:7]:
        forged = UnmaskRequest(request.context, told_dropped.survivors, (ids[7],), signatures)
        with pytest.raises(SecAggAborted):
            rnd.clients[s].unmask(forged)


def test_too_few_confirmations_are_refused(federation: Federation) -> None:
    rnd, ids = _round(federation)
    request = rnd.mask(rnd.share(rnd.advertise()), _updates(ids))
    signatures = {s: rnd.clients[s].sign_survivors(request).signature for s in ids[:2]}
    with pytest.raises(SecAggAborted, match="confirmed the view"):
        rnd.clients[ids[0]].unmask(
            UnmaskRequest(request.context, request.survivors, (), signatures)
        )


def test_different_plan_hash_across_silos_is_detected(federation: Federation) -> None:
    ids = federation.ids(4)
    honest = Round(federation, MEDIUM, ids, LENGTH)
    fooled = Round(federation, MEDIUM, ids, LENGTH, ctx=context(plan_hash="cd" * 32))
    adverts = [honest.clients[s].advertise() for s in ids[:3]]
    adverts.append(fooled.clients[ids[3]].advertise())
    with pytest.raises(SecAggAborted, match="not this round"):
        honest.clients[ids[0]].share_keys(Roster(honest.ctx, tuple(adverts)))


def test_replayed_or_cross_round_messages_are_rejected(federation: Federation) -> None:
    ids = federation.ids(4)
    old = Round(federation, MEDIUM, ids, LENGTH, ctx=context(round_number=1))
    new = Round(federation, MEDIUM, ids, LENGTH, ctx=context(round_number=2))
    old_roster = old.advertise()
    # The server refuses an advertisement from another round.
    with pytest.raises(FailedPrecondition, match="rejected"):
        new.server.receive_advertisement(ids[0], old_roster.advertisements[0])
    # A silo refuses last round's roster.
    new.clients[ids[0]].advertise()
    with pytest.raises(SecAggAborted, match="replayed"):
        new.clients[ids[0]].share_keys(old_roster)


def test_share_ciphertexts_for_another_roster_do_not_open(federation: Federation) -> None:
    rnd, ids = _round(federation)
    deliveries = rnd.share(rnd.advertise())
    target = deliveries[ids[0]]
    swapped = dict(target.ciphertexts)
    a, b = sorted(swapped)[:2]
    swapped[a], swapped[b] = swapped[b], swapped[a]
    with pytest.raises(SecAggAborted, match="do not authenticate"):
        rnd.clients[ids[0]].mask(dataclasses.replace(target, ciphertexts=swapped), np.zeros(LENGTH))


def test_an_aborted_client_stays_aborted(federation: Federation) -> None:
    rnd, ids = _round(federation)
    client = rnd.clients[ids[0]]
    with pytest.raises(SecAggAborted):
        client.share_keys(Roster(rnd.ctx, ()))  # out of order: never advertised
    with pytest.raises(SecAggAborted, match="already aborted"):
        client.advertise()


def test_round_secrets_cannot_be_pickled(federation: Federation) -> None:
    rnd, ids = _round(federation)
    with pytest.raises(TypeError):
        pickle.dumps(rnd.clients[ids[0]])
