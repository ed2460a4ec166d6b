"""What a silo of a membership-hiding FedBiscuit plan keeps of its groupings, in its state dir.

Why: only the silos know the clusters (privacy.membership), so each silo must keep the view
it confirmed (to train its own cluster's adapter after a restart, and for ``silo status``),
and the noised loss vector it paid for (a retried grouping attempt of the same round
re-sends those very values, post-processing of a release already accounted, instead of
paying again). Both files are 0600, written atomically, and never leave the silo; the view
file holds other silos' DP-noised losses and is checked against its confirmed digest on load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from privacy.balanced_assignment import AssignmentMethod
from privacy.membership import GroupingView, view_from_bytes, view_to_bytes
from privacy.pki.layout import write_atomic
from protos.errors import InvalidInput

VIEW_FILE = "grouping_view.json"
LOSSES_FILE = "grouping_losses.json"


@dataclass(frozen=True)
class PaidLosses:
    """The noised loss vector of one paid loss report, and what it was computed from."""

    plan_sha256: str
    round: int
    adapter_sha256: tuple[str, ...]
    seq: int  # the ledger entry of its release
    losses: tuple[float, ...]


class GroupingStore:
    """The silo's confirmed grouping view and its last paid loss report."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir

    def save_view(self, view: GroupingView, method: AssignmentMethod, min_silos: int) -> None:
        """Replace the previous grouping's view (fsync'd) with `view`."""
        write_atomic(self._dir / VIEW_FILE, view_to_bytes(view, method, min_silos), secret=True)

    def load_view(self) -> GroupingView | None:
        """The last confirmed view, recomputed and checked; None if there is none."""
        path = self._dir / VIEW_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return view_from_bytes(data, str(path))

    def save_losses(self, paid: PaidLosses) -> None:
        """Keep `paid` (before any of it leaves), replacing the previous round's."""
        body = {
            "plan_sha256": paid.plan_sha256,
            "round": paid.round,
            "adapter_sha256": list(paid.adapter_sha256),
            "seq": paid.seq,
            "losses": np.asarray(paid.losses, dtype="<f8").tobytes().hex(),
        }
        write_atomic(self._dir / LOSSES_FILE, json.dumps(body).encode(), secret=True)

    def load_losses(self) -> PaidLosses | None:
        """The last paid loss report, or None if there is none."""
        path = self._dir / LOSSES_FILE
        try:
            raw = json.loads(path.read_bytes())
            losses = np.frombuffer(bytes.fromhex(raw["losses"]), dtype="<f8")
            return PaidLosses(
                str(raw["plan_sha256"]),
                int(raw["round"]),
                tuple(str(h) for h in raw["adapter_sha256"]),
                int(raw["seq"]),
                tuple(float(v) for v in losses),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            raise InvalidInput(
                f"{path}: the kept loss report is malformed ({error}); delete it to pay for a "
                "new report"
            ) from None


def own_cluster(state_dir: Path, silo_id: str) -> int | None:
    """The cluster `silo_id` is in under the grouping its state dir last confirmed (what
    ``silo status`` shows and only the silo knows), or None if it holds none."""
    view = GroupingStore(state_dir).load_view()
    if view is None or silo_id not in view.silo_ids:
        return None
    return view.cluster_of(silo_id)
