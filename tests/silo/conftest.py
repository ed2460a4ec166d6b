"""Real federation material for silo tests: a CA, certificates and silo configs in tmp_path."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from aggregator.config import AggregatorConfig
from aggregator.rpc.server import AggregatorServer
from privacy.pki import FederationPaths, init_ca, issue_aggregator, issue_silo
from protos import codec
from protos.operator_formats.config_files import save_model_file
from protos.plan import HeSpec, Plan
from selector.benchmark.generator import SiloData, make_federated_dataset
from selector.data import write_jsonl
from silo.agent import run_silo
from silo.client import SiloClient
from silo.config import SiloConfig
from silo.identity import SiloIdentity
from silo.policy import PrivacyBudget, SiloPolicy
from silo.trainer import LocalTrainer

FEDERATION = "test-fed"


@pytest.fixture
def pki(tmp_path: Path) -> FederationPaths:
    """A federation CA with an aggregator certificate for localhost/127.0.0.1 and two silos."""
    paths = init_ca(tmp_path / "pki", FEDERATION)
    issue_aggregator(paths.root)
    for silo_id in ("silo-1", "silo-2"):
        issue_silo(paths.root, silo_id)
    return paths


SiloConfigFactory = Callable[..., SiloConfig]


@pytest.fixture
def silo_config(
    tmp_path: Path, pki: FederationPaths, tiny_dataset: dict[str, SiloData]
) -> SiloConfigFactory:
    """Builds the config of `silo_id` dialling `port`, with its benchmark data on disk."""

    def make(
        silo_id: str,
        port: int,
        *,
        epsilon: float = 50.0,
        policy: SiloPolicy | None = None,
        local_backbones: dict[str, Path] | None = None,
    ) -> SiloConfig:
        data_path = tmp_path / f"{silo_id}.jsonl"
        write_jsonl(data_path, tiny_dataset[silo_id].train)
        return SiloConfig(
            silo_id=silo_id,
            federation_id=FEDERATION,
            aggregator_address=f"localhost:{port}",
            pki={
                "ca_cert": pki.ca_cert,
                "cert": pki.silo_cert(silo_id),
                "key": pki.silo_key(silo_id),
            },
            data={"train_path": data_path},
            state_dir=tmp_path / f"state-{silo_id}",
            budget=PrivacyBudget(epsilon=epsilon, delta=1e-5),
            device="cpu",
            # Seeded for deterministic tests, which the silo's policy must allow explicitly.
            seed=7,
            policy=(policy or SiloPolicy(allow_insecure_plaintext=True)).model_copy(
                update={"allow_insecure_rng": True}
            ),
            local_backbones=local_backbones or {},
        )

    return make


AggregatorFactory = Callable[..., AggregatorServer]


@pytest.fixture
def aggregator(tmp_path: Path, pki: FederationPaths) -> AggregatorFactory:
    """Builds a real mTLS aggregator for `plan` on a free loopback port, or `port` (use it
    with `with`); `clock` drives its round deadlines; `export_dir` receives the final
    selectors."""

    def make(
        plan: Plan,
        clock: Callable[[], float] = time.time,
        export_dir: Path | None = None,
        port: int = 0,
    ) -> AggregatorServer:
        plan_path = tmp_path / "plan.yaml"
        save_model_file(plan_path, plan)
        config = AggregatorConfig(
            listen_address=f"127.0.0.1:{port}",
            pki={
                "ca_cert": pki.ca_cert,
                "server_cert": pki.aggregator_cert,
                "server_key": pki.aggregator_key,
                "revocation_list": pki.revocation_list,
            },
            state_dir=tmp_path / "aggregator",
            plan_path=plan_path,
            export_dir=export_dir,
            max_long_poll_s=2.0,
        )
        return AggregatorServer(config, clock=clock)

    return make


def connect(config: SiloConfig, **options: object) -> SiloClient:
    """A client for `config`'s silo, its PKI loaded the way `silo run` loads it."""
    return SiloClient(config, SiloIdentity.load(config), **options)  # type: ignore[arg-type]


def run_silos(
    configs: list[SiloConfig], *, timeout_s: float, wait_ms: int = 1_000
) -> list[int | Exception]:
    """Run one silo agent per config in threads: each one's exit code, or the error it
    stopped with; the agents still running after `timeout_s` are told to stop."""
    stop = threading.Event()
    with ThreadPoolExecutor(len(configs)) as pool:
        futures = [pool.submit(run_silo, config, stop, wait_ms=wait_ms) for config in configs]
        try:
            return [future.exception(timeout=timeout_s) or future.result() for future in futures]
        finally:
            stop.set()


@pytest.fixture
def recorded_updates(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, np.ndarray]]:
    """Every update a silo trains, as (sha256 of the globals it started from, flat delta):
    the real trainer runs; this only keeps what it returned, for the test to look for."""
    recorded: list[tuple[str, np.ndarray]] = []
    lock = threading.Lock()
    train_round = LocalTrainer.train_round

    def recording(self: LocalTrainer, globals_state, steps, *, release):
        delta = train_round(self, globals_state, steps, release=release)
        with lock:
            recorded.append((codec.flatten(globals_state)[0].sha256, codec.flatten(delta)[1]))
        return delta

    monkeypatch.setattr(LocalTrainer, "train_round", recording)
    return recorded


def stored_windows(vector: np.ndarray, count: int = 4, width: int = 4) -> list[bytes]:
    """A few runs of `width` consecutive nonzero float32 values, as the bytes they would be
    if stored: what a test looks for in the aggregator's files and logs."""
    raw = codec.to_bytes(vector)
    starts = np.flatnonzero(vector)[:: max(1, vector.size // count)][:count]
    return [raw[4 * i : 4 * (i + width)] for i in starts if i + width <= vector.size]


def four_silo_dataset() -> dict[str, SiloData]:
    """Benchmark data for silo-1..silo-4 (48 train, 8 test pairs each, seed 0): rounds of 3+."""
    return make_federated_dataset(num_silos=4, train_pairs=48, test_pairs=8, seed=0)


def he_plan_of(plan: Plan, he: HeSpec) -> Plan:
    """`plan` under HE protection `he`, every round with all three silos."""
    fields = plan.model_dump(exclude={"protection"})
    fields.update(protection="he", he=he, silos_per_round=3, min_silos=3)
    return Plan.model_validate(fields)
