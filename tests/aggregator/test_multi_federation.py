"""Two federations, two CAs, one aggregator port (real mTLS on loopback): a silo certificate of
one federation can never touch the other, and each keeps its own state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from aggregator.config import AggregatorConfig, AggregatorPki, FederationConfig
from aggregator.ops.status import read_status
from aggregator.rounds.round_table import Phase
from aggregator.rpc.server import AggregatorServer
from fedbiscuit.cli import main
from privacy.pki import (
    FederationPaths,
    channel_credentials,
    init_ca,
    issue_aggregator,
    issue_silo,
    revoke,
)
from privacy.pki.ca import _issue
from privacy.pki.identity import silo_uri
from protos.errors import InvalidInput
from protos.operator_formats.config_files import save_model_file
from protos.v1 import federation_pb2 as pb
from protos.v1 import federation_pb2_grpc as pb_grpc
from tests.ledger_entries import signer_for

from .conftest import TIMEOUT_S, FakeClock, Silo, tiny_plan

FEDERATIONS = ("fed-a", "fed-b")
SILOS = ("silo-1", "silo-2")


def _server_name(federation_id: str) -> str:
    """Each federation's server certificate answers to its own name (picked by SNI)."""
    return f"{federation_id}.aggregator.test"


class Host:
    """One aggregator hosting fed-a and fed-b, each with its own CA, plan and state dir."""

    def __init__(self, root: Path, stack: ExitStack) -> None:
        self.root, self._stack = root, stack
        self.clock = FakeClock()
        self.pki: dict[str, FederationPaths] = {}
        for federation_id in FEDERATIONS:
            paths = init_ca(root / "pki" / federation_id, federation_id)
            issue_aggregator(paths.root, [_server_name(federation_id)], [])
            for silo_id in SILOS:  # the same silo ids in both: only the CA tells them apart
                issue_silo(paths.root, silo_id)
            self.pki[federation_id] = paths
        self.plans = {f: tiny_plan(federation_id=f, rounds=1) for f in FEDERATIONS}

    def federation_config(self, federation_id: str) -> FederationConfig:
        paths, plan_path = self.pki[federation_id], self.root / f"{federation_id}.plan.yaml"
        save_model_file(plan_path, self.plans[federation_id])
        return FederationConfig(
            pki=AggregatorPki(
                ca_cert=paths.ca_cert,
                server_cert=paths.aggregator_cert,
                server_key=paths.aggregator_key,
                revocation_list=paths.revocation_list,
            ),
            state_dir=self.root / federation_id / "state",
            plan_path=plan_path,
            export_dir=self.root / federation_id / "selector",
        )

    def config(self) -> AggregatorConfig:
        return AggregatorConfig(
            listen_address="127.0.0.1:0",
            federations=[self.federation_config(f) for f in FEDERATIONS],
            max_long_poll_s=0.5,
        )

    def start(self) -> AggregatorServer:
        server = AggregatorServer(self.config(), clock=self.clock, tick_interval_s=3600)
        self._stack.callback(server.stop, 0)
        return server.start()

    def silo(
        self, server: AggregatorServer, cert_of: str, silo_id: str, acts_in: str | None = None
    ) -> Silo:
        """`silo_id` with its certificate of federation `cert_of`, speaking for `acts_in`."""
        paths = self.pki[cert_of]
        credentials = channel_credentials(
            paths.ca_cert, paths.silo_cert(silo_id), paths.silo_key(silo_id)
        )
        channel = grpc.secure_channel(
            f"127.0.0.1:{server.port}",
            credentials,
            options=[("grpc.ssl_target_name_override", _server_name(cert_of))],
        )
        self._stack.callback(channel.close)
        stub = pb_grpc.FederationStub(channel)
        return Silo(silo_id, stub, self.plans[acts_in or cert_of], signer_for(paths, silo_id))


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    with ExitStack() as stack:
        yield Host(tmp_path, stack)


def _train_one_round(silos: list[Silo]) -> None:
    for silo in silos:
        silo.join()
    for silo in silos:
        task = silo.pull()
        _, start = silo.download(task)
        assert silo.upload(task, np.full_like(start, 0.5)).accepted


