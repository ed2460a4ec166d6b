"""The privacy ledger: durable before release, replayable, and tamper-evident on open."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from cryptography import x509

from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.ledger import GENESIS_HASH, EntrySigner, Ledger, LedgerEntry, verify_signature
from privacy.pki import FederationPaths
from protos.errors import FailedPrecondition, InvalidInput
from tests.ledger_entries import signer_for

DELTA = 1e-5
EVENTS = [
    DpEvent("dp_sgd", noise_multiplier=1.1, sample_rate=0.05, steps=5),
    DpEvent("dp_sgd", noise_multiplier=1.1, sample_rate=0.05, steps=5),
    DpEvent("dp_sgd", noise_multiplier=0.9, sample_rate=0.1, steps=3),
]


_SIGNER: list[EntrySigner] = []


@pytest.fixture(autouse=True)
def _silo_1_signs(ledger_pki: FederationPaths) -> None:
    _SIGNER[:] = [signer_for(ledger_pki, "silo-1")]


def _open(path: Path, silo_id: str = "silo-1") -> Ledger:
    return Ledger.open(
        path,
        federation_id="fed-a",
        silo_id=silo_id,
        clock=lambda: 1_700_000_000.0,
        signer=_SIGNER[0],
    )


def _fill(path: Path) -> list[float]:
    """Append EVENTS as the task loop would; return the epsilon recorded after each."""
    ledger, accountant, epsilons = _open(path), PrivacyAccountant(), []
    for round_index, event in enumerate(EVENTS):
        epsilon_after = accountant.epsilon_after(event, DELTA)
        ledger.append(
            round_index=round_index,
            event=event,
            clip_norm=1.0,
            delta=DELTA,
            secure_rng=False,
            epsilon_after=epsilon_after,
            budget_epsilon=8.0,
        )
        accountant.record(event)
        epsilons.append(epsilon_after)
    return epsilons


def _rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_reopened_ledger_replays_to_the_same_epsilon(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    epsilons = _fill(path)

    accountant = PrivacyAccountant()
    replayed = _open(path).replay_into(accountant)

    assert replayed == pytest.approx(epsilons[-1])
    assert accountant.events == tuple(EVENTS)
    assert [entry.seq for entry in _open(path).entries] == [0, 1, 2]


def test_entry_is_on_disk_when_append_returns(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = _open(path)

    entry = ledger.append(
        round_index=4,
        event=EVENTS[0],
        clip_norm=1.0,
        delta=DELTA,
        secure_rng=False,
        epsilon_after=0.5,
        budget_epsilon=8.0,
    )

    on_disk = json.loads(path.read_text().splitlines()[0])
    assert on_disk["entry_hash"] == entry.entry_hash == entry.computed_hash()
    assert on_disk["prev_hash"] == GENESIS_HASH
    assert on_disk["round"] == 4
    assert on_disk["timestamp"] == 1_699_999_800.0  # rounded down to 5 minutes
    assert on_disk["params"] == {
        "noise_multiplier": 1.1,
        "sample_rate": 0.05,
        "steps": 5,
        "clip_norm": 1.0,
        "delta": DELTA,
        "accountant": "rdp",
    }


def test_altered_entry_is_detected_with_its_seq(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    _fill(path)
    lines = path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["epsilon_after"] = 0.01
    lines[1] = json.dumps(entry)
    _rewrite(path, lines)

    with pytest.raises(InvalidInput, match=r"ledger\.jsonl:2: seq 1: entry_hash does not match"):
        _open(path)


def test_deleted_entry_is_detected_with_its_seq(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    _fill(path)
    lines = path.read_text().splitlines()
    _rewrite(path, [lines[0], lines[2]])

    with pytest.raises(InvalidInput, match=r"ledger\.jsonl:2: seq 2: expected seq 1"):
        _open(path)


def test_reordered_entries_are_detected_with_their_seq(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    _fill(path)
    lines = path.read_text().splitlines()
    _rewrite(path, [lines[1], lines[0], lines[2]])

    with pytest.raises(InvalidInput, match=r"ledger\.jsonl:1: seq 1: expected seq 0"):
        _open(path)


def test_renumbered_and_rehashed_deletion_still_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    _fill(path)
    first, _, third = path.read_text().splitlines()
    forged = LedgerEntry.model_validate_json(third).model_copy(update={"seq": 1})
    forged = forged.model_copy(update={"entry_hash": forged.computed_hash()})
    _rewrite(path, [first, forged.model_dump_json()])

    with pytest.raises(InvalidInput, match=r"ledger\.jsonl:2: seq 1: prev_hash does not match"):
        _open(path)


def test_consistently_rehashed_epsilon_forgery_fails_replay(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    _fill(path)
    (line,) = path.read_text().splitlines()[:1]
    forged = LedgerEntry.model_validate_json(line).model_copy(update={"epsilon_after": 0.001})
    forged = forged.model_copy(update={"entry_hash": forged.computed_hash()})
    _rewrite(path, [forged.model_dump_json()])

    with pytest.raises(InvalidInput, match=r"seq 0: recorded epsilon_after 0\.001"):
        _open(path).replay_into(PrivacyAccountant())


def test_another_silos_ledger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    _fill(path)

    with pytest.raises(InvalidInput, match=r"seq 0: entry belongs to federation 'fed-a' silo"):
        _open(path, silo_id="silo-2")


def test_torn_last_line_is_refused_not_silently_dropped(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    _fill(path)
    path.write_bytes(path.read_bytes()[:-20])

    with pytest.raises(InvalidInput, match="last line is incomplete"):
        _open(path)


def test_appended_entry_is_signed_by_the_silo_certificate(
    tmp_path: Path, ledger_pki: FederationPaths
) -> None:
    _fill(tmp_path / "ledger.jsonl")
    entry = _open(tmp_path / "ledger.jsonl").entries[0]
    cert = x509.load_pem_x509_certificate(ledger_pki.silo_cert("silo-1").read_bytes())
    other = x509.load_pem_x509_certificate(ledger_pki.silo_cert("silo-2").read_bytes())

    assert entry.signer_cert.encode() == ledger_pki.silo_cert("silo-1").read_bytes()
    assert verify_signature(entry, cert)
    assert not verify_signature(entry, other)
    assert not verify_signature(entry.model_copy(update={"round": 9}), cert)


def test_a_ledger_opened_without_a_key_cannot_append(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "ledger.jsonl", federation_id="fed-a", silo_id="silo-1")

    with pytest.raises(FailedPrecondition, match="without a signing key"):
        ledger.append(
            round_index=0, event=EVENTS[0], clip_norm=1.0, delta=DELTA, secure_rng=False,
            epsilon_after=0.5, budget_epsilon=8.0,
        )  # fmt: skip


def test_signing_key_cannot_be_pickled_nor_paired_with_another_certificate(
    ledger_pki: FederationPaths,
) -> None:
    signer = signer_for(ledger_pki, "silo-1")

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(signer)
    with pytest.raises(InvalidInput, match="does not belong"):
        EntrySigner.from_files(ledger_pki.silo_key("silo-1"), ledger_pki.silo_cert("silo-2"))


def test_a_loss_report_records_its_sample_size_and_dp_sgd_entries_hash_without_it(
    tmp_path: Path,
) -> None:
    ledger = _open(tmp_path / "ledger.jsonl")
    report = DpEvent("gaussian", noise_multiplier=8.0, sample_rate=1.0, steps=3)
    ledger.append(
        round_index=0, event=EVENTS[0], clip_norm=1.0, delta=DELTA, secure_rng=True,
        epsilon_after=PrivacyAccountant().epsilon_after(EVENTS[0], DELTA), budget_epsilon=8.0,
    )  # fmt: skip
    accountant = PrivacyAccountant()
    accountant.record(EVENTS[0])
    entry = ledger.append(
        round_index=1, event=report, clip_norm=2.0, delta=DELTA, secure_rng=True,
        epsilon_after=accountant.epsilon_after(report, DELTA), budget_epsilon=8.0,
        sample_size=112,
    )  # fmt: skip

    lines = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert "sample_size" not in lines[0]["params"]  # DP-SGD entries are as before
    assert lines[1]["params"]["sample_size"] == 112
    assert _open(tmp_path / "ledger.jsonl").entries[1] == entry  # verifies on reopen
