"""The silo interceptor over real mutual TLS on loopback: who gets in, and as whom."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from aggregator.federation_trust import FederationTrust
from aggregator.rpc.auth import (
    SILO_METHODS,
    SiloAuthInterceptor,
    authenticated_silo,
)
from privacy.pki import (
    FederationPaths,
    channel_credentials,
    init_ca,
    issue_aggregator,
    issue_silo,
    revoke,
    server_credentials,
)
from protos.errors import InvalidInput
from protos.v1 import federation_pb2 as pb
from protos.v1 import federation_pb2_grpc as pb_grpc
from tests.odd_leaves import ODD_PROFILES, issue_odd_leaf

FEDERATION = pb.DESCRIPTOR.services_by_name["Federation"]
TIMEOUT_S = 10


class EchoIdentityServicer(pb_grpc.FederationServicer):
    """Test double: every method answers with the identity the interceptor proved."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def Join(self, request: pb.JoinRequest, context: grpc.ServicerContext) -> pb.JoinReply:
        self.calls.append("Join")
        return pb.JoinReply(silo_id=authenticated_silo(context))

    def PullTask(self, request: pb.PullTaskRequest, context: grpc.ServicerContext) -> pb.Task:
        self.calls.append("PullTask")
        return pb.Task(message=authenticated_silo(context))

    def DownloadGlobals(
        self, request: pb.DownloadRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.TensorChunk]:
        self.calls.append("DownloadGlobals")
        yield pb.TensorChunk(data=authenticated_silo(context).encode())

    def UploadUpdate(
        self, request_iterator: Iterator[pb.UploadPart], context: grpc.ServicerContext
    ) -> pb.Ack:
        self.calls.append("UploadUpdate")
        list(request_iterator)
        return pb.Ack(message=authenticated_silo(context))

    def ReportLosses(self, request: pb.LossReport, context: grpc.ServicerContext) -> pb.Ack:
        self.calls.append("ReportLosses")
        return pb.Ack(message=authenticated_silo(context))

    def Decline(self, request: pb.DeclineRequest, context: grpc.ServicerContext) -> pb.Ack:
        self.calls.append("Decline")
        return pb.Ack(message=authenticated_silo(context))


@pytest.fixture
def pki(tmp_path: Path) -> FederationPaths:
    paths = init_ca(tmp_path / "fed-a", "fed-a")
    issue_aggregator(paths.root)
    issue_silo(paths.root, "silo-1")
    return paths


@pytest.fixture
def other_pki(tmp_path: Path) -> FederationPaths:
    paths = init_ca(tmp_path / "fed-b", "fed-b")
    issue_silo(paths.root, "silo-1")
    return paths


def _interceptor(pki: FederationPaths) -> SiloAuthInterceptor:
    """The interceptor of an aggregator hosting fed-a alone."""
    return SiloAuthInterceptor(
        {"fed-a": FederationTrust.from_files(pki.ca_cert, pki.revocation_list)}
    )


@contextmanager
def serving(
    pki: FederationPaths,
    servicer: EchoIdentityServicer,
    *,
    trusted_ca: Path | None = None,
    intercept: bool = True,
    extra_handlers: tuple[grpc.GenericRpcHandler, ...] = (),
) -> Iterator[int]:
    """A real aggregator-shaped server on 127.0.0.1:0, always stopped; yields its port."""
    interceptors = [_interceptor(pki)] if intercept else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
    pb_grpc.add_FederationServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers(extra_handlers)
    creds = server_credentials(pki.aggregator_cert, pki.aggregator_key, trusted_ca or pki.ca_cert)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


@contextmanager
def silo_channel(
    port: int, ca: Path, cert: Path | None = None, key: Path | None = None
) -> Iterator[grpc.Channel]:
    if cert is None:
        creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    else:
        creds = channel_credentials(ca, cert, key)
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        yield channel


@contextmanager
def connected(
    pki: FederationPaths,
    servicer: EchoIdentityServicer,
    cert: Path | None,
    key: Path | None,
    **server_options: object,
) -> Iterator[grpc.Channel]:
    """A server from ``serving`` and a silo channel to it presenting ``cert`` (or none)."""
    with (
        serving(pki, servicer, **server_options) as port,
        silo_channel(port, pki.ca_cert, cert, key) as channel,
    ):
        yield channel


