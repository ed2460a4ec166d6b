"""A real aggregator on 127.0.0.1:0 over mutual TLS, and silos driven through the generated
stub with certificates issued by privacy.pki. Deadlines follow a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aggregator.config import AggregatorConfig, AggregatorPki
from aggregator.rpc.server import AggregatorServer
from privacy.ledger import GENESIS_HASH, EntrySigner, LedgerEntry
from privacy.pki import FederationPaths, channel_credentials, init_ca, issue_aggregator, issue_silo
from privacy.secagg import SecAggClient, for_plan
from privacy.secagg import wire as secagg_wire
from protos import codec
from protos.operator_formats.config_files import save_model_file
from protos.plan import BackboneSpec, Plan, SelectorSpec
from protos.v1 import federation_pb2 as pb
from protos.v1 import federation_pb2_grpc as pb_grpc
from tests.ledger_entries import signed_entry, signer_for

FEDERATION_ID = "fed-test"
SILOS = ("silo-1", "silo-2", "silo-3")
TIMEOUT_S = 20


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FederationPaths:
    paths = init_ca(tmp_path_factory.mktemp("pki") / "fed", FEDERATION_ID)
    issue_aggregator(paths.root)
    for silo in SILOS:
        issue_silo(paths.root, silo)
    return paths


def tiny_plan(**overrides: object) -> Plan:
    fields = {
        "federation_id": FEDERATION_ID,
        "rounds": 2,
        "silos_per_round": 2,
        "min_silos": 2,
        "round_deadline_s": 60.0,
        "protection": "insecure_plaintext",
        "selector": SelectorSpec(backbone=BackboneSpec(kind="tiny")),
    }
    return Plan(**{**fields, **overrides})


class Silo:
    """One silo's view of the federation: the calls a silo agent would make, with a signed
    ledger kept in memory (every upload resends it whole; the aggregator skips what it has)."""

    def __init__(self, silo_id: str, stub: pb_grpc.FederationStub, plan: Plan, signer: EntrySigner):
        self.silo_id, self.stub, self.plan, self.signer = silo_id, stub, plan, signer
        self.entries: list[LedgerEntry] = []

    def next_entry(self, round_: int, **overrides: object) -> LedgerEntry:
        """A new signed entry following the in-memory ledger (not yet kept in it)."""
        fields = {
            "federation_id": self.plan.federation_id,
            "silo_id": self.silo_id,
            "seq": len(self.entries),
            "round_": round_,
            "prev_hash": self.entries[-1].entry_hash if self.entries else GENESIS_HASH,
            "steps": self.plan.training.local_steps,
            "clip_norm": self.plan.dp.clip_norm,
            "delta": self.plan.delta,
            "epsilon_after": 0.5 * (len(self.entries) + 1),
        }
        return signed_entry(self.signer, **{**fields, **overrides})

    def join(self) -> pb.JoinReply:
        return self.stub.Join(
            pb.JoinRequest(federation_id=self.plan.federation_id), timeout=TIMEOUT_S
        )

    def pull(self) -> pb.Task:
        request = pb.PullTaskRequest(
            federation_id=self.plan.federation_id, plan_sha256=self.plan.sha256(), wait_ms=0
        )
        return self.stub.PullTask(request, timeout=TIMEOUT_S)

    def download(self, task: pb.Task) -> tuple[codec.Manifest, np.ndarray]:
        request = pb.DownloadRequest(federation_id=self.plan.federation_id, task_id=task.task_id)
        parts = list(self.stub.DownloadGlobals(request, timeout=TIMEOUT_S))
        manifest = codec.manifest_from_proto(parts[0].manifest, max_bytes=1 << 30)
        return manifest, codec.assemble(manifest, [p.data for p in parts[1:]])

    def header(self, task: pb.Task, delta: np.ndarray, **overrides: object) -> pb.UpdateHeader:
        """A well-formed header for `delta` (in the globals' layout); fields can be overridden."""
        layout = self.download(task)[0].layout()
        self.entries.append(self.next_entry(task.round))
        fields = {
            "federation_id": task.federation_id,
            "task_id": task.task_id,
            "round": task.round,
            "phase": task.phase,
            "plan_sha256": task.plan_sha256,
            "adapter_index": task.adapter_index,
            "protection": self.plan.protection,
            "manifest": codec.manifest_to_proto(codec.Manifest(layout, codec.sha256_of(delta))),
            "ledger_entries": [entry.to_line() for entry in self.entries],
        }
        return pb.UpdateHeader(**{**fields, **overrides})

    def upload(
        self, task: pb.Task, delta: np.ndarray, header: pb.UpdateHeader | None = None
    ) -> pb.Ack:
        header = header or self.header(task, delta)
        parts = [pb.UploadPart(header=header)]
        parts += [pb.UploadPart(data=c) for c in codec.iter_chunks(codec.to_bytes(delta))]
        return self.stub.UploadUpdate(iter(parts), timeout=TIMEOUT_S)

    def decline(self, task: pb.Task, reason: str = "budget_exhausted") -> pb.Ack:
        request = pb.DeclineRequest(
            federation_id=task.federation_id, task_id=task.task_id, round=task.round,
            reason_code=reason, message="no budget left", epsilon_spent=7.9,
        )  # fmt: skip
        return self.stub.Decline(request, timeout=TIMEOUT_S)


@dataclass
class Federation:
    """Builds servers on one state dir (restartable) and silo connections to them."""

    root: Path
    pki: FederationPaths
    clock: FakeClock = field(default_factory=FakeClock)
    plan: Plan = field(default_factory=tiny_plan)
    settings: dict[str, object] = field(default_factory=dict)
    """Extra AggregatorConfig fields (metrics_address, health_address, ...)."""
    _stack: ExitStack = field(default_factory=ExitStack)

    def config(self) -> AggregatorConfig:
        plan_path = self.root / "plan.yaml"
        save_model_file(plan_path, self.plan)
        return AggregatorConfig(
            listen_address="127.0.0.1:0",
            pki=AggregatorPki(
                ca_cert=self.pki.ca_cert,
                server_cert=self.pki.aggregator_cert,
                server_key=self.pki.aggregator_key,
                revocation_list=self.pki.revocation_list,
            ),
            state_dir=self.root / "state",
            plan_path=plan_path,
            export_dir=self.root / "selector",
            max_long_poll_s=0.5,
            **self.settings,
        )

    def start(self) -> AggregatorServer:
        """A started server; stopped at the end of the test (or earlier by the test)."""
        server = AggregatorServer(self.config(), clock=self.clock, tick_interval_s=3600)
        self._stack.callback(server.stop, 0)
        return server.start()

    def channel(self, server: AggregatorServer, silo_id: str) -> grpc.Channel:
        """An mTLS channel to `server` with `silo_id`'s certificate, closed after the test."""
        credentials = channel_credentials(
            self.pki.ca_cert, self.pki.silo_cert(silo_id), self.pki.silo_key(silo_id)
        )
        channel = grpc.secure_channel(f"127.0.0.1:{server.port}", credentials)
        self._stack.callback(channel.close)
        return channel

    def silo(self, server: AggregatorServer, silo_id: str) -> Silo:
        stub = pb_grpc.FederationStub(self.channel(server, silo_id))
        return Silo(silo_id, stub, self.plan, signer_for(self.pki, silo_id))

    def secagg_client(self, silo_id: str, task: pb.Task) -> SecAggClient:
        """`silo_id`'s SecAgg+ party for `task` (a masked plan's), with its real keys."""
        key = serialization.load_pem_private_key(self.pki.silo_key(silo_id).read_bytes(), None)
        return SecAggClient(
            for_plan(self.plan),
            secagg_wire.context_from_proto(task.secagg),
            silo_id,
            self.pki.silo_cert(silo_id).read_bytes(),
            key,
            x509.load_pem_x509_certificate(self.pki.ca_cert.read_bytes()),
            datetime.now(UTC),
        )

    def joined(self, server: AggregatorServer, silo_ids: tuple[str, ...] = SILOS) -> list[Silo]:
        silos = [self.silo(server, silo_id) for silo_id in silo_ids]
        for silo in silos:
            silo.join()
        return silos


@pytest.fixture
def federation(tmp_path: Path, pki: FederationPaths) -> Iterator[Federation]:
    fed = Federation(tmp_path, pki)
    with fed._stack:
        yield fed
