"""Re-releases in the ledger: a genuine one (same binding, ε unchanged) replays and audits
clean; anything else passed off as one is a violation the audit names."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography import x509

from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.audit import audit_ledger
from privacy.ledger import Ledger, LedgerEntry
from privacy.ledger_verify import TrustAnchors, VerifiedLedger, verify_ledger
from privacy.pki import FederationPaths
from privacy.re_release import MAX_RE_RELEASES, release_binding
from tests.ledger_entries import signed_entry, signer_for

FEDERATION = "fed-a"
DELTA = 1e-5
SGD = DpEvent("dp_sgd", noise_multiplier=1.1, sample_rate=0.05, steps=5)
BINDING = release_binding(FEDERATION, "a" * 64, 0, 0, "b" * 64)
OTHER_BINDING = release_binding(FEDERATION, "a" * 64, 0, 0, "c" * 64)


def _ledger(path: Path, pki: FederationPaths) -> Ledger:
    return Ledger.open(
        path,
        federation_id=FEDERATION,
        silo_id="silo-1",
        clock=time.time,  # now: the session's test certificates may be younger than this module
        signer=signer_for(pki, "silo-1"),
    )


def _paid(ledger: Ledger, binding: str = BINDING) -> LedgerEntry:
    accountant = PrivacyAccountant()
    accountant.record(SGD)
    return ledger.append(
        round_index=0,
        event=SGD,
        clip_norm=1.0,
        delta=DELTA,
        secure_rng=True,
        epsilon_after=accountant.epsilon(DELTA),
        budget_epsilon=8.0,
        release_binding=binding,
    )


def _paid_then_re_released(path: Path, pki: FederationPaths, times: int) -> LedgerEntry:
    """A ledger at `path` with one paid release re-sent `times` times; returns the paid entry."""
    ledger = _ledger(path, pki)
    paid = _paid(ledger)
    for _ in range(times):
        ledger.append_re_release(paid, epsilon_after=paid.epsilon_after, budget_epsilon=8.0)
    return paid


def _verified(path: Path, pki: FederationPaths) -> VerifiedLedger:
    anchors = TrustAnchors(x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()), FEDERATION)
    lines = [(f"ledger:{n}", line) for n, line in enumerate(path.read_bytes().splitlines(), 1)]
    return verify_ledger(lines, anchors)


def test_re_release_costs_nothing_and_audits_clean(
    tmp_path: Path, ledger_pki: FederationPaths
) -> None:
    path = tmp_path / "ledger.jsonl"
    paid = _paid_then_re_released(path, ledger_pki, times=3)

    replayed = _ledger(path, ledger_pki).replay_into(PrivacyAccountant())
    audit = audit_ledger("silo-1", str(path), _verified(path, ledger_pki), with_pld=False)

    assert replayed == pytest.approx(paid.epsilon_after)
    assert audit.status == "ok", audit.violations
    assert audit.epsilon_rdp == pytest.approx(audit.points[0].rdp)


@pytest.mark.parametrize(
    ("forgery", "complaint"),
    [
        ({"re_release_of": 5}, "not an earlier entry"),
        ({"release_binding": OTHER_BINDING}, "same binding"),
        ({"epsilon_after": 0.01}, "epsilon unchanged"),
        ({"steps": 1}, "parameters differ"),
        ({"mechanism": "dp_sgd"}, "cannot be a re-release"),
    ],
)
def test_forged_re_release_is_a_violation(
    tmp_path: Path, ledger_pki: FederationPaths, forgery: dict, complaint: str
) -> None:
    path = tmp_path / "ledger.jsonl"
    paid = _paid(_ledger(path, ledger_pki))
    fields = {
        "federation_id": FEDERATION,
        "silo_id": "silo-1",
        "seq": 1,
        "round_": 0,
        "prev_hash": paid.entry_hash,
        "noise_multiplier": 1.1,
        "sample_rate": 0.05,
        "steps": 5,
        "delta": DELTA,
        "epsilon_after": paid.epsilon_after,
        "mechanism": "re_release",
        "timestamp": paid.timestamp,
        "re_release_of": 0,
        "release_binding": BINDING,
    }
    forged = signed_entry(signer_for(ledger_pki, "silo-1"), **{**fields, **forgery})
    with path.open("ab") as handle:
        handle.write(forged.to_line() + b"\n")

    verified = _verified(path, ledger_pki)

    assert [v.seq for v in verified.violations] == [1]
    assert complaint in verified.violations[0].message


def test_a_release_is_re_released_at_most_the_cap(
    tmp_path: Path, ledger_pki: FederationPaths
) -> None:
    path = tmp_path / "ledger.jsonl"
    _paid_then_re_released(path, ledger_pki, times=MAX_RE_RELEASES + 1)

    verified = _verified(path, ledger_pki)

    assert [v.seq for v in verified.violations] == [MAX_RE_RELEASES + 1]
    assert "already re-released" in verified.violations[0].message
