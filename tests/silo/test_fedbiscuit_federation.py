"""A tiny FedBiscuit federation over real mTLS: warm-up, DP loss reports, grouping, per-cluster
training, the exported selector set, and a loss report refused when the budget cannot pay."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.ops.status import read_status
from aggregator.rounds.round_table import Phase
from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.ledger import Ledger
from privacy.loss_report import loss_report_event
from protos.plan import FedBiscuitSpec, LossReportSpec, Plan
from selector.checkpoint import load_selector_set
from silo.config import SiloConfig
from silo.privacy_state import LEDGER_FILE
from tests.silo.conftest import FEDERATION, AggregatorFactory, SiloConfigFactory, run_silos

TIMEOUT_S = 90.0
SILOS = ("silo-1", "silo-2")


@pytest.fixture
def fedbiscuit_plan(tiny_plan: Plan) -> Plan:
    """K=2, one warm-up round per adapter, a grouping before rounds 2 and 3."""
    return Plan.model_validate(
        {
            **tiny_plan.model_dump(),
            "algorithm": "fedbiscuit",
            "rounds": 4,
            "fedbiscuit": FedBiscuitSpec(
                clusters=2,
                warmup_rounds_per_adapter=1,
                regroup_every=1,
                assignment="optimal",
                loss_report=LossReportSpec(clip=4.0, sample_size=32, noise_multiplier=4.0),
            ),
        }
    )


def _entries(config: SiloConfig) -> list:
    path = config.state_dir / LEDGER_FILE
    return list(Ledger.open(path, federation_id=FEDERATION, silo_id=config.silo_id).entries)


def test_fedbiscuit_warms_up_groups_on_dp_loss_reports_and_exports_k_selectors(
    tmp_path: Path,
    aggregator: AggregatorFactory,
    fedbiscuit_plan: Plan,
    silo_config: SiloConfigFactory,
) -> None:
    with aggregator(fedbiscuit_plan, export_dir=tmp_path / "selectors") as server:
        configs = [silo_config(silo_id, server.port) for silo_id in SILOS]
        exit_codes = run_silos(configs, timeout_s=TIMEOUT_S, wait_ms=2_000)
        phase = server.wait_until_finished(TIMEOUT_S)
        store = server.store
        warmup = [store.globals_record(r, 1).sha256 for r in (0, 1, 2)]

    assert exit_codes == [0, 0] and phase == Phase.DONE
    # Round 0 trains adapter 0 only; round 1 adapter 1.
    assert warmup[0] == warmup[1] != warmup[2]
    report = loss_report_event(2, 4.0)
    for config in configs:
        entries = _entries(config)
        assert [(e.round, e.mechanism) for e in entries] == [
            (0, "dp_sgd"), (1, "dp_sgd"), (2, "gaussian"), (2, "dp_sgd"), (3, "gaussian"),
            (3, "dp_sgd"),
        ]  # fmt: skip
        loss = entries[2]
        assert loss.dp_event() == report and loss.params.clip_norm == 4.0
    models, _, clusters, meta = load_selector_set(tmp_path / "selectors")
    assert len(models) == 2 and meta["algorithm"] == "fedbiscuit"
    # Two silos in two balanced clusters: one each.
    assert sorted(clusters) == list(SILOS) and sorted(clusters.values()) == [0, 1]
    status = read_status(tmp_path / "aggregator")
    assert all(silo.rounds_participated == 4 for silo in status.silos)


def test_a_loss_report_the_budget_cannot_pay_is_never_released(
    tmp_path: Path,
    aggregator: AggregatorFactory,
    fedbiscuit_plan: Plan,
    silo_config: SiloConfigFactory,
) -> None:
    plan = fedbiscuit_plan.model_copy(update={"min_silos": 1})
    # Budget: both warm-up rounds of DP-SGD fit, the first loss report does not.
    accountant = PrivacyAccountant()
    for _ in range(2):
        accountant.record(DpEvent("dp_sgd", 1.0, 8 / 64, 2))
    trained = accountant.epsilon(plan.delta)
    with_report = accountant.epsilon_after(loss_report_event(2, 4.0), plan.delta)
    with aggregator(plan, export_dir=tmp_path / "selectors") as server:
        poor = silo_config("silo-1", server.port, epsilon=(trained + with_report) / 2)
        rich = silo_config("silo-2", server.port)
        outcomes = run_silos([poor, rich], timeout_s=TIMEOUT_S, wait_ms=2_000)
        phase = server.wait_until_finished(TIMEOUT_S)

    # K=2 clusters need 2 reports; with silo-1 out of budget the grouping cannot happen.
    assert phase == Phase.FAILED
    assert all("cannot be grouped" in str(outcome) for outcome in outcomes)
    assert [e.mechanism for e in _entries(poor)] == ["dp_sgd", "dp_sgd"]
    by_id = {silo.id: silo for silo in read_status(tmp_path / "aggregator").silos}
    # Either side alone suffices: the aggregator, seeing from the verified ledger that silo-1
    # cannot afford more, stops scheduling it before the silo's own guard has to decline.
    assert by_id["silo-1"].exhausted
