"""`fedbiscuit silo export`: a silo decrypts a finished homomorphic federation's selectors.

Why on a silo: under protection 'he' the aggregator holds no secret key, so it cannot write
the final selectors (DESIGN.md §6). A silo holding the epoch's key fetches the final encrypted
globals of every adapter, checks each exactly as before training (the signed statement of
what it sums, then spot checks re-adding chunks from the inputs) and only then decrypts,
writing the checkpoint format the aggregator writes in the other modes. Nothing is uploaded
and nothing is spent: export releases nothing to anyone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from protos import codec
from protos.errors import FailedPrecondition
from selector.checkpoint import save_federation_export
from silo.client import SiloClient
from silo.config import SiloConfig
from silo.credential_check import check_credentials
from silo.identity import SiloIdentity
from silo.joining import accept_plan
from silo.upload.he import HeUploader
from silo.upload.he_exchange import HeExchange
from silo.upload.he_keys import HeKeyring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """What was written: the federation's algorithm and rounds, and how many selectors."""

    algorithm: str
    rounds: int
    adapters: int


def export_selectors(config: SiloConfig, out_dir: Path) -> ExportResult:
    """Join, fetch, check and decrypt the final globals, save them under `out_dir` (new or
    empty). Raises FailedPrecondition for a federation that is not 'he' or not finished, or
    a silo without this epoch's key; AggregateRejected when a check fails."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FailedPrecondition(
            f"--out {out_dir} is not an empty folder; choose a new one so nothing is overwritten"
        )
    check_credentials(config.pki, config.federation_id, config.silo_id)
    identity = SiloIdentity.load(config)
    with SiloClient(config, identity) as client:
        plan = accept_plan(config, client.join())
        if plan.protection != HeUploader.protection:
            raise FailedPrecondition(
                f"federation {plan.federation_id!r} uses protection {plan.protection!r}: its "
                "aggregator exports the selectors itself (the export_dir setting of its config); "
                "`fedbiscuit silo export` is for protection 'he' only"
            )
        keyring = HeKeyring(config, identity, client, plan, create_key=False)
        exchange = HeExchange(config, identity, client, plan, keyring)
        finals, clusters = [], {}
        for adapter in range(plan.adapters):
            layout, vector, header = exchange.globals_for(None, adapter, None)
            finals.append(codec.unflatten(layout, vector))
            clusters = {silo: int(k) for silo, k in header.clusters.items()}
    if any(not 0 <= k < plan.adapters for k in clusters.values()):
        raise FailedPrecondition("the aggregator's final clusters name an adapter not in the plan")
    # The plan's selector spec, as the aggregator writes it in the other modes: the export
    # names the operator's backbone path and digest, not where this silo keeps its copy.
    save_federation_export(out_dir, plan, finals, clusters)
    log.info(
        "federation=%s silo=%s phase=export adapters=%d out=%s",
        plan.federation_id,
        config.silo_id,
        plan.adapters,
        out_dir,
    )
    return ExportResult(plan.algorithm, plan.rounds, plan.adapters)
