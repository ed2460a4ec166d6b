"""Loss reports that travel silo to silo, sealed, through an aggregator that cannot open them.

Why: in membership-hiding mode the aggregator must not learn any loss vector (it would
learn the clusters from them). Each reporting silo signs its DP-noised loss vector (bound to
the grouping and to the candidate roster it was shown) with its certificate key and seals
the signed vector to every other candidate's certificate (:mod:`privacy.sealing`, the recipe
of the CKKS key relay; header bound to federation, grouping, sender and recipient). A
receiving silo accepts a report only if it opens with its key, was sealed for this grouping
and for it, names the silo it came from, and carries a valid signature over the same roster
it saw; it accepts the matrix only if it holds exactly one report from every other silo on
the final roster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from privacy.membership._roster import CandidateRoster, GroupingAborted, MemberIdentity
from privacy.sealing import SealingPurpose, open_sealed, read_header, seal_to
from privacy.secagg import transcript
from privacy.secagg.keys import sign, signature_valid
from protos.errors import FedbiscuitError, InvalidInput

_PURPOSE = SealingPurpose(
    magic=b"FBLOSSRP\x01",
    salt=b"fedbiscuit/membership/loss-report/v1",
    header_keys=frozenset(
        {"federation_id", "grouping", "sender_id", "recipient_id", "ephemeral_public_key"}
    ),
    what="sealed loss report",
)


@dataclass(frozen=True)
class LossMatrix:
    """The loss vectors of the final roster: row i is silo ``silo_ids[i]`` (sorted)."""

    silo_ids: tuple[str, ...]
    losses: np.ndarray = field(repr=False)  # float64 [len(silo_ids), K], read-only


def _payload(roster: CandidateRoster, sender: str, losses: np.ndarray) -> bytes:
    return transcript.encode(
        "membership/loss-report",
        roster.context.digest,
        roster.digest,
        sender,
        losses.astype("<f8").tobytes(),
    )


def _checked_losses(losses: Sequence[float] | np.ndarray, adapters: int, who: str) -> np.ndarray:
    vector = np.asarray(losses, dtype=np.float64)
    if vector.shape != (adapters,) or not np.isfinite(vector).all():
        raise InvalidInput(
            f"the loss report of {who} must be {adapters} finite numbers, got shape {vector.shape}"
        )
    return vector


def seal_loss_report(
    me: MemberIdentity, roster: CandidateRoster, losses: Sequence[float] | np.ndarray
) -> dict[str, bytes]:
    """This silo's signed loss vector, sealed to every other candidate (recipient -> blob).

    ``losses`` must already be the DP-noised release (ledgered before this is called).
    """
    keys = roster.verified_keys(me)
    vector = _checked_losses(losses, roster.context.adapters, f"silo {me.silo_id!r}")
    signature = sign(me.signing_key, _payload(roster, me.silo_id, vector))
    plaintext = vector.astype("<f8").tobytes() + signature
    return {
        recipient: seal_to(
            keys[recipient],
            plaintext,
            _PURPOSE,
            {
                "federation_id": roster.context.federation_id,
                "grouping": roster.context.digest.hex(),
                "sender_id": me.silo_id,
                "recipient_id": recipient,
            },
        )
        for recipient in roster.silo_ids
        if recipient != me.silo_id
    }


def _final_roster(
    roster: CandidateRoster, me: MemberIdentity, final: Sequence[str]
) -> tuple[str, ...]:
    ids = tuple(sorted(final))
    if len(set(ids)) != len(ids):
        raise GroupingAborted("the final grouping roster names a silo twice")
    if not set(ids) <= set(roster.silo_ids):
        unknown = sorted(set(ids) - set(roster.silo_ids))
        raise GroupingAborted(f"the final grouping roster names non-candidates {unknown}")
    if me.silo_id not in ids:
        raise GroupingAborted(f"the final grouping roster omits silo {me.silo_id!r}")
    return ids


def open_loss_reports(
    me: MemberIdentity,
    roster: CandidateRoster,
    final_roster: Sequence[str],
    sealed: Mapping[str, bytes],
    own_losses: Sequence[float] | np.ndarray,
) -> LossMatrix:
    """The loss matrix of ``final_roster`` from the blobs relayed to this silo (sender -> blob).

    Aborts (:class:`GroupingAborted`) unless there is exactly one authentic report from
    every other silo on the final roster: a dropped, withheld, altered, replayed (other
    grouping, other recipient, other sender) or differently-rostered report stops this silo.
    """
    keys = roster.verified_keys(me)
    ids = _final_roster(roster, me, final_roster)
    expected = set(ids) - {me.silo_id}
    if set(sealed) != expected:
        missing, extra = sorted(expected - set(sealed)), sorted(set(sealed) - expected)
        raise GroupingAborted(
            f"silo {me.silo_id!r}, grouping round {roster.context.round}: reports missing "
            f"from {missing}, unexpected from {extra}; refusing to group"
        )
    adapters = roster.context.adapters
    rows = {me.silo_id: _checked_losses(own_losses, adapters, f"silo {me.silo_id!r}")}
    for sender in sorted(expected):
        rows[sender] = _open_one(me, roster, keys, sender, sealed[sender])
    matrix = np.stack([rows[s] for s in ids])
    matrix.setflags(write=False)
    return LossMatrix(ids, matrix)


def report_binding(blob: bytes) -> tuple[str, str, str, str]:
    """(federation, grouping digest hex, sender, recipient) from a blob's clear header.

    Not authenticated by itself (the AEAD binds it when the recipient opens the blob); the
    aggregator uses it to refuse misaddressed blobs early. :class:`InvalidInput` if malformed.
    """
    header = read_header(blob, _PURPOSE)
    fields = (
        header["federation_id"],
        header["grouping"],
        header["sender_id"],
        header["recipient_id"],
    )
    return tuple(str(f) for f in fields)  # type: ignore[return-value]


def _open_one(
    me: MemberIdentity, roster: CandidateRoster, keys: Mapping, sender: str, blob: bytes
) -> np.ndarray:
    where = f"silo {me.silo_id!r}: the loss report relayed as {sender!r}"
    try:
        binding = report_binding(blob)
        expected = (roster.context.federation_id, roster.context.digest.hex(), sender, me.silo_id)
        if binding != expected:
            raise GroupingAborted(
                f"{where} was sealed for federation {binding[0]!r}, another grouping or "
                f"attempt, sender {binding[2]!r}, recipient {binding[3]!r} (replayed or "
                "misrouted)"
            )
        plaintext = open_sealed(me.signing_key, blob, _PURPOSE)
    except GroupingAborted:
        raise
    except FedbiscuitError as error:
        raise GroupingAborted(f"{where}: {error}") from None
    width = 8 * roster.context.adapters
    if len(plaintext) <= width:
        raise GroupingAborted(f"{where} is too short to hold {roster.context.adapters} losses")
    vector = np.frombuffer(plaintext[:width], dtype="<f8").astype(np.float64)
    if not np.isfinite(vector).all():
        raise GroupingAborted(f"{where} holds a non-finite loss")
    if not signature_valid(keys[sender], plaintext[width:], _payload(roster, sender, vector)):
        raise GroupingAborted(
            f"{where} is not signed by {sender!r} over this grouping and candidate roster "
            "(altered, or the sender was shown another roster)"
        )
    return vector
