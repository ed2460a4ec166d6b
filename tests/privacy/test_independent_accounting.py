"""The audit's independent accountant reproduces published DP-SGD reference values."""

from __future__ import annotations

import pytest

from privacy.accounting import DpEvent, PrivacyAccountant
from privacy.independent_accounting import recompute
from tests.ledger_entries import signed_entry, signer_for


def test_opacus_reference_configuration_matches_published_values(ledger_pki) -> None:
    # Opacus's accountant tests: sigma=1.5, q=0.04, 2,250 steps, delta=1e-5 give
    # RDP epsilon ~7.3291 and PRV epsilon ~6.7774 (PRV's own error bound is 0.01).
    entry = signed_entry(
        signer_for(ledger_pki, "silo-1"), federation_id="fed-a", silo_id="silo-1", seq=0,
        round_=0, noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5,
        epsilon_after=7.3291,
    )  # fmt: skip
    ours = PrivacyAccountant()
    ours.record(DpEvent("dp_sgd", 1.5, 0.04, 2250))

    (again,) = recompute([entry])

    assert ours.epsilon(1e-5) == pytest.approx(7.3291, abs=1e-4)
    assert again.rdp == pytest.approx(7.3291, abs=1e-3)
    assert again.pld == pytest.approx(6.7774, abs=0.01)
