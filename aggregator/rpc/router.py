"""Several federations behind one gRPC service: each call goes to the servicer of the
federation its certificate is bound to, never to the one a message names.

Built from the service descriptor, so every RPC of ``fedbiscuit.v1.Federation`` is routed,
RPCs added later included. A request that names another hosted federation than the caller's
is refused with PERMISSION_DENIED before any servicer sees it; one naming a federation not
hosted here reaches the caller's own servicer, which refuses it as before (FAILED_PRECONDITION).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from aggregator.rpc.auth import authenticated_federation, authenticated_silo
from aggregator.rpc.method_handlers import HANDLER_MAKERS
from protos.v1 import federation_pb2 as pb
from protos.v1 import federation_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["Federation"]


class FederationRouter(grpc.GenericRpcHandler):
    """Serves `servicers` (federation id -> that federation's servicer) on one server."""

    def __init__(self, servicers: Mapping[str, pb_grpc.FederationServicer]) -> None:
        self._servicers = dict(servicers)
        self._handlers = {
            f"/{SERVICE.full_name}/{method.name}": self._handler(method)
            for method in SERVICE.methods
        }

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)

    def _handler(self, method: MethodDescriptor) -> grpc.RpcMethodHandler:
        request_class = GetMessageClass(method.input_type)
        response_class = GetMessageClass(method.output_type)
        codecs = {
            "request_deserializer": request_class.FromString,
            "response_serializer": response_class.SerializeToString,
        }
        name = method.name

        def unary_in(request: Message, context: grpc.ServicerContext) -> Any:
            servicer = self._servicer_for(request, context)
            return getattr(servicer, name)(request, context)

        def stream_in(requests: Iterator[Message], context: grpc.ServicerContext) -> Any:
            first = next(requests, None)
            servicer = self._servicer_for(first, context)
            rest = requests if first is None else itertools.chain([first], requests)
            return getattr(servicer, name)(rest, context)

        behavior = stream_in if method.client_streaming else unary_in
        make = HANDLER_MAKERS[(method.client_streaming, method.server_streaming)]
        return make(behavior, **codecs)

    def _servicer_for(
        self, request: Message | None, context: grpc.ServicerContext
    ) -> pb_grpc.FederationServicer:
        bound = authenticated_federation(context)
        named = None if request is None else federation_named_by(request)
        if named is not None and named != bound and named in self._servicers:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the certificate of silo {authenticated_silo(context)!r} belongs to federation "
                f"{bound!r}; it cannot act in federation {named!r}",
            )
        return self._servicers[bound]


def federation_named_by(message: Message) -> str | None:
    """The ``federation_id`` a request names: its own field, or that of the message set in
    one of its oneofs (an upload's header); None if it names none."""
    fields = message.DESCRIPTOR.fields_by_name
    if "federation_id" in fields:
        return message.federation_id  # type: ignore[attr-defined]
    for oneof in message.DESCRIPTOR.oneofs:
        chosen = message.WhichOneof(oneof.name)
        if chosen is not None and fields[chosen].message_type is not None:
            inner = getattr(message, chosen)
            if "federation_id" in inner.DESCRIPTOR.fields_by_name:
                return inner.federation_id
    return None
