"""The demo's per-mode table covers the plan's modes, and its silos admit its plans."""

from __future__ import annotations

from typing import get_args

import pytest

from fedbiscuit.cli import main
from fedbiscuit.demo.layout import DemoOptions, demo_plan
from fedbiscuit.demo.modes import DEMO_MODES, silo_policy
from protos.errors import PolicyViolation
from protos.plan import Plan
from silo.policy import SiloPolicy
from silo.upload import admit


def test_every_plan_protection_mode_has_one_demo_row() -> None:
    assert set(DEMO_MODES) == set(get_args(Plan.model_fields["protection"].annotation))


@pytest.mark.parametrize("protection", sorted(DEMO_MODES))
def test_the_demo_silos_admit_the_demo_plan_of_each_mode(protection: str) -> None:
    plan = demo_plan(DemoOptions(protection=protection, tiny=True))
    policy = SiloPolicy.model_validate({**silo_policy(protection), "allowed_backbones": ["tiny"]})

    assert admit(policy, plan).protection == protection
    assert (plan.he is not None) == DEMO_MODES[protection].silo_holds_key


def test_a_demo_silo_under_masking_refuses_a_plaintext_plan() -> None:
    plan = demo_plan(DemoOptions(protection="insecure_plaintext", tiny=True))
    policy = SiloPolicy.model_validate({**silo_policy("masking"), "allowed_backbones": ["tiny"]})

    with pytest.raises(PolicyViolation, match="allow_insecure_plaintext is false"):
        admit(policy, plan)


def test_a_masked_fedbiscuit_demo_hides_membership_unless_asked_to_show_it() -> None:
    def membership(**options: object) -> str:
        plan = demo_plan(
            DemoOptions(algorithm="fedbiscuit", silos=9, rounds=6, tiny=True, **options)
        )
        assert plan.fedbiscuit is not None
        return plan.fedbiscuit.membership

    assert membership() == "hidden"
    assert membership(membership="visible") == "visible"
    assert membership(protection="he") == "visible"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--membership", "visible"], "a fedbiscuit option"),
        (["--algorithm", "fedbiscuit", "--protection", "he", "--membership", "hidden"], "masking"),
    ],
)
def test_the_demo_refuses_a_membership_it_cannot_run(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--tiny", *flags]) != 0
    assert message in capsys.readouterr().err