def test_each_federation_trains_only_its_own_silos_into_its_own_state(host: Host) -> None:
    server = host.start()

    _train_one_round([host.silo(server, "fed-a", s) for s in SILOS])

    assert server.federations["fed-a"].machine.wait_until_finished(TIMEOUT_S) == Phase.DONE
    a, b = read_status(host.root / "fed-a" / "state"), read_status(host.root / "fed-b" / "state")
    assert (a.federation_id, a.phase, [s.id for s in a.silos]) == ("fed-a", "DONE", list(SILOS))
    assert (b.federation_id, b.phase, b.silos) == ("fed-b", "WAITING_FOR_SILOS", ())
    assert server.phase == Phase.WAITING_FOR_SILOS  # the process serves on until fed-b is done

    _train_one_round([host.silo(server, "fed-b", s) for s in SILOS])

    assert server.wait_until_finished(TIMEOUT_S) == Phase.DONE
    assert (host.root / "fed-a" / "selector").is_dir()
    assert (host.root / "fed-b" / "selector").is_dir()


def test_silo_certificate_of_a_cannot_act_in_b(host: Host) -> None:
    server = host.start()
    intruder = host.silo(server, "fed-a", "silo-1", acts_in="fed-b")
    host.silo(server, "fed-a", "silo-1").join()  # a member of fed-a in good standing

    refusals = []
    for call in (intruder.join, intruder.pull):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        refusals.append(caught.value)
    header = pb.UpdateHeader(federation_id="fed-b", task_id="any")
    with pytest.raises(grpc.RpcError) as caught:
        intruder.stub.UploadUpdate(iter([pb.UploadPart(header=header)]), timeout=TIMEOUT_S)
    refusals.append(caught.value)

    for refusal in refusals:
        assert refusal.code() == grpc.StatusCode.PERMISSION_DENIED
        assert refusal.details() == (
            "the certificate of silo 'silo-1' belongs to federation 'fed-a'; it cannot act in "
            "federation 'fed-b'"
        )
    server.stop(0)
    assert read_status(host.root / "fed-b" / "state").silos == ()


def test_ca_of_a_cannot_mint_a_silo_of_b(host: Host, tmp_path: Path) -> None:
    # fed-a's CA signs a certificate naming a silo of fed-b: it chains to a trusted CA (the
    # handshake passes) but not to fed-b's, so the interceptor refuses it.
    paths = host.pki["fed-a"]
    cert_pem, key_pem = _issue(
        paths,
        "silo-9",
        [x509.UniformResourceIdentifier(silo_uri("fed-b", "silo-9"))],
        ExtendedKeyUsageOID.CLIENT_AUTH,
        30,
        None,
    )
    (tmp_path / "forged.pem").write_bytes(cert_pem)
    (tmp_path / "forged.key").write_bytes(key_pem)
    server = host.start()
    credentials = channel_credentials(
        paths.ca_cert, tmp_path / "forged.pem", tmp_path / "forged.key"
    )
    with (
        grpc.secure_channel(
            f"127.0.0.1:{server.port}",
            credentials,
            options=[("grpc.ssl_target_name_override", _server_name("fed-a"))],
        ) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        pb_grpc.FederationStub(channel).Join(
            pb.JoinRequest(federation_id="fed-b"), timeout=TIMEOUT_S
        )

    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    server.stop(0)
    assert read_status(host.root / "fed-b" / "state").silos == ()


def test_revoking_a_silo_of_a_leaves_the_same_silo_id_of_b_alone(host: Host) -> None:
    revoke(host.pki["fed-a"].root, "silo-1")
    server = host.start()

    with pytest.raises(grpc.RpcError) as caught:
        host.silo(server, "fed-a", "silo-1").join()

    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert host.silo(server, "fed-b", "silo-1").join().silo_id == "silo-1"


def test_one_federation_listed_twice_is_refused_at_start(host: Host) -> None:
    twin = host.federation_config("fed-a").model_copy(
        update={"state_dir": host.root / "twin", "export_dir": None}
    )
    config = host.config().model_copy(
        update={"federations": (host.federation_config("fed-a"), twin)}
    )

    with pytest.raises(InvalidInput, match=r"federations\.1\.plan_path: federation 'fed-a'"):
        AggregatorServer(config)


def test_server_certificates_sharing_a_name_are_refused(host: Host) -> None:
    issue_aggregator(host.pki["fed-b"].root, [_server_name("fed-a")], [], force=True)

    with pytest.raises(InvalidInput, match="is also on"):
        AggregatorServer(host.config())


def test_status_shows_every_hosted_federation(host: Host, capsys) -> None:
    host.start().stop(0)
    path = host.root / "aggregator.yaml"
    save_model_file(path, host.config())

    assert main(["aggregator", "check-config", str(path)]) == 0
    assert main(["aggregator", "status", "--config", str(path)]) == 0

    out = capsys.readouterr().out
    assert "federation fed-a (fedbis, 1 rounds" in out
    assert "federation fed-b (fedbis, 1 rounds" in out
    assert out.count("WAITING_FOR_SILOS") >= 2
