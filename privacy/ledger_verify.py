"""Checks a silo's ledger without trusting whoever hands it over: certificate, signature,
hash chain and sequence.

Used by the aggregator on every entry a silo sends (`check_next`) and by `fedbiscuit audit`
on whole ledgers (`verify_ledger`). Pure: entries come in as bytes or parsed models with a
location to name in messages; nothing here reads files or clocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from pydantic import ValidationError

from privacy.ledger import GENESIS_HASH, LedgerEntry, verify_signature
from privacy.pki import RevocationList, silo_id_from_cert
from privacy.re_release import re_release_problem
from protos.errors import InvalidInput, NotAuthenticated


@dataclass(frozen=True)
class TrustAnchors:
    """What an auditor trusts: the federation CA and, optionally, its revocation list."""

    ca_cert: x509.Certificate
    federation_id: str
    revocations: RevocationList | None = None


@dataclass(frozen=True)
class Violation:
    """One problem, named by where the entry is (`file:line`, or a store row) and its seq."""

    where: str
    seq: int | None
    message: str

    def __str__(self) -> str:
        seq = "" if self.seq is None else f" seq {self.seq}"
        return f"{self.where}{seq}: {self.message}"


def parse_entry(data: bytes) -> LedgerEntry:
    """One entry from its JSON; InvalidInput names the first malformed field."""
    try:
        return LedgerEntry.model_validate_json(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(p) for p in problem["loc"]) or "(entry)"
        raise InvalidInput(f"malformed ledger entry: {field}: {problem['msg']}") from None


def check_signed_by(entry: LedgerEntry, cert: x509.Certificate) -> str | None:
    """Why `entry` is not a valid entry signed by `cert` (hash, signature), or None."""
    if entry.computed_hash() != entry.entry_hash:
        return "entry_hash does not match its content (entry altered)"
    if not verify_signature(entry, cert):
        return "signature does not verify against the signer certificate (forged or altered)"
    return None


def check_signer_cert(entry: LedgerEntry, anchors: TrustAnchors) -> x509.Certificate:
    """The entry's signer certificate if it is a certificate of `entry.silo_id` issued by the
    federation CA, valid at the entry's timestamp and not revoked; InvalidInput otherwise."""
    try:
        cert = x509.load_pem_x509_certificate(entry.signer_cert.encode())
    except ValueError:
        raise InvalidInput("signer_cert is not a PEM certificate") from None
    try:
        cert.verify_directly_issued_by(anchors.ca_cert)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise InvalidInput(
            f"signer certificate (serial {cert.serial_number}) was not issued by the "
            f"federation CA ({type(exc).__name__})"
        ) from None
    try:
        named = silo_id_from_cert(cert, anchors.federation_id)
    except NotAuthenticated as exc:
        raise InvalidInput(str(exc)) from None
    if named != entry.silo_id:
        raise InvalidInput(f"signed with the certificate of silo {named!r}, not {entry.silo_id!r}")
    when = datetime.fromtimestamp(entry.timestamp, UTC)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise InvalidInput(
            f"timestamp {when.isoformat()} is outside its certificate's validity "
            f"({cert.not_valid_before_utc.isoformat()} to {cert.not_valid_after_utc.isoformat()})"
        )
    if anchors.revocations is not None:
        for revoked in anchors.revocations.entries:
            if revoked.serial == cert.serial_number:
                raise InvalidInput(
                    f"signed by the revoked certificate of silo {revoked.silo_id!r} "
                    f"(serial {cert.serial_number}, revoked {revoked.revoked_at.isoformat()})"
                )
    return cert


def check_next(previous: LedgerEntry | None, entry: LedgerEntry) -> str | None:
    """Why `entry` cannot directly follow `previous` (None: the first entry), or None.

    Checks the owner (same federation and silo), the sequence number and the hash link.
    """
    expected = 0 if previous is None else previous.seq + 1
    if previous is not None and (entry.federation_id, entry.silo_id) != (
        previous.federation_id,
        previous.silo_id,
    ):
        return (
            f"belongs to federation {entry.federation_id!r} silo {entry.silo_id!r}, not "
            f"{previous.federation_id!r} {previous.silo_id!r}"
        )
    if entry.seq < expected:
        return f"expected seq {expected}: a duplicate, fork or reordered entry"
    if entry.seq > expected:
        return f"expected seq {expected}: seq {expected}..{entry.seq - 1} missing (gap)"
    prev_hash = GENESIS_HASH if previous is None else previous.entry_hash
    if entry.prev_hash != prev_hash:
        return "prev_hash does not match the entry before it (a fork, or entries altered)"
    return None


@dataclass(frozen=True)
class VerifiedLedger:
    """A ledger's entries in file order with the violations found; `ok` if none."""

    entries: tuple[LedgerEntry, ...]
    locations: tuple[str, ...]
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return not self.violations


def verify_ledger(lines: Sequence[tuple[str, bytes]], anchors: TrustAnchors) -> VerifiedLedger:
    """Verify one silo's ledger given as (location, JSON line) pairs in order.

    Reports every violation (not only the first): malformed, unsigned or forged entries,
    certificates not from the CA, of another silo or revoked, broken chain links, gaps,
    duplicates and forks, entries of another federation or silo than the first.
    """
    entries: list[LedgerEntry] = []
    locations: list[str] = []
    violations: list[Violation] = []
    seen: dict[int, tuple[str, str]] = {}  # seq -> (entry_hash, where)
    previous: LedgerEntry | None = None
    for where, data in lines:
        try:
            entry = parse_entry(data)
        except InvalidInput as exc:
            violations.append(Violation(where, None, str(exc)))
            continue
        entries.append(entry)
        locations.append(where)
        if entry.federation_id != anchors.federation_id:
            violations.append(
                Violation(where, entry.seq, f"belongs to federation {entry.federation_id!r}")
            )
        problem = None
        if entry.computed_hash() != entry.entry_hash:
            problem = "entry_hash does not match its content (entry altered)"
        else:
            try:
                problem = check_signed_by(entry, check_signer_cert(entry, anchors))
            except InvalidInput as exc:
                problem = str(exc)
        if problem:
            violations.append(Violation(where, entry.seq, problem))
        if entry.seq in seen:
            first_hash, first_where = seen[entry.seq]
            kind = "duplicate of" if first_hash == entry.entry_hash else "fork: differs from"
            violations.append(Violation(where, entry.seq, f"{kind} the entry at {first_where}"))
            continue
        link = check_next(previous, entry) or re_release_problem(entry, entries[:-1])
        if link:
            violations.append(Violation(where, entry.seq, link))
        seen[entry.seq] = (entry.entry_hash, where)
        previous = entry
    return VerifiedLedger(tuple(entries), tuple(locations), tuple(violations))
