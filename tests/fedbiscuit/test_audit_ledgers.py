"""`fedbiscuit audit` over several ledgers at once, and how it words a spend at the budget."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fedbiscuit.audit_cli import _anchors, _audit_paths, spend_figure
from fedbiscuit.cli import main
from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.ledger import Ledger
from privacy.pki import FederationPaths
from tests.ledger_entries import signer_for
from tests.privacy.conftest import LEDGER_FEDERATION

DELTA = 1e-5
EVENT = DpEvent("dp_sgd", noise_multiplier=1.1, sample_rate=0.05, steps=5)


def _ledger(path: Path, pki: FederationPaths, silo_id: str, *, at_budget: bool = False) -> Path:
    """Two releases against a budget of 8, or (`at_budget`) with the last one recorded 0.4%
    low, still within the accountants' tolerance, and a budget of exactly that."""
    ledger = Ledger.open(
        path,
        federation_id=LEDGER_FEDERATION,
        silo_id=silo_id,
        clock=time.time,
        signer=signer_for(pki, silo_id),
    )
    accountant = PrivacyAccountant()
    recorded = []
    for _ in range(2):
        recorded.append(accountant.epsilon_after(EVENT, DELTA))
        accountant.record(EVENT)
    if at_budget:
        recorded[-1] *= 0.996
    budget = recorded[-1] if at_budget else 8.0
    for round_index, epsilon in enumerate(recorded):
        ledger.append(
            round_index=round_index, event=EVENT, clip_norm=1.0, delta=DELTA, secure_rng=True,
            epsilon_after=epsilon, budget_epsilon=budget,
        )  # fmt: skip
    return path


def test_repeated_ledger_flags_audit_every_ledger_given(
    tmp_path: Path, ledger_pki: FederationPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _ledger(tmp_path / "a.jsonl", ledger_pki, "silo-1")
    second = _ledger(tmp_path / "b.jsonl", ledger_pki, "silo-2")
    report = tmp_path / "audit.json"

    status = main(
        ["audit", "--ca", str(ledger_pki.ca_cert), "--ledger", str(first),
         "--ledger", str(second), "--ledger", str(first), "--json", str(report)]
    )  # fmt: skip

    assert status == 0, capsys.readouterr().out
    silos = json.loads(report.read_text())["silos"]
    assert [(s["silo_id"], s["source"]) for s in silos] == [
        ("silo-1", str(first)),
        ("silo-2", str(second)),
    ]


def test_a_recomputed_epsilon_just_above_the_budget_is_worded_as_within_tolerance(
    tmp_path: Path, ledger_pki: FederationPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = _ledger(tmp_path / "ledger.jsonl", ledger_pki, "silo-1", at_budget=True)

    status = main(["audit", "--ca", str(ledger_pki.ca_cert), "--ledger", str(ledger)])

    out = capsys.readouterr().out
    assert status == 0, out
    assert "│ ok (see note) │" in out
    assert "is above the budget" in out and "within the tolerance between the two" in out


def test_plot_shows_identical_silos_apart_with_whole_round_ticks(
    tmp_path: Path, ledger_pki: FederationPaths
) -> None:
    ledgers = [_ledger(tmp_path / f"{s}.jsonl", ledger_pki, s) for s in ("silo-1", "silo-2")]
    audits = _audit_paths(ledgers, _anchors(ledger_pki.ca_cert, None), None)

    figure = spend_figure(audits)

    (ax,) = figure.axes
    solid = [line for line in ax.lines if line.get_linestyle() == "-"]
    first, second = (tuple(line.get_xdata()) for line in solid[:2])
    assert first != second and solid[0].get_marker() != solid[1].get_marker()
    assert all(float(tick).is_integer() for tick in ax.get_xticks())
