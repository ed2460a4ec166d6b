"""SecAgg+ messages <-> their protobuf form (protos/v1/federation.proto, `SecAgg*`).

Both programs convert here, so the wire mapping is written once. Decoding validates shape
only (ids, sizes, types); whether a message is acceptable is the protocol's decision
(:class:`~privacy.secagg.client.SecAggClient`, :class:`~privacy.secagg.server.SecAggServer`).
"""

from __future__ import annotations

from collections.abc import Mapping

from privacy.pki.layout import validate_id
from privacy.secagg.messages import (
    ConsistencyRequest,
    EncryptedShares,
    KeyAdvertisement,
    Roster,
    RoundContext,
    ShareDelivery,
    SurvivorSignature,
    UnmaskRequest,
    UnmaskResponse,
)
from protos.errors import InvalidInput
from protos.v1 import federation_pb2 as pb

# Protocol fields are keys, signatures, PEM certificates and 48-byte share ciphertexts.
_MAX_FIELD_BYTES = 8 << 10


def context_to_proto(context: RoundContext) -> pb.SecAggContext:
    return pb.SecAggContext(
        federation_id=context.federation_id,
        round=context.round,
        plan_sha256=context.plan_hash,
        seed=context.seed,
        grouping_digest=context.grouping_digest,
    )


def context_from_proto(msg: pb.SecAggContext) -> RoundContext:
    return RoundContext(
        msg.federation_id,
        msg.round,
        msg.plan_sha256,
        bytes(msg.seed),
        grouping_digest=bytes(msg.grouping_digest),
    )


def _ids(values: object, what: str) -> tuple[str, ...]:
    return tuple(validate_id(value, what) for value in values)


def _bytes_map(values: Mapping[str, bytes], what: str) -> dict[str, bytes]:
    out = {}
    for silo, value in values.items():
        validate_id(silo, f"{what} silo id")
        if len(value) > _MAX_FIELD_BYTES:
            raise InvalidInput(f"{what} for silo {silo!r} is {len(value)} bytes, too large")
        out[silo] = bytes(value)
    return out


def _field(value: bytes, what: str) -> bytes:
    if len(value) > _MAX_FIELD_BYTES:
        raise InvalidInput(f"{what} is {len(value)} bytes, too large")
    return bytes(value)


def advertisement_to_proto(adv: KeyAdvertisement) -> pb.SecAggKeyAdvertisement:
    return pb.SecAggKeyAdvertisement(
        silo_id=adv.silo_id,
        mask_public_key=adv.mask_public_key,
        share_public_key=adv.share_public_key,
        certificate_pem=adv.certificate_pem,
        signature=adv.signature,
    )


def advertisement_from_proto(
    msg: pb.SecAggKeyAdvertisement, context: RoundContext
) -> KeyAdvertisement:
    return KeyAdvertisement(
        context,
        validate_id(msg.silo_id, "advertisement silo id"),
        _field(msg.mask_public_key, "mask public key"),
        _field(msg.share_public_key, "share public key"),
        _field(msg.certificate_pem, "certificate"),
        _field(msg.signature, "advertisement signature"),
    )


def roster_to_proto(roster: Roster) -> pb.SecAggRoster:
    return pb.SecAggRoster(
        advertisements=[advertisement_to_proto(a) for a in roster.advertisements]
    )


def roster_from_proto(msg: pb.SecAggRoster, context: RoundContext) -> Roster:
    return Roster(context, tuple(advertisement_from_proto(a, context) for a in msg.advertisements))


def shares_from_proto(
    msg: pb.SecAggEncryptedShares, context: RoundContext, sender: str
) -> EncryptedShares:
    return EncryptedShares(context, sender, _bytes_map(msg.ciphertexts, "share ciphertext"))


def delivery_to_proto(delivery: ShareDelivery) -> pb.SecAggShareDelivery:
    return pb.SecAggShareDelivery(
        senders=list(delivery.senders), ciphertexts=dict(delivery.ciphertexts)
    )


def delivery_from_proto(
    msg: pb.SecAggShareDelivery, context: RoundContext, recipient: str
) -> ShareDelivery:
    return ShareDelivery(
        context,
        recipient,
        _ids(msg.senders, "share sender"),
        _bytes_map(msg.ciphertexts, "share ciphertext"),
    )


def consistency_from_proto(
    msg: pb.SecAggConsistencyRequest, context: RoundContext
) -> ConsistencyRequest:
    return ConsistencyRequest(context, _ids(msg.survivors, "survivor"))


def signature_from_proto(
    msg: pb.SecAggSurvivorSignature, context: RoundContext, sender: str
) -> SurvivorSignature:
    return SurvivorSignature(context, sender, _field(msg.signature, "survivor signature"))


def unmask_request_to_proto(request: UnmaskRequest) -> pb.SecAggUnmaskRequest:
    return pb.SecAggUnmaskRequest(
        survivors=list(request.survivors),
        dropped=list(request.dropped),
        signatures=dict(request.signatures),
    )


def unmask_request_from_proto(msg: pb.SecAggUnmaskRequest, context: RoundContext) -> UnmaskRequest:
    return UnmaskRequest(
        context,
        _ids(msg.survivors, "survivor"),
        _ids(msg.dropped, "dropped silo"),
        _bytes_map(msg.signatures, "survivor signature"),
    )


def unmask_response_to_proto(response: UnmaskResponse) -> pb.SecAggUnmaskResponse:
    return pb.SecAggUnmaskResponse(
        self_mask_shares=dict(response.self_mask_shares),
        mask_key_shares=dict(response.mask_key_shares),
    )


def unmask_response_from_proto(
    msg: pb.SecAggUnmaskResponse, context: RoundContext, sender: str
) -> UnmaskResponse:
    return UnmaskResponse(
        context,
        sender,
        _bytes_map(msg.self_mask_shares, "self-mask share"),
        _bytes_map(msg.mask_key_shares, "mask-key share"),
    )
