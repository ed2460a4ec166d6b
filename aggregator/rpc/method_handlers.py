"""Rebuild a gRPC method handler around a wrapped behaviour, whatever its streaming kind.

The server interceptors (authentication, RPC metrics) and the federation router all hand
gRPC a new handler for a method; which `*_rpc_method_handler` builds it depends only on
whether requests and responses stream, so that choice is made here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Behavior = Callable[..., Any]

HANDLER_MAKERS: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}
"""(request streams, response streams) -> the gRPC factory for such a handler."""


def rewrap(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[Behavior, bool], Behavior],
    *,
    request_deserializer: Callable[[bytes], Any] | None = None,
    response_serializer: Callable[[Any], bytes] | None = None,
) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour replaced by `wrap(behaviour, response_streams)`; the
    codecs are the handler's own unless others are given."""
    behavior = (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )
    make = HANDLER_MAKERS[(handler.request_streaming, handler.response_streaming)]
    return make(
        wrap(behavior, handler.response_streaming),
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=response_serializer or handler.response_serializer,
    )
