"""A silo trains only under a protection mode its operator agreed to, and says so loudly when
that mode lets the aggregator see its individual updates."""

from __future__ import annotations

import logging

import pytest

from protos.errors import PolicyViolation
from protos.plan import HeSpec, Plan
from silo.policy import SiloPolicy
from silo.upload import admit

PERMISSIVE = SiloPolicy(allow_insecure_plaintext=True)


def _plan(**changes: object) -> Plan:
    return Plan(federation_id="fed-a", **{"protection": "insecure_plaintext", **changes})


def test_default_policy_accepts_masked_updates() -> None:
    admit(SiloPolicy(), _plan(protection="masking"))


def test_a_policy_requiring_masking_refuses_plaintext_even_when_allowed() -> None:
    policy = SiloPolicy(allow_insecure_plaintext=True, required_protection="masking")
    with pytest.raises(PolicyViolation, match="policy.required_protection is 'masking'"):
        admit(policy, _plan())
    admit(policy, _plan(protection="masking"))


def test_default_policy_refuses_plaintext_updates() -> None:
    with pytest.raises(PolicyViolation) as caught:
        admit(SiloPolicy(), _plan())

    message = str(caught.value)
    assert "plan.protection is 'insecure_plaintext'" in message
    assert "policy.allow_insecure_plaintext is false" in message


def test_allowed_plaintext_is_accepted_with_a_loud_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        admit(PERMISSIVE, _plan())

    assert any(
        r.levelno == logging.WARNING and "INSECURE" in r.getMessage() and "fed-a" in r.getMessage()
        for r in caplog.records
    )


def test_a_policy_requiring_he_refuses_masking_and_unknown_presets() -> None:
    policy = SiloPolicy(required_protection="he")
    with pytest.raises(PolicyViolation, match="policy.required_protection is 'he'"):
        admit(policy, _plan(protection="masking"))
    he = {"protection": "he", "he": HeSpec(key_custodian="silo-1")}
    admit(policy, _plan(**he))
    unknown = {"protection": "he", "he": HeSpec(key_custodian="silo-1", preset="ckks-fast")}
    with pytest.raises(PolicyViolation, match="plan he.preset: unknown CKKS preset 'ckks-fast'"):
        admit(policy, _plan(**unknown))
