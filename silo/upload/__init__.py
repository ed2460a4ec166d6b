"""How a silo's updates leave it: one uploader per plan protection mode, chosen here once.

The task loop never branches on the mode: it asks :func:`uploader_class` for the plan's
mode (protection, and FedBiscuit membership), lets it
:meth:`~silo.upload.base.Uploader.admit` the plan against the silo's policy, then builds it.
A new mode is one module in this package and one line in `_MODES`.
"""

from __future__ import annotations

from protos.errors import PolicyViolation
from protos.plan import Plan
from silo.policy import SiloPolicy
from silo.upload.base import TrainUpload, UploadContext, Uploader
from silo.upload.he import HeUploader
from silo.upload.hidden import HiddenUploader
from silo.upload.masked import MaskedUploader
from silo.upload.plain import PlainUploader

__all__ = ["TrainUpload", "UploadContext", "Uploader", "admit", "uploader_class"]

_MODES: dict[tuple[str, str], type[Uploader]] = {
    (mode.protection, mode.membership): mode
    for mode in (PlainUploader, MaskedUploader, HeUploader, HiddenUploader)
}


def uploader_class(plan: Plan) -> type[Uploader]:
    """The uploader for the plan's protection and FedBiscuit membership mode; a combination
    this silo does not know is refused."""
    membership = plan.fedbiscuit.membership if plan.fedbiscuit is not None else "visible"
    try:
        return _MODES[(plan.protection, membership)]
    except KeyError:
        known = sorted(f"{p}/{m}" for p, m in _MODES)
        raise PolicyViolation(
            f"plan.protection {plan.protection!r} with fedbiscuit.membership {membership!r}; "
            f"this silo knows {known}"
        ) from None


def admit(policy: SiloPolicy, plan: Plan) -> type[Uploader]:
    """The plan's uploader, once the silo's policy agreed to its mode (else PolicyViolation)."""
    mode = uploader_class(plan)
    mode.admit(policy, plan)
    return mode
