"""Silos against a real aggregator over mTLS: train to DONE, decline when broke, refuse plans.

Everything here is the real thing on loopback (PKI, gRPC, aggregator, Opacus trainer) with
the tiny backbone; the only faults are injected on purpose (an upload that never leaves, a
round deadline that passes while the silo trains).
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from aggregator.ops.status import read_status
from aggregator.rounds.round_table import Phase
from privacy.ledger import EntrySigner, Ledger
from protos.errors import FailedPrecondition, PolicyViolation
from protos.plan import Plan
from protos.v1 import federation_pb2 as pb
from selector.benchmark.generator import SiloData
from silo.agent import run_silo
from silo.client import SiloClient
from silo.config import SiloConfig
from silo.identity import SiloIdentity
from silo.policy import SiloPolicy
from silo.privacy_state import LEDGER_FILE, PrivacyState
from silo.rpc_errors import AggregatorUnavailable
from silo.task_loop import TaskLoop
from tests.silo.conftest import FEDERATION, AggregatorFactory, SiloConfigFactory

TIMEOUT_S = 60.0


def _signer(config: SiloConfig) -> EntrySigner:
    return EntrySigner.from_files(config.pki.key, config.pki.cert)


def _ledger(config: SiloConfig) -> Ledger:
    return Ledger.open(
        config.state_dir / LEDGER_FILE, federation_id=FEDERATION, silo_id=config.silo_id
    )


def _privacy(config: SiloConfig, signer: EntrySigner) -> PrivacyState:
    """The silo's budget state as `silo run` restores it (clock fixed at 0)."""
    return PrivacyState.restore(config.state_dir, FEDERATION, config.silo_id, lambda: 0.0, signer)


def _identity_and_privacy(config: SiloConfig) -> tuple[SiloIdentity, PrivacyState]:
    identity = SiloIdentity.load(config)
    return identity, _privacy(config, identity.signer)


def _run_silos(configs: list[SiloConfig], stop: threading.Event) -> list[int]:
    with ThreadPoolExecutor(len(configs)) as pool:
        futures = [pool.submit(run_silo, config, stop, wait_ms=2_000) for config in configs]
        try:
            return [future.result(timeout=TIMEOUT_S) for future in futures]
        finally:
            stop.set()


def test_two_silos_train_every_round_and_ledger_every_release(
    tiny_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    tiny_dataset: dict[str, SiloData],
) -> None:
    with aggregator(tiny_plan) as server:
        configs = [silo_config(silo_id, server.port) for silo_id in ("silo-1", "silo-2")]
        exit_codes = _run_silos(configs, threading.Event())
        phase = server.wait_until_finished(TIMEOUT_S)

    assert exit_codes == [0, 0]
    assert phase == Phase.DONE
    status = read_status(server.config.state_dir)
    for config in configs:
        entries = _ledger(config).entries
        assert [(e.seq, e.round) for e in entries] == [(0, 0), (1, 1)]
        assert entries[0].params.noise_multiplier == tiny_plan.dp.noise_multiplier
        # The Poisson rate the trainer sampled at: expected batch size / the silo's pairs.
        examples = len(tiny_dataset[config.silo_id].train)
        rate = tiny_plan.dp.expected_batch_size / examples
        assert {e.params.sample_rate for e in entries} == {rate}
        reported = next(silo for silo in status.silos if silo.id == config.silo_id)
        assert reported.rounds_participated == tiny_plan.rounds
        assert reported.epsilon == pytest.approx(entries[-1].epsilon_after)


def test_silo_whose_budget_cannot_afford_a_round_declines_and_never_trains(
    tiny_plan: Plan, aggregator: AggregatorFactory, silo_config: SiloConfigFactory
) -> None:
    plan = tiny_plan.model_copy(update={"min_silos": 1})
    with aggregator(plan) as server:
        poor = silo_config("silo-1", server.port, epsilon=0.01)
        rich = silo_config("silo-2", server.port)
        exit_codes = _run_silos([poor, rich], threading.Event())
        phase = server.wait_until_finished(TIMEOUT_S)

    assert exit_codes == [0, 0]
    assert phase == Phase.DONE
    assert _ledger(poor).entries == ()
    assert len(_ledger(rich).entries) == plan.rounds
    by_id = {silo.id: silo for silo in read_status(server.config.state_dir).silos}
    assert by_id["silo-1"].exhausted
    assert by_id["silo-1"].declines == 1
    assert by_id["silo-1"].rounds_participated == 0
    assert by_id["silo-2"].rounds_participated == plan.rounds


