"""Takes in the signed ledger entries silos send with uploads and declines (DESIGN.md §7).

Each new entry must be signed by the key of the caller's verified mTLS certificate, belong to
the caller and this federation, and extend what the aggregator holds for that silo without a
gap or fork; it is then stored durably *before* the update or decline it came with is
accepted. Entries the aggregator already holds may be sent again (a retried upload) but must
be byte-identical. The silo's ε anywhere on the aggregator side comes from these entries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from aggregator.store import FederationStore, LedgerEntryRecord
from privacy.ledger import LedgerEntry
from privacy.ledger_verify import check_next, check_signed_by, parse_entry
from protos.errors import FailedPrecondition, InvalidInput, PermissionDenied, ResourceExhausted

MAX_ENTRIES_PER_CALL = 64
MAX_ENTRY_BYTES = 16 * 1024


class LedgerIntake:
    """Verifies and stores silos' ledger entries; thread-safe."""

    def __init__(self, store: FederationStore, clock: Callable[[], float]):
        self._store = store
        self._federation_id = store.plan.federation_id
        self._clock = clock
        self._lock = threading.Lock()

    def position(self, silo_id: str) -> tuple[int, str]:
        """(next seq expected, entry_hash of the last stored entry or "") for `silo_id`."""
        stored = self._store.ledger_entries(silo_id)
        return (stored[-1].seq + 1, stored[-1].entry_hash) if stored else (0, "")

    def entries_before(self, silo_id: str, seq: int) -> list[LedgerEntry]:
        """The stored entries of `silo_id` before `seq`, in order (a re-release's context)."""
        return [parse_entry(r.entry_json) for r in self._store.ledger_entries(silo_id)][:seq]

    def accept(
        self, silo_id: str, cert: x509.Certificate, raw_entries: Sequence[bytes]
    ) -> list[LedgerEntry]:
        """Verify `raw_entries` (in seq order), store the new ones durably, return them all.

        Raises InvalidInput (malformed, unsigned, forged, not the caller's), PermissionDenied
        (signed with another certificate than the caller's) or FailedPrecondition (gap, fork,
        duplicate out of order), each naming the seq; nothing is stored then.
        """
        if len(raw_entries) > MAX_ENTRIES_PER_CALL:
            raise ResourceExhausted(
                f"{len(raw_entries)} ledger entries in one call; at most {MAX_ENTRIES_PER_CALL}"
            )
        caller_der = cert.public_bytes(serialization.Encoding.DER)
        entries = []
        for index, raw in enumerate(raw_entries):
            if len(raw) > MAX_ENTRY_BYTES:
                raise ResourceExhausted(f"ledger entry #{index} exceeds {MAX_ENTRY_BYTES} bytes")
            try:
                entries.append(parse_entry(raw))
            except InvalidInput as exc:
                raise InvalidInput(f"ledger entry #{index}: {exc}") from None
        with self._lock:
            stored = self._store.ledger_entries(silo_id)
            last = parse_entry(stored[-1].entry_json) if stored else None
            new: list[LedgerEntryRecord] = []
            now = self._clock()
            for entry in entries:
                at = f"ledger entry seq {entry.seq}"
                if (entry.federation_id, entry.silo_id) != (self._federation_id, silo_id):
                    raise InvalidInput(
                        f"{at} belongs to federation {entry.federation_id!r} silo "
                        f"{entry.silo_id!r}, not the caller {silo_id!r} of "
                        f"{self._federation_id!r}"
                    )
                if entry.seq < len(stored) and not new:
                    if entry.entry_hash != stored[entry.seq].entry_hash:
                        raise FailedPrecondition(
                            f"{at} differs from the entry the aggregator already holds for that "
                            "seq (a fork of the silo's ledger)"
                        )
                    continue
                problem = check_next(last, entry)
                if problem:
                    raise FailedPrecondition(f"{at}: {problem}")
                first = stored[0] if stored else new[0] if new else entry
                pinned = first.budget_epsilon
                if entry.budget_epsilon > pinned:
                    raise FailedPrecondition(
                        f"{at}: budget_epsilon {entry.budget_epsilon:g} exceeds the budget "
                        f"{pinned:g} the silo's first ledger entry fixed for this federation"
                    )
                try:
                    signer = x509.load_pem_x509_certificate(entry.signer_cert.encode())
                except ValueError:
                    raise InvalidInput(f"{at}: signer_cert is not a PEM certificate") from None
                if signer.public_bytes(serialization.Encoding.DER) != caller_der:
                    raise PermissionDenied(
                        f"{at} is signed with another certificate than the caller's"
                    )
                problem = check_signed_by(entry, cert)
                if problem:
                    raise InvalidInput(f"{at}: {problem}")
                new.append(
                    LedgerEntryRecord(
                        silo_id,
                        entry.seq,
                        entry.round,
                        entry.entry_hash,
                        entry.epsilon_after,
                        entry.budget_epsilon,
                        entry.to_line(),
                        now,
                    )  # fmt: skip
                )
                last = entry
            if new:
                self._store.add_ledger_entries(new)
        return entries