def _join(channel: grpc.Channel) -> pb.JoinReply:
    return pb_grpc.FederationStub(channel).Join(pb.JoinRequest(), timeout=TIMEOUT_S)


def _call_raw(channel: grpc.Channel, method_name: str) -> None:
    """Call any Federation method with an empty message, whatever its streaming shape."""
    method = FEDERATION.methods_by_name[method_name]
    path = f"/{FEDERATION.full_name}/{method.name}"
    if method.client_streaming and method.server_streaming:
        list(channel.stream_stream(path)(iter([b""]), timeout=TIMEOUT_S))
    elif method.client_streaming:
        channel.stream_unary(path)(iter([b""]), timeout=TIMEOUT_S)
    elif method.server_streaming:
        list(channel.unary_stream(path)(b"", timeout=TIMEOUT_S))
    else:
        channel.unary_unary(path)(b"", timeout=TIMEOUT_S)


def _silo_1(pki: FederationPaths) -> tuple[Path, Path]:
    return pki.silo_cert("silo-1"), pki.silo_key("silo-1")


REFUSED_AT_HANDSHAKE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def _assert_refused_at_handshake(pki: FederationPaths, cert: Path | None, key: Path | None) -> None:
    """A Join with this client certificate (or none) fails before the servicer sees it."""
    servicer = EchoIdentityServicer()
    with connected(pki, servicer, cert, key) as channel, pytest.raises(grpc.RpcError) as err:
        _join(channel)
    assert err.value.code() in REFUSED_AT_HANDSHAKE
    assert servicer.calls == []


def test_policy_table_is_exactly_the_generated_service() -> None:
    generated = {f"/{FEDERATION.full_name}/{m.name}" for m in FEDERATION.methods}
    assert generated == SILO_METHODS


def test_silo_identity_comes_from_its_certificate_not_the_request(pki: FederationPaths) -> None:
    with connected(pki, EchoIdentityServicer(), *_silo_1(pki)) as channel:
        reply = pb_grpc.FederationStub(channel).Join(
            pb.JoinRequest(federation_id="silo-2", agent_version="silo-2"),
            metadata=[("silo-id", "silo-2")],
            timeout=TIMEOUT_S,
        )
    assert reply.silo_id == "silo-1"


def test_authenticated_silo_is_available_in_every_method_shape(pki: FederationPaths) -> None:
    with connected(pki, EchoIdentityServicer(), *_silo_1(pki)) as channel:
        stub = pb_grpc.FederationStub(channel)
        task = stub.PullTask(pb.PullTaskRequest(), timeout=TIMEOUT_S)
        chunks = list(stub.DownloadGlobals(pb.DownloadRequest(), timeout=TIMEOUT_S))
        ack = stub.UploadUpdate(iter([pb.UploadPart(), pb.UploadPart()]), timeout=TIMEOUT_S)
        decline = stub.Decline(pb.DeclineRequest(), timeout=TIMEOUT_S)
    assert task.message == "silo-1"
    assert [c.data for c in chunks] == [b"silo-1"]
    assert ack.message == "silo-1"
    assert decline.message == "silo-1"


def test_call_without_client_certificate_never_reaches_the_servicer(pki: FederationPaths) -> None:
    _assert_refused_at_handshake(pki, None, None)


def test_certificate_from_another_ca_is_refused(
    pki: FederationPaths, other_pki: FederationPaths
) -> None:
    _assert_refused_at_handshake(pki, *_silo_1(other_pki))


def test_expired_certificate_is_refused(pki: FederationPaths) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=60)
    cert, key = issue_silo(pki.root, "silo-old", valid_days=30, now=long_ago)
    _assert_refused_at_handshake(pki, cert, key)


