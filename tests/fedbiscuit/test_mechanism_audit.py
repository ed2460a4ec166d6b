"""The one-run audit through the silo's own trainer catches every planted bug; the real
mechanism stays under its claimed ε. Seeded (noise included) so the outcome is fixed."""

from __future__ import annotations

import pytest

from fedbiscuit.mechanism_audit import PLANTED_BUGS, AuditSetting, run_audit
from privacy.accounting import derive_noise_multiplier
from privacy.secure_noise import NoiseSource

Q, STEPS, DELTA = 0.0625, 18, 1e-5
SETTING = AuditSetting("eps 1", derive_noise_multiplier(1.0, DELTA, Q, STEPS), Q, STEPS, DELTA)


def _audit(**kwargs):
    return run_audit(SETTING, canaries=600, ordinary=400, noise=NoiseSource(seed=5), **kwargs)


def test_the_real_mechanism_stays_under_its_claim():
    audit = _audit()
    assert audit.claimed_epsilon == pytest.approx(1.0, rel=1e-3)
    assert audit.result.epsilon_lower_bound < audit.claimed_epsilon


@pytest.mark.parametrize("bug", sorted(PLANTED_BUGS))
def test_a_planted_bug_shows_a_lower_bound_above_the_claim(bug):
    audit = _audit(trainer=PLANTED_BUGS[bug], mechanism=bug)
    assert audit.result.epsilon_lower_bound > audit.claimed_epsilon, audit.result
