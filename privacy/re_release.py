"""Re-releasing a paid-for DP release when an attempt of a round is re-run (DESIGN.md §3).

Why: when a round's attempt aborts (a peer stalls or drops below the minimum, the aggregator
restarts) and is re-run, training again would be a fresh DP release and cost budget every
time: one stalling peer could drain every honest silo. Instead a silo sends the *same* noised
update again, masked afresh. That is post-processing of a release already accounted, so its
ledger entry (mechanism ``re_release``) records no new ε. It is allowed only when the binding
matches: same federation, plan, round, adapter and digest of the global the update was
trained from (a changed global is a genuine new release), at most :data:`MAX_RE_RELEASES`
times per release. Pure: the silo, the aggregator and the audit use these checks.

In membership-hiding FedBiscuit (privacy.membership) a silo's adapter is its cluster, which
the aggregator must not learn, so a hidden DP-SGD release binds every adapter's global
instead of its own (:func:`hidden_release_binding`): still one release per round and
grouping, and a changed global of any cluster is a new release.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from privacy.ledger import RE_RELEASE, LedgerEntry

# At most this many re-releases of one DP-SGD release (so attempts of a round the silo takes
# part in without paying again are bounded; SECURITY.md says what they can reveal).
MAX_RE_RELEASES = 8
# The adapter a hidden-membership release names: none (it would name the silo's cluster).
HIDDEN_ADAPTER = -1


def release_binding(
    federation_id: str, plan_sha256: str, round_: int, adapter_index: int, globals_sha256: str
) -> str:
    """SHA-256 (hex) naming exactly which DP-SGD task a noised update answers."""
    body = {
        "federation_id": federation_id,
        "plan_sha256": plan_sha256,
        "round": round_,
        "adapter_index": adapter_index,
        "globals_sha256": globals_sha256,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(b"fedbiscuit/release-binding/v1\0" + canonical).hexdigest()


def all_globals_sha256(adapter_sha256s: Sequence[str]) -> str:
    """SHA-256 (hex) of every adapter's globals hash in index order (hidden-mode releases)."""
    joined = ",".join(adapter_sha256s).encode()
    return hashlib.sha256(b"fedbiscuit/all-globals/v1\0" + joined).hexdigest()


def hidden_release_binding(
    federation_id: str, plan_sha256: str, round_: int, adapter_sha256s: Sequence[str]
) -> str:
    """The binding of a hidden-membership DP-SGD release: like :func:`release_binding`, but
    naming no adapter and the globals of all K adapters, so it does not reveal the cluster."""
    return release_binding(
        federation_id, plan_sha256, round_, HIDDEN_ADAPTER, all_globals_sha256(adapter_sha256s)
    )


def re_release_problem(entry: LedgerEntry, earlier: Sequence[LedgerEntry]) -> str | None:
    """Why `entry` is not a valid re-release given the silo's entries before it (seq order,
    `earlier[-1]` its predecessor), or None. Non-re-release entries must not name one."""
    if entry.mechanism != RE_RELEASE:
        if entry.re_release_of is not None:
            return f"a {entry.mechanism} release cannot be a re-release (re_release_of is set)"
        return None
    if entry.re_release_of is None or entry.release_binding is None:
        return "a re-release must name the entry it repeats and its binding"
    by_seq = {e.seq: e for e in earlier}
    original = by_seq.get(entry.re_release_of)
    if original is None or original.seq >= entry.seq:
        return f"re-releases seq {entry.re_release_of}, which is not an earlier entry"
    if original.mechanism != "dp_sgd" or original.release_binding != entry.release_binding:
        return (
            f"re-releases seq {original.seq}, which is not a DP-SGD release with the same "
            "binding (round, adapter, global)"
        )
    same = (original.round, original.params, original.secure_rng)
    if (entry.round, entry.params, entry.secure_rng) != same:
        return (
            f"round or parameters differ from those of the release it repeats (seq {original.seq})"
        )
    repeats = sum(1 for e in earlier if e.re_release_of == original.seq)
    if repeats >= MAX_RE_RELEASES:
        return (
            f"seq {original.seq} was already re-released {repeats} times "
            f"(at most {MAX_RE_RELEASES})"
        )
    before = earlier[-1].epsilon_after if earlier else 0.0
    if entry.epsilon_after != before:
        return (
            f"a re-release must leave epsilon unchanged ({before:.6g}), not "
            f"{entry.epsilon_after:.6g}"
        )
    return None
