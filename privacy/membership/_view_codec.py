"""A silo's confirmed grouping as bytes, for its own state dir (restarts, ``silo status``).

Why: a silo restarted mid-round must train under exactly the clusters every other silo
confirmed, and only the silos know them. The stored form holds what the view was computed
from (grouping, candidate certificates, final roster, matrix, method); loading recomputes
the assignment and digest and refuses the file unless it matches the confirmed digest, so a
damaged or edited file can never put the silo in another cluster. It holds other silos'
noised losses (DP releases this silo already received); it never leaves the silo.
"""

from __future__ import annotations

import json
from typing import get_args

import numpy as np

from privacy.balanced_assignment import AssignmentMethod
from privacy.membership._agreement import GroupingView, agree_on_grouping
from privacy.membership._reports import LossMatrix
from privacy.membership._roster import CandidateRoster, GroupingContext
from protos.errors import InvalidInput

_VERSION = 1


def view_to_bytes(view: GroupingView, method: AssignmentMethod, min_cluster_silos: int) -> bytes:
    ctx = view.roster.context
    return json.dumps(
        {
            "version": _VERSION,
            "context": [ctx.federation_id, ctx.round, ctx.attempt, ctx.plan_hash, ctx.adapters],
            "certificates": {s: pem.decode() for s, pem in view.roster.certificates.items()},
            "silo_ids": list(view.silo_ids),
            "losses": np.ascontiguousarray(view.matrix.losses, dtype="<f8").tobytes().hex(),
            "method": method,
            "min_cluster_silos": min_cluster_silos,
            "digest": view.digest.hex(),
        },
        sort_keys=True,
    ).encode()


def view_from_bytes(data: bytes, where: str) -> GroupingView:
    """The stored view, recomputed and checked against its confirmed digest."""
    try:
        raw = json.loads(data)
        if raw["version"] != _VERSION:
            raise InvalidInput(f"{where}: grouping file version {raw['version']!r} is unknown")
        if raw["method"] not in get_args(AssignmentMethod):
            raise ValueError("unknown assignment method")
        roster = CandidateRoster(
            GroupingContext(*raw["context"]),
            {s: pem.encode() for s, pem in raw["certificates"].items()},
        )
        ids = tuple(raw["silo_ids"])
        losses = np.frombuffer(bytes.fromhex(raw["losses"]), dtype="<f8").astype(np.float64)
        matrix = losses.reshape(len(ids), roster.context.adapters)
        matrix.setflags(write=False)
        view = agree_on_grouping(
            roster, LossMatrix(ids, matrix), int(raw["min_cluster_silos"]), raw["method"]
        )
        digest = bytes.fromhex(raw["digest"])
    except InvalidInput:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidInput(f"{where}: the stored grouping is malformed ({error})") from None
    if view.digest != digest:
        raise InvalidInput(
            f"{where}: the stored grouping does not reproduce its confirmed digest (damaged "
            "or edited); the silo waits for the next grouping"
        )
    return view
