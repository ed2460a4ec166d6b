"""A server interceptor counting every RPC by method and status code, and its payload bytes.

Installed outermost, so calls the silo interceptor refuses (UNAUTHENTICATED, UNIMPLEMENTED)
are counted too. Bytes are measured at the (de)serializers: the protobuf payloads as sent and
received, without TLS and HTTP/2 framing. Method names outside the served set are counted as
"other" so a scanner cannot blow up the label space.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from aggregator.ops.metrics import AggregatorMetrics
from aggregator.rpc.auth import SILO_METHODS
from aggregator.rpc.health import HEALTH_METHODS
from aggregator.rpc.method_handlers import rewrap

_KNOWN = SILO_METHODS | HEALTH_METHODS


class RpcMetricsInterceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: AggregatorMetrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        method = method if method in _KNOWN else "other"
        handler = continuation(handler_call_details)
        if handler is None:
            self._metrics.rpcs.labels(method, grpc.StatusCode.UNIMPLEMENTED.name).inc()
            return None
        return _counted(handler, method, self._metrics)


def _counted(
    handler: grpc.RpcMethodHandler, method: str, metrics: AggregatorMetrics
) -> grpc.RpcMethodHandler:
    received = metrics.received_bytes.labels(method)
    sent = metrics.sent_bytes.labels(method)

    def finish(context: grpc.ServicerContext, failed: bool) -> None:
        code = context.code()
        if code is None:
            code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        metrics.rpcs.labels(method, code.name).inc()

    def deserialize(data: bytes) -> Any:
        received.inc(len(data))
        return handler.request_deserializer(data) if handler.request_deserializer else data

    def serialize(message: Any) -> bytes:
        data = handler.response_serializer(message) if handler.response_serializer else message
        sent.inc(len(data))
        return data

    def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
        def counted(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                response = behavior(request, context)
            except BaseException:
                finish(context, failed=True)
                raise
            finish(context, failed=False)
            return response

        return counted

    def streaming(behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def counted(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from behavior(request, context)
            except GeneratorExit:  # the client went away mid-stream
                metrics.rpcs.labels(method, grpc.StatusCode.CANCELLED.name).inc()
                raise
            except BaseException:
                finish(context, failed=True)
                raise
            finish(context, failed=False)

        return counted

    return rewrap(
        handler,
        lambda behavior, response_streams: (streaming if response_streams else unary)(behavior),
        request_deserializer=deserialize,
        response_serializer=serialize,
    )