def test_certificate_of_another_federation_is_unauthenticated(
    tmp_path: Path, pki: FederationPaths, other_pki: FederationPaths
) -> None:
    # The aggregator trusts both CAs (a shared trust bundle); fed-b's silo still chains.
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.ca_cert.read_bytes() + other_pki.ca_cert.read_bytes())
    servicer = EchoIdentityServicer()
    with (
        connected(pki, servicer, *_silo_1(other_pki), trusted_ca=bundle) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        _join(channel)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert servicer.calls == []


@pytest.mark.parametrize("profile", sorted(ODD_PROFILES))
def test_ca_signed_leaf_that_is_not_an_end_entity_client_cert_is_refused(
    tmp_path: Path, pki: FederationPaths, profile: str
) -> None:
    cert, key = issue_odd_leaf(pki, "fed-a", "silo-2", profile, tmp_path / "odd")
    # TLS itself may refuse a client key without digitalSignature; the interceptor does the rest.
    _assert_refused_at_handshake(pki, cert, key)


def test_revoked_certificate_is_unauthenticated_on_every_method(pki: FederationPaths) -> None:
    revoke(pki.root, "silo-1")
    servicer = EchoIdentityServicer()
    outcomes = {}
    with connected(pki, servicer, *_silo_1(pki)) as channel:
        for method in FEDERATION.methods:
            with pytest.raises(grpc.RpcError) as err:
                _call_raw(channel, method.name)
            outcomes[method.name] = (err.value.code(), err.value.details())
    revoked = (grpc.StatusCode.UNAUTHENTICATED, "the certificate of silo 'silo-1' has been revoked")
    assert outcomes == {m.name: revoked for m in FEDERATION.methods}
    assert servicer.calls == []


def test_revocation_applies_to_the_next_call_without_restart(pki: FederationPaths) -> None:
    with connected(pki, EchoIdentityServicer(), *_silo_1(pki)) as channel:
        first = _join(channel)
        revoke(pki.root, "silo-1")
        with pytest.raises(grpc.RpcError) as err:
            _join(channel)
    assert first.silo_id == "silo-1"
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_reissued_silo_gets_in_with_its_new_certificate(pki: FederationPaths) -> None:
    revoke(pki.root, "silo-1")
    issue_silo(pki.root, "silo-1", force=True)
    with connected(pki, EchoIdentityServicer(), *_silo_1(pki)) as channel:
        assert _join(channel).silo_id == "silo-1"


def test_unreadable_revocation_list_fails_closed(pki: FederationPaths) -> None:
    servicer = EchoIdentityServicer()
    with connected(pki, servicer, *_silo_1(pki)) as channel:
        pki.revocation_list.write_text("{ truncated")
        with pytest.raises(grpc.RpcError) as err:
            _join(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == []


def test_missing_revocation_list_stops_the_server_from_starting(pki: FederationPaths) -> None:
    pki.revocation_list.unlink()
    with pytest.raises(InvalidInput, match="revoked.json"):
        _interceptor(pki)


def test_methods_outside_the_policy_are_not_served(pki: FederationPaths) -> None:
    reached = []

    def reset(request: bytes, context: grpc.ServicerContext) -> bytes:
        reached.append(request)
        return b""

    admin = grpc.method_handlers_generic_handler(
        "fedbiscuit.v1.Admin", {"Reset": grpc.unary_unary_rpc_method_handler(reset)}
    )
    with (
        connected(pki, EchoIdentityServicer(), *_silo_1(pki), extra_handlers=(admin,)) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        channel.unary_unary("/fedbiscuit.v1.Admin/Reset")(b"", timeout=TIMEOUT_S)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert reached == []


def test_servicer_refuses_identity_when_the_interceptor_is_missing(pki: FederationPaths) -> None:
    with (
        connected(pki, EchoIdentityServicer(), *_silo_1(pki), intercept=False) as channel,
        pytest.raises(grpc.RpcError) as err,
    ):
        _join(channel)
    assert err.value.code() == grpc.StatusCode.UNKNOWN


def test_silo_of_the_new_ca_gets_in_while_the_ca_is_rotated(
    tmp_path: Path, pki: FederationPaths
) -> None:
    # README's rotation: old and new CA of the same federation in one ca.pem (a trust bundle).
    new = init_ca(tmp_path / "fed-a-new", "fed-a")
    issue_silo(new.root, "silo-1")
    pki.ca_cert.write_bytes(pki.ca_cert.read_bytes() + new.ca_cert.read_bytes())
    servicer = EchoIdentityServicer()

    with connected(pki, servicer, *_silo_1(new)) as channel:
        _join(channel)

    assert servicer.calls == ["Join"]
