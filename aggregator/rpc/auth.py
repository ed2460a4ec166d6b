"""Who is calling: every RPC is authenticated from the peer's verified client certificate.

The TLS handshake (``require_client_auth=True``) already proved the chain to one of the
hosted federations' CAs. This interceptor adds what gRPC Python cannot: the federation
binding (the certificate's SAN URI names a hosted federation, and that federation's own CA
issued it, so one federation's CA cannot mint silos of another), and that federation's
revocation list (its one :class:`~aggregator.federation_trust.RevocationView`). It is
default-deny: only the methods in :data:`SILO_METHODS` are served (plus the read-only health
check, :data:`aggregator.rpc.health.HEALTH_METHODS`, under the same checks: a revoked certificate
gets no work at all); anything else is UNIMPLEMENTED before a handler runs. Servicer methods
get the caller with :func:`authenticated_silo` (and its federation with
:func:`authenticated_federation`), never from a message field, metadata or the peer address.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509

from aggregator.federation_trust import FederationTrust
from aggregator.rpc.health import HEALTH_METHODS
from aggregator.rpc.method_handlers import rewrap
from privacy.pki import silo_id_from_cert, validate_id
from protos.errors import InvalidInput, NotAuthenticated

logger = logging.getLogger(__name__)

# The default-deny policy: full method names a silo may call. A test checks that this table
# equals the generated Federation service, so a new RPC is unreachable until listed here.
SILO_METHODS: frozenset[str] = frozenset(
    {
        "/fedbiscuit.v1.Federation/Join",
        "/fedbiscuit.v1.Federation/PullTask",
        "/fedbiscuit.v1.Federation/SecAggSubmit",
        "/fedbiscuit.v1.Federation/SecAggFetch",
        "/fedbiscuit.v1.Federation/DownloadGlobals",
        "/fedbiscuit.v1.Federation/UploadUpdate",
        "/fedbiscuit.v1.Federation/ReportLosses",
        "/fedbiscuit.v1.Federation/Decline",
        "/fedbiscuit.v1.Federation/HeKeys",
        "/fedbiscuit.v1.Federation/HeProvideKeys",
        "/fedbiscuit.v1.Federation/HeSpotCheck",
        "/fedbiscuit.v1.Federation/GroupingFetch",
        "/fedbiscuit.v1.Federation/GroupingConfirm",
    }
)


@dataclass(frozen=True)
class Caller:
    """Who a call's certificate proves: a silo of exactly one hosted federation."""

    federation_id: str
    silo_id: str
    cert: x509.Certificate


# Callers proved for the calls in flight, keyed by the call's context (dropped with it).
_verified: weakref.WeakKeyDictionary[Any, Caller] = weakref.WeakKeyDictionary()
_verified_lock = threading.Lock()


def authenticated_silo(context: grpc.ServicerContext) -> str:
    """The silo id proved by this call's certificate; raises if the interceptor did not run."""
    return _proved(context).silo_id


def authenticated_cert(context: grpc.ServicerContext) -> x509.Certificate:
    """The verified, unrevoked client certificate of this call (to check the silo's ledger
    signatures against); raises if the interceptor did not run."""
    return _proved(context).cert


def authenticated_federation(context: grpc.ServicerContext) -> str:
    """The federation this call's certificate belongs to (and is bound to); raises if the
    interceptor did not run."""
    return _proved(context).federation_id


def _proved(context: grpc.ServicerContext) -> Caller:
    with _verified_lock:
        try:
            proved = _verified.get(context)
        except TypeError:  # not a gRPC context at all
            proved = None
    if proved is None:
        raise NotAuthenticated("this call was not authenticated by the silo interceptor")
    return proved


class SiloAuthInterceptor(grpc.ServerInterceptor):
    """Rejects calls without a live certificate of a silo of one of ``federations`` (by
    federation id), and binds each call to that one federation."""

    def __init__(
        self,
        federations: Mapping[str, FederationTrust],
        on_refusal: Callable[[str, str], None] = lambda method, reason: None,
    ) -> None:
        """`on_refusal(method, reason)` is told of every call refused (to count it)."""
        self._on_refusal = on_refusal
        if not federations:
            raise InvalidInput("the aggregator hosts no federation")
        self._trust = {validate_id(fed, "federation id"): t for fed, t in federations.items()}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method not in SILO_METHODS and method not in HEALTH_METHODS:
            logger.warning("refused call to unlisted method", extra={"method": method})
            return None  # gRPC answers UNIMPLEMENTED; no handler runs
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return _guard(handler, lambda context: self._authenticate(context, method))

    def _authenticate(self, context: grpc.ServicerContext, method: str) -> Caller:
        """Return the caller or abort the call (fail closed)."""
        pems = context.auth_context().get("x509_pem_cert")
        if not pems:
            self._on_refusal(method, "no_certificate")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required")
        try:
            cert = x509.load_pem_x509_certificate(pems[0])
            federation_id, silo_id = self._federation_of(cert)
        except (ValueError, NotAuthenticated) as exc:
            logger.info("rejected certificate", extra={"reason": str(exc)})
            self._on_refusal(method, "invalid_certificate")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "the client certificate is not valid")
        try:
            revoked = self._trust[federation_id].revocations.is_revoked(cert.serial_number)
        except InvalidInput as exc:
            logger.error("revocation list unusable; refusing all calls", extra={"reason": str(exc)})
            self._on_refusal(method, "revocation_unknown")
            context.abort(grpc.StatusCode.UNAVAILABLE, "cannot check revocation; retry later")
        if revoked:
            logger.info("rejected revoked certificate", extra={"silo": silo_id})
            self._on_refusal(method, "revoked")
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"the certificate of silo {silo_id!r} has been revoked",
            )
        return Caller(federation_id, silo_id, cert)

    def _federation_of(self, cert: x509.Certificate) -> tuple[str, str]:
        """The one hosted federation `cert` is a silo of, and its silo id there: its SAN names
        it and that federation's own CA signed it (the handshake accepts any hosted CA)."""
        named = []
        for federation_id in self._trust:
            try:
                named.append((federation_id, silo_id_from_cert(cert, federation_id)))
            except NotAuthenticated:
                continue
        if len(named) != 1:
            raise NotAuthenticated(
                f"certificate (serial {cert.serial_number}) names {len(named)} hosted federations"
            )
        federation_id, silo_id = named[0]
        if not self._trust[federation_id].issued(cert):
            raise NotAuthenticated(
                f"certificate (serial {cert.serial_number}) names federation {federation_id!r} "
                "but was not issued by its CA"
            )
        return federation_id, silo_id


def _guard(
    handler: grpc.RpcMethodHandler, authenticate: Callable[[grpc.ServicerContext], Caller]
) -> grpc.RpcMethodHandler:
    """The same handler kind, authenticating before the behaviour sees any request."""

    def wrap(behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
        def guarded(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            proved = authenticate(context)
            with _verified_lock:
                _verified[context] = proved
            return behavior(request_or_iterator, context)

        return guarded

    return rewrap(handler, lambda behavior, _response_streams: wrap(behavior))
