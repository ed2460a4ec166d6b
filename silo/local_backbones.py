"""Which folder this silo loads for a plan's 'local' backbone: its own copy, found by digest.

The plan names a local backbone by the operator's path and pins the digest of its files; the
digest is what every party must agree on, the path is only where the operator keeps it. A
silo that lists the digest in its config's `local_backbones` loads the folder it keeps there;
one that does not (the localhost demo, where all parties share a filesystem) loads the plan's
path. Whichever folder is chosen, selector.local_backbone checks its digest before loading a
byte, so a wrongly mapped folder is refused. The plan itself is never changed: its hash is
what every task carries.
"""

from __future__ import annotations

from pathlib import Path

from protos.errors import FailedPrecondition
from protos.plan import BackboneSpec, SelectorSpec
from silo.config import SiloConfig


def silo_backbone(config: SiloConfig, spec: BackboneSpec) -> BackboneSpec:
    """The backbone this silo loads for the plan's `spec`: a 'local' one at the folder
    `config.local_backbones` maps its digest to, else at the plan's path; other kinds as they
    are. Raises FailedPrecondition when the chosen folder is not on this machine."""
    if spec.kind != "local":
        return spec
    mapped = config.local_backbones.get(spec.sha256)
    if mapped is not None:
        if not mapped.exists():
            raise FailedPrecondition(
                f"local_backbones maps the plan's backbone {spec.sha256} to {mapped}, which "
                "does not exist on this silo: put the operator's folder there or fix the entry"
            )
        return spec.model_copy(update={"path": str(mapped)})
    if not Path(spec.path).exists():
        raise FailedPrecondition(
            f"the plan's backbone {spec.sha256} is not at the plan's path {spec.path} on this "
            "silo, and local_backbones does not list that digest: copy the operator's folder "
            "to this machine and map the digest to it under local_backbones in the silo config"
        )
    return spec


def silo_selector(config: SiloConfig, spec: SelectorSpec) -> SelectorSpec:
    """The plan's selector with its backbone as this silo loads it (`silo_backbone`)."""
    return spec.model_copy(update={"backbone": silo_backbone(config, spec.backbone)})