def test_silo_refuses_a_plaintext_plan_before_any_training(
    tiny_plan: Plan, aggregator: AggregatorFactory, silo_config: SiloConfigFactory
) -> None:
    with aggregator(tiny_plan) as server:
        config = silo_config("silo-1", server.port, policy=SiloPolicy())
        with pytest.raises(PolicyViolation, match="policy.allow_insecure_plaintext is false"):
            run_silo(config, threading.Event(), wait_ms=2_000)

    assert _ledger(config).entries == ()


class _UploadNeverLeaves(SiloClient):
    """Injected fault: the network dies exactly when the update would leave the silo."""

    def upload_update(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        raise AggregatorUnavailable("injected fault: upload lost")


def test_spend_is_ledgered_before_upload_and_stays_spent_when_upload_fails(
    tiny_plan: Plan, aggregator: AggregatorFactory, silo_config: SiloConfigFactory
) -> None:
    plan = tiny_plan.model_copy(update={"silos_per_round": 1, "min_silos": 1})
    with aggregator(plan) as server:
        config = silo_config("silo-1", server.port)
        identity, privacy = _identity_and_privacy(config)
        with (
            _UploadNeverLeaves(config, identity) as client,
            pytest.raises(AggregatorUnavailable, match="injected fault"),
        ):
            TaskLoop(config, identity, client, privacy, wait_ms=2_000).run()

    (entry,) = _ledger(config).entries
    assert entry.round == 0
    restored = _privacy(config, _signer(config))
    assert restored.accountant.epsilon(plan.delta) == pytest.approx(entry.epsilon_after)
    assert len(json.loads((config.state_dir / "accountant.json").read_text())["events"]) == 1
    by_id = {silo.id: silo for silo in read_status(server.config.state_dir).silos}
    assert by_id["silo-1"].rounds_participated == 0


class _DeadlinePassesWhileTraining(SiloClient):
    """Injected fault: the aggregator's clock jumps past the round deadline once, just
    before the first upload, so that upload arrives for a round attempt already closed."""

    def __init__(self, config: SiloConfig, clock: list[float], jump_s: float) -> None:
        super().__init__(config, SiloIdentity.load(config))
        self._clock, self._jump_s = clock, jump_s

    def upload_update(self, *args: object, **kwargs: object) -> pb.Ack:  # type: ignore[override]
        if self._jump_s:
            self._clock[0] += self._jump_s
            self._jump_s = 0.0
        return super().upload_update(*args, **kwargs)  # type: ignore[arg-type]


def test_late_upload_is_rejected_but_stays_spent_and_the_silo_carries_on(
    tiny_plan: Plan, aggregator: AggregatorFactory, silo_config: SiloConfigFactory
) -> None:
    plan = tiny_plan.model_copy(update={"silos_per_round": 1, "min_silos": 1})
    now = [1_700_000_000.0]
    with aggregator(plan, clock=lambda: now[0]) as server:
        config = silo_config("silo-1", server.port)
        privacy = _privacy(config, _signer(config))
        client = _DeadlinePassesWhileTraining(config, now, plan.round_deadline_s + 1)
        with client:
            identity = SiloIdentity.load(config)
            outcome = TaskLoop(config, identity, client, privacy, wait_ms=2_000).run()

    assert outcome.finished
    assert outcome.tasks == {"stale": 1, "uploaded": plan.rounds}
    assert [(e.seq, e.round) for e in _ledger(config).entries] == [(0, 0), (1, 0), (2, 1)]
    (silo,) = read_status(server.config.state_dir).silos
    assert silo.rounds_participated == plan.rounds


class _RefusesFirstGlobals(SiloClient):
    """Injected fault: this silo refuses the first globals it is sent (as it refuses a masked
    task naming no secure aggregation round), a local refusal before anything is spent."""

    refused = False

    def download_globals(self, *args: object, **kwargs: object):  # type: ignore[override]
        if not self.refused:
            self.refused = True
            raise FailedPrecondition("injected fault: this silo refuses these globals")
        return super().download_globals(*args, **kwargs)  # type: ignore[arg-type]


def test_a_local_refusal_is_reported_as_refused_not_as_the_aggregator_moving_on(
    tiny_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plan = tiny_plan.model_copy(update={"silos_per_round": 1, "min_silos": 1})
    with aggregator(plan) as server:
        config = silo_config("silo-1", server.port)
        identity, privacy = _identity_and_privacy(config)
        with _RefusesFirstGlobals(config, identity) as client, caplog.at_level(logging.INFO):
            outcome = TaskLoop(config, identity, client, privacy, wait_ms=2_000).run()

    assert outcome.finished
    assert outcome.tasks == {"refused": 1, "uploaded": plan.rounds}
    assert any("phase=refused round=0" in r.getMessage() for r in caplog.records)
