"""`fedbiscuit audit` finds every kind of ledger fault and names the entry it is in."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography import x509

from fedbiscuit.cli import main
from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.ledger import Ledger, LedgerEntry
from privacy.pki import FederationPaths, RevocationList, RevokedCertificate
from protos.operator_formats.config_files import save_model_file
from protos.plan import DpSpec, FedBiscuitSpec, LossReportSpec, Plan
from tests.ledger_entries import signer_for
from tests.privacy.conftest import LEDGER_FEDERATION

DELTA = 1e-5
EVENT = DpEvent("dp_sgd", noise_multiplier=1.1, sample_rate=0.05, steps=5)


def _write_ledger(
    path: Path,
    pki: FederationPaths,
    *,
    lie_at: int | None = None,
    secure_rng: bool = True,
    budgets: tuple[float, ...] = (8.0, 8.0, 8.0),
) -> Path:
    """Three releases as a silo records them; at `lie_at` the silo records a tenth of its ε."""
    ledger = Ledger.open(
        path,
        federation_id=LEDGER_FEDERATION,
        silo_id="silo-1",
        clock=time.time,
        signer=signer_for(pki, "silo-1"),
    )
    accountant = PrivacyAccountant()
    for round_index in range(3):
        after = accountant.epsilon_after(EVENT, DELTA)
        recorded = after / 10 if round_index == lie_at else after
        ledger.append(
            round_index=round_index, event=EVENT, clip_norm=1.0, delta=DELTA, secure_rng=secure_rng,
            epsilon_after=recorded, budget_epsilon=budgets[round_index],
        )  # fmt: skip
        accountant.record(EVENT)
    return path


def _audit(pki: FederationPaths, ledger: Path, *extra: str) -> int:
    return main(["audit", "--ledger", str(ledger), "--ca", str(pki.ca_cert), *extra])


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_an_honest_ledger_passes_with_a_table_json_and_plot(
    tmp_path: Path, ledger_pki: FederationPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = _write_ledger(tmp_path / "ledger.jsonl", ledger_pki)
    report, plot = tmp_path / "audit.json", tmp_path / "audit.png"

    status = _audit(ledger_pki, ledger, "--json", str(report), "--plot", str(plot))

    out = capsys.readouterr().out
    assert status == 0, out
    assert "audit: ok" in out and "silo-1" in out
    (silo,) = json.loads(report.read_text())["silos"]
    assert silo["releases"] == 3 and silo["last_round"] == 2 and silo["status"] == "ok"
    assert silo["epsilon_rdp"] == pytest.approx(silo["epsilon_recorded"], rel=1e-2)
    assert silo["epsilon_pld"] < silo["epsilon_rdp"]
    assert silo["secure_rng"] is True
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("field", "value"),
    [("round", 7), ("epsilon_after", 0.001), ("timestamp", 1.0), ("mechanism", "gaussian")],
)
def test_a_tampered_entry_is_named(
    tmp_path: Path, ledger_pki: FederationPaths, capsys, field: str, value: object
) -> None:
    ledger = _write_ledger(tmp_path / "ledger.jsonl", ledger_pki)
    lines = _lines(ledger)
    entry = json.loads(lines[1])
    entry[field] = value
    lines[1] = json.dumps(entry)
    _rewrite(ledger, lines)

    assert _audit(ledger_pki, ledger) == 1
    assert "ledger.jsonl:2 seq 1: entry_hash does not match" in capsys.readouterr().out


def test_a_tampered_parameter_rehashed_still_fails_its_signature(
    tmp_path: Path, ledger_pki: FederationPaths, capsys
) -> None:
    ledger = _write_ledger(tmp_path / "ledger.jsonl", ledger_pki)
    lines = _lines(ledger)
    entry = LedgerEntry.model_validate_json(lines[0])
    params = entry.params.model_copy(update={"noise_multiplier": 50.0})
    forged = entry.model_copy(update={"params": params})
    lines[0] = forged.model_copy(update={"entry_hash": forged.computed_hash()}).to_line().decode()
    _rewrite(ledger, lines)

    assert _audit(ledger_pki, ledger) == 1
    assert "ledger.jsonl:1 seq 0: signature does not verify" in capsys.readouterr().out


def test_a_forged_signature_is_named(tmp_path: Path, ledger_pki: FederationPaths, capsys) -> None:
    ledger = _write_ledger(tmp_path / "ledger.jsonl", ledger_pki)
    lines = _lines(ledger)
    other = json.loads(lines[0])["signature"]
    entry = json.loads(lines[2])
    entry["signature"] = other
    lines[2] = json.dumps(entry)
    _rewrite(ledger, lines)

    assert _audit(ledger_pki, ledger) == 1
    assert "ledger.jsonl:3 seq 2: signature does not verify" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ((0, 2), "ledger.jsonl:2 seq 2: expected seq 1: seq 1..1 missing (gap)"),
        ((1, 0, 2), "ledger.jsonl:1 seq 1: expected seq 0"),
        ((0, 1, 1, 2), "ledger.jsonl:3 seq 1: duplicate of the entry at"),
    ],
    ids=["deleted", "reordered", "duplicated"],
)
def test_a_deleted_reordered_or_duplicated_entry_is_named(
    tmp_path: Path, ledger_pki: FederationPaths, capsys, order: tuple[int, ...], expected: str
) -> None:
    ledger = _write_ledger(tmp_path / "ledger.jsonl", ledger_pki)
    lines = _lines(ledger)
    _rewrite(ledger, [lines[i] for i in order])

    assert _audit(ledger_pki, ledger) == 1
    assert expected in capsys.readouterr().out


def test_entries_signed_by_a_revoked_silo_are_named(
    tmp_path: Path, ledger_pki: FederationPaths, capsys
) -> None:
    ledger = _write_ledger(tmp_path / "ledger.jsonl", ledger_pki)
    cert = x509.load_pem_x509_certificate(ledger_pki.silo_cert("silo-1").read_bytes())
    revoked = tmp_path / "revoked.json"
    entry = RevokedCertificate(cert.serial_number, "silo-1", cert.not_valid_before_utc)
    RevocationList((entry,)).save(revoked)

    assert _audit(ledger_pki, ledger, "--revocations", str(revoked)) == 1
    out = capsys.readouterr().out
    assert "ledger.jsonl:1 seq 0: signed by the revoked certificate of silo 'silo-1'" in out


def test_a_silo_that_under_reports_epsilon_is_named(
    tmp_path: Path, ledger_pki: FederationPaths, capsys
) -> None:
    ledger = _write_ledger(tmp_path / "ledger.jsonl", ledger_pki, lie_at=1)

    assert _audit(ledger_pki, ledger) == 1
    assert "ledger.jsonl:2 seq 1: under-reports epsilon" in capsys.readouterr().out


def test_a_ledger_of_another_federation_ca_is_refused(
    tmp_path: Path, ledger_pki: FederationPaths, pki_of_another_federation: Path, capsys
) -> None:
    ledger = _write_ledger(tmp_path / "ledger.jsonl", ledger_pki)

    status = main(["audit", "--ledger", str(ledger), "--ca", str(pki_of_another_federation)])

    assert status == 1
    assert "ledger.jsonl:1 seq 0: belongs to federation 'fed-a'" in capsys.readouterr().out


@pytest.fixture
def pki_of_another_federation(tmp_path: Path) -> Path:
    from privacy.pki import init_ca

    return init_ca(tmp_path / "other", "fed-b").ca_cert


def test_seeded_noise_is_a_violation_unless_the_plan_allows_it(
    tmp_path: Path, ledger_pki: FederationPaths, tiny_plan, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = _write_ledger(tmp_path / "ledger.jsonl", ledger_pki, secure_rng=False)
    forbids = tmp_path / "forbids.yaml"
    save_model_file(forbids, tiny_plan.model_copy(update={"dp": DpSpec()}))
    allows = tmp_path / "allows.yaml"
    save_model_file(allows, tiny_plan)  # the test plan sets dp.allow_insecure_rng

    assert _audit(ledger_pki, ledger) == 1  # no plan: nothing allows it
    assert _audit(ledger_pki, ledger, "--plan", str(forbids)) == 1
    out = capsys.readouterr().out
    assert out.count("secure_rng: false") >= 6 and "audit: FAILED" in out
    assert _audit(ledger_pki, ledger, "--plan", str(allows)) == 0
    assert "as the plan allowed" in capsys.readouterr().out


def test_a_budget_raised_after_the_first_entry_is_a_violation(
    tmp_path: Path, ledger_pki: FederationPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = _write_ledger(tmp_path / "ledger.jsonl", ledger_pki, budgets=(8.0, 8.0, 12.0))

    assert _audit(ledger_pki, ledger) == 1
    out = capsys.readouterr().out
    assert "ledger.jsonl:3: seq 2" in out or "seq 2" in out
    assert "budget raised to 12: the first entry fixed the silo's budget" in out


@pytest.mark.parametrize(
    ("sample_size", "plan_m", "status", "words"),
    [
        (None, None, 1, "without its sample size m"),
        (32, None, 0, "audit: ok"),
        (32, 32, 0, "audit: ok"),
        (16, 32, 1, "noise std sigma*C/m = 8*2/16 = 1, not the plan's 8*2/32 = 0.5"),
    ],
)
def test_a_loss_report_is_checked_for_its_noise_std_sigma_c_over_m(
    tmp_path: Path,
    ledger_pki: FederationPaths,
    tiny_plan,
    capsys: pytest.CaptureFixture[str],
    sample_size: int | None,
    plan_m: int | None,
    status: int,
    words: str,
) -> None:
    ledger = Ledger.open(
        tmp_path / "ledger.jsonl",
        federation_id=LEDGER_FEDERATION,
        silo_id="silo-1",
        signer=signer_for(ledger_pki, "silo-1"),
    )
    report = DpEvent("gaussian", noise_multiplier=8.0, sample_rate=1.0, steps=3)
    accountant = PrivacyAccountant()
    ledger.append(
        round_index=2, event=report, clip_norm=2.0, delta=DELTA, secure_rng=True,
        epsilon_after=accountant.epsilon_after(report, DELTA), budget_epsilon=8.0,
        sample_size=sample_size,
    )  # fmt: skip
    extra: list[str] = []
    if plan_m is not None:
        fedbiscuit = FedBiscuitSpec(
            clusters=2,
            loss_report=LossReportSpec(clip=2.0, sample_size=plan_m, noise_multiplier=8.0),
        )
        fields = {"algorithm": "fedbiscuit", "fedbiscuit": fedbiscuit, "rounds": 4}
        plan = Plan.model_validate({**tiny_plan.model_dump(), **fields})
        save_model_file(tmp_path / "plan.yaml", plan)
        extra = ["--plan", str(tmp_path / "plan.yaml")]

    assert _audit(ledger_pki, ledger.path, *extra) == status
    assert words in capsys.readouterr().out
