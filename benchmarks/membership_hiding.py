"""What membership-hiding FedBiscuit costs against visible clusters, per silo and per round.

K = 3 clusters, 9 and 12 silos, a synthetic adapter of 1.2M parameters, preset ``medium``.
In one process it times:

* a training round: *visible* runs one SecAgg+ round per cluster over that cluster's silos
  (each silo masks one adapter: 1.2M words); *hidden* runs one SecAgg+ round over all
  silos with K-slot uploads (K x 1.2M + 2K words). Rounds are timed like
  ``benchmarks/secagg.py`` (the same ``masked_round``): silos run in parallel, so a round is
  the sum over phases of the slowest silo, plus the aggregator's time; visible clusters run
  side by side (slowest cluster's silos) on one aggregator (its time summed over clusters).
* a grouping: *hidden*: every silo signs and seals its loss vector to every other silo,
  opens and checks the N - 1 it receives, computes the optimal balanced assignment and
  checks N confirmations (slowest silo); *visible*: the aggregator computes the assignment
  from N plaintext vectors.

Run from the repository root: ``python benchmarks/membership_hiding.py [--params N]``.
Network time is left out; bytes up per silo per round are printed instead.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from secagg import NOW, _best, masked_round, silo_identities  # benchmarks/secagg.py, beside this

from privacy.balanced_assignment import cluster_members, cluster_sizes, optimal_assignment
from privacy.membership import (
    CandidateRoster,
    GroupingContext,
    KSlotLayout,
    MemberIdentity,
    agree_on_grouping,
    check_confirmations,
    confirm_grouping,
    open_loss_reports,
    seal_loss_report,
)
from privacy.secagg import MEDIUM

K = 3
PLAN_HASH = "ab" * 32


def grouping_times(ids: list[str], ca, identities, losses: np.ndarray) -> tuple[float, int]:
    """Slowest silo's grouping compute (s) and the sealed bytes each silo uploads."""
    members = {s: MemberIdentity(s, identities[s][0], identities[s][1], ca, NOW) for s in ids}
    roster = CandidateRoster(
        GroupingContext("bench", 1, 0, PLAN_HASH, K), {s: identities[s][0] for s in ids}
    )
    spent = dict.fromkeys(ids, 0.0)
    sealed = {}
    for i, s in enumerate(ids):
        start = time.perf_counter()
        sealed[s] = seal_loss_report(members[s], roster, losses[i])
        spent[s] += time.perf_counter() - start
    views, confirmations = {}, {}
    for i, s in enumerate(ids):
        start = time.perf_counter()
        inbox = {sender: blobs[s] for sender, blobs in sealed.items() if sender != s}
        matrix = open_loss_reports(members[s], roster, ids, inbox, losses[i])
        views[s] = agree_on_grouping(roster, matrix, 3)
        confirmations[s] = confirm_grouping(members[s], views[s])
        spent[s] += time.perf_counter() - start
    for s in ids:
        start = time.perf_counter()
        check_confirmations(members[s], views[s], confirmations)
        spent[s] += time.perf_counter() - start
    up = max(sum(len(b) for b in sealed[s].values()) + 72 + 32 for s in ids)
    return max(spent.values()), up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=1_200_000, help="adapter parameters")
    parser.add_argument("--silos", type=int, nargs="+", default=[9, 12])
    parser.add_argument("--repeats", type=int, default=2, help="keep each round's fastest run")
    args = parser.parse_args()
    ca, identities = silo_identities(max(args.silos))
    rng = np.random.default_rng(0)
    deltas = [(rng.standard_normal(args.params) * 0.05).astype(np.float32) for _ in range(4)]
    header = (
        f"{'silos':>5} {'sizes':>7} | {'up/silo MiB vis':>15} {'hid':>6} {'x':>5} | "
        f"{'round s vis':>11} {'hid':>6} {'x':>5} | {'group ms vis':>12} {'hid':>7} "
        f"{'sealed up KiB':>13}"
    )
    print(f"K = {K}, {args.params:,} parameters per adapter, preset medium")
    print(header)
    print("-" * len(header))
    for n in args.silos:
        ids = sorted(identities)[:n]
        losses = rng.normal(0.7, 0.2, (n, K))
        start = time.perf_counter()
        assignment = optimal_assignment(losses)
        visible_group_s = time.perf_counter() - start
        hidden_group_s, sealed_up = grouping_times(ids, ca, identities, losses)
        sizes = tuple(cluster_sizes(assignment, K))

        clusters = [
            _best(
                args.repeats, masked_round, deltas, [ids[i] for i in rows], ca, identities, set(), k
            )
            for k, rows in enumerate(cluster_members(assignment, K))
        ]
        visible_round = max(sum(t.client_max_s.values()) for t in clusters) + sum(
            t.server_s for t in clusters
        )
        visible_up = max(t.upload_bytes for t in clusters)

        layout = KSlotLayout.for_encoding(args.params, K, MEDIUM.encoding)
        pool = [layout.encode(deltas[c], c, sizes).astype(np.float32) for c in (0, 1, 2, 0)]
        hidden = _best(args.repeats, masked_round, pool, ids, ca, identities, set(), 20)
        print(
            f"{n:>5} {'+'.join(map(str, sizes)):>7} | "
            f"{visible_up / 2**20:>15.2f} {hidden.upload_bytes / 2**20:>6.2f} "
            f"{hidden.upload_bytes / visible_up:>5.2f} | "
            f"{visible_round:>11.2f} {hidden.round_s:>6.2f} "
            f"{hidden.round_s / visible_round:>5.2f} | {visible_group_s * 1e3:>12.2f} "
            f"{hidden_group_s * 1e3:>7.1f} {sealed_up / 1024:>13.1f}",
            flush=True,
        )
    print(
        "\nup/silo: bytes one silo uploads in a training round (masked vector, keys, shares,"
        " signatures);\nround: sum over phases of the slowest silo + aggregator (s); group: "
        "compute of the slowest silo (hidden) or the aggregator's assignment (visible);\n"
        "sealed up: the sealed loss reports and the confirmation one silo uploads per grouping."
    )


if __name__ == "__main__":
    main()
