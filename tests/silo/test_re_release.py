"""No budget drain: a masked peer that stalls after sharing its keys makes attempts abort
below the minimum, and each re-run used to charge honest silos a fresh DP release. Now they
re-send the release they paid for (fresh masks, ledgered as a re-release with no new ε), so
their ε is one participation per completed round and `fedbiscuit audit` passes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from aggregator.rounds.round_table import Phase
from fedbiscuit.cli import main
from privacy.accounting import PrivacyAccountant
from privacy.ledger import RE_RELEASE, Ledger
from privacy.pki import FederationPaths, issue_silo
from privacy.secagg import SecAggAborted
from protos.operator_formats.config_files import save_model_file
from protos.plan import Plan, SecAggSpec
from selector.benchmark.generator import SiloData
from silo.agent import run_silo
from silo.privacy_state import LEDGER_FILE
from silo.upload.masked import MaskedUpload
from tests.silo.conftest import (
    FEDERATION,
    AggregatorFactory,
    SiloConfigFactory,
    four_silo_dataset,
    run_silos,
)

TIMEOUT_S = 240.0
SILOS = ("silo-1", "silo-2", "silo-3")
STALLED_ATTEMPTS = 5
ROUND_DEADLINE_S = 6.0


@pytest.fixture
def tiny_dataset() -> dict[str, SiloData]:
    return four_silo_dataset()


def _masked_plan(tiny_plan: Plan, silos_per_round: int) -> Plan:
    """One masked round that needs three uploads, with deadlines short enough to re-run."""
    fields = tiny_plan.model_dump(exclude={"protection", "secagg"})
    fields.update(
        rounds=1,
        silos_per_round=silos_per_round,
        min_silos=3,
        round_deadline_s=ROUND_DEADLINE_S,
        secagg=SecAggSpec(phase_timeout_s=ROUND_DEADLINE_S),
    )
    return Plan.model_validate(fields)


def test_a_peer_stalling_every_attempt_does_not_drain_honest_budgets(
    tmp_path: Path,
    pki: FederationPaths,
    tiny_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issue_silo(pki.root, "silo-3")
    plan = _masked_plan(tiny_plan, silos_per_round=3)
    stalls = {"left": STALLED_ATTEMPTS}
    upload = MaskedUpload.send

    def stall_silo_3(self: MaskedUpload, *args, **kwargs):  # a fault injected on purpose
        if self._secagg.silo_id == "silo-3" and stalls["left"] > 0:
            stalls["left"] -= 1
            threading.Event().wait(ROUND_DEADLINE_S + 1)  # keys shared, update never sent
            raise SecAggAborted("silo-3 stalled (injected)")
        return upload(self, *args, **kwargs)

    monkeypatch.setattr(MaskedUpload, "send", stall_silo_3)
    with aggregator(plan) as server:
        outcomes = run_silos(
            [silo_config(silo_id, server.port) for silo_id in SILOS], timeout_s=TIMEOUT_S
        )
        phase = server.wait_until_finished(TIMEOUT_S)
        state_dir = tmp_path / "aggregator"

    assert outcomes == [0, 0, 0] and phase == Phase.DONE
    assert stalls["left"] == 0
    for silo_id in SILOS:
        ledger = Ledger.open(
            tmp_path / f"state-{silo_id}" / LEDGER_FILE, federation_id=FEDERATION, silo_id=silo_id
        )
        paid = [e for e in ledger.entries if e.spends]
        again = [e for e in ledger.entries if e.mechanism == RE_RELEASE]
        assert len(paid) == 1 and len(again) == STALLED_ATTEMPTS, silo_id
        assert {e.re_release_of for e in again} == {paid[0].seq}
        one_participation = PrivacyAccountant()
        one_participation.record(paid[0].dp_event())
        assert ledger.entries[-1].epsilon_after == pytest.approx(
            one_participation.epsilon(plan.delta), rel=1e-12
        )
    assert main(["audit", "--ledger", str(state_dir), "--ca", str(pki.ca_cert)]) == 0
    # A silo ledger audited alone: the plan says its seeded noise was allowed.
    plan_file = tmp_path / "plan.yaml"
    save_model_file(plan_file, plan)
    for silo_id in SILOS:
        silo_ledger = tmp_path / f"state-{silo_id}" / LEDGER_FILE
        audit = ["audit", "--ledger", str(silo_ledger), "--ca", str(pki.ca_cert)]
        assert main([*audit, "--plan", str(plan_file)]) == 0


def test_a_re_run_with_another_roster_is_a_new_paid_release(
    tmp_path: Path,
    pki: FederationPaths,
    tiny_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attempt 0: all four advertise keys, silo-3 and silo-4 stall, too few upload. Attempt
    1: silo-4 never advertises, so the roster differs: sums over the two rosters could be
    differenced, and every silo trains afresh and pays instead of re-sending attempt 0's."""
    silos = ("silo-1", "silo-2", "silo-3", "silo-4")
    for silo_id in silos[2:]:
        issue_silo(pki.root, silo_id)
    plan = _masked_plan(tiny_plan, silos_per_round=4)
    upload, join = MaskedUpload.send, MaskedUpload.before_training
    stalled = {"silo-3": 1, "silo-4": 1}

    def stall_once(self: MaskedUpload, *args, **kwargs):  # a fault injected on purpose
        if stalled.get(self._secagg.silo_id, 0) > 0:
            stalled[self._secagg.silo_id] -= 1
            threading.Event().wait(ROUND_DEADLINE_S + 1)
            raise SecAggAborted(f"{self._secagg.silo_id} stalled (injected)")
        return upload(self, *args, **kwargs)

    def silo_4_gone_after_attempt_0(self: MaskedUpload) -> None:
        if self._secagg.silo_id == "silo-4" and stalled["silo-4"] == 0:
            threading.Event().wait(ROUND_DEADLINE_S + 1)
            raise SecAggAborted("silo-4 is gone (injected)")
        join(self)

    monkeypatch.setattr(MaskedUpload, "send", stall_once)
    monkeypatch.setattr(MaskedUpload, "before_training", silo_4_gone_after_attempt_0)
    with aggregator(plan) as server:
        configs = [silo_config(silo_id, server.port) for silo_id in silos]
        stop = threading.Event()
        with ThreadPoolExecutor(len(configs)) as pool:
            futures = [pool.submit(run_silo, c, stop, wait_ms=1_000) for c in configs[:3]]
            loner = pool.submit(run_silo, configs[3], stop, wait_ms=1_000)
            phase = server.wait_until_finished(TIMEOUT_S)
            outcomes = [f.exception(TIMEOUT_S) or f.result() for f in futures]
            stop.set()
            loner.exception(TIMEOUT_S)

    assert outcomes == [0, 0, 0] and phase == Phase.DONE
    for silo_id in silos[:3]:
        ledger = Ledger.open(
            tmp_path / f"state-{silo_id}" / LEDGER_FILE, federation_id=FEDERATION, silo_id=silo_id
        )
        # Attempt 0 paid; attempt 1 (another roster) paid again; any later attempt with the
        # roster of attempt 1 (if timing made it abort too) re-sends that second release.
        mechanisms = [e.mechanism for e in ledger.entries]
        assert mechanisms[:2] == ["dp_sgd", "dp_sgd"], (silo_id, mechanisms)
        assert {e.re_release_of for e in ledger.entries[2:]} <= {1}, (silo_id, mechanisms)
