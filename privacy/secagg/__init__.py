"""Secure aggregation: SecAgg+ (Bell et al., CCS 2020) over SecAgg (Bonawitz et al., CCS 2017).

Pure mechanism: messages in, messages out; no sockets, files, clocks (``now`` is passed in)
or global RNG (a CSPRNG, injectable for tests). The aggregator's round machine drives a
:class:`SecAggServer`, each silo's task loop drives a :class:`SecAggClient`; the flow of
messages is described in :mod:`privacy.secagg.messages`. Pick parameters by preset name.
"""

from privacy.secagg.client import CLIENT_TRANSITIONS, ClientPhase, SecAggClient
from privacy.secagg.encoding import decode_sum, encode, quantize
from privacy.secagg.errors import SecAggAborted, UnsafeParameters
from privacy.secagg.graph import NeighbourGraph, build_graph
from privacy.secagg.messages import (
    ConsistencyRequest,
    EncryptedShares,
    KeyAdvertisement,
    MaskedInput,
    Roster,
    RoundContext,
    ShareDelivery,
    SurvivorSignature,
    UnmaskRequest,
    UnmaskResponse,
)
from privacy.secagg.params import EncodingParams, SecAggParams
from privacy.secagg.presets import MEDIUM, MEDIUM_WIDE, PRESETS, SMALL, for_plan, preset
from privacy.secagg.server import SERVER_TRANSITIONS, AggregateResult, SecAggServer, ServerPhase

__all__ = [
    "CLIENT_TRANSITIONS",
    "MEDIUM",
    "MEDIUM_WIDE",
    "PRESETS",
    "SERVER_TRANSITIONS",
    "SMALL",
    "AggregateResult",
    "ClientPhase",
    "ConsistencyRequest",
    "EncodingParams",
    "EncryptedShares",
    "KeyAdvertisement",
    "MaskedInput",
    "NeighbourGraph",
    "Roster",
    "RoundContext",
    "SecAggAborted",
    "SecAggClient",
    "SecAggParams",
    "SecAggServer",
    "ServerPhase",
    "ShareDelivery",
    "SurvivorSignature",
    "UnmaskRequest",
    "UnmaskResponse",
    "UnsafeParameters",
    "build_graph",
    "decode_sum",
    "encode",
    "for_plan",
    "preset",
    "quantize",
]
