"""The silo's append-only privacy ledger: one hash-chained JSON line per DP release.

Why: the ledger is the authoritative record of what a silo has spent. An entry is written
and fsync'd *before* the release leaves the silo, so a crash can only over-count, never
under-count; replaying the entries through a fresh accountant restores the spend after a
restart. Each entry carries the SHA-256 of its predecessor, so an edited, deleted or
reordered entry is detected when the ledger is opened (a truncated tail is not: the silo
cross-checks its accountant state for that). Each entry also carries the silo's certificate
and an ECDSA P-256 signature with the certificate's key over the rest of the entry, so the
aggregator and an auditor can check who made it without trusting whoever holds the file
(`privacy.ledger_verify`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field, ValidationError

from privacy.accounting import DpEvent, PrivacyAccountant
from protos.errors import FailedPrecondition, InvalidInput
from protos.strict_model import StrictModel

LEDGER_VERSION = 2
TIMESTAMP_RESOLUTION_S = 300
"""Entry timestamps are rounded down to this: they leave the silo, and exact times would tell
how long its training took (which grows with its data). Equal to the PKI's certificate
backdating, so a rounded timestamp never precedes the signing certificate's validity."""
GENESIS_HASH = "0" * 64
# The mechanism of an entry that sends an earlier DP-SGD release's noised update again (a
# re-run attempt of the same round): post-processing, no new epsilon (privacy.re_release).
RE_RELEASE = "re_release"
_HASH_PATTERN = r"^[0-9a-f]{64}$"


class ReleaseParams(StrictModel):
    """Everything an independent accountant needs to recompute a release's epsilon."""

    noise_multiplier: float = Field(gt=0)
    sample_rate: float = Field(gt=0, le=1)
    steps: int = Field(ge=1)
    clip_norm: float = Field(gt=0)
    delta: float = Field(gt=0, lt=1)
    accountant: Literal["rdp"] = "rdp"
    sample_size: int | None = Field(
        None,
        ge=1,
        description="A loss report's m, the examples each mean is over: its sensitivity per "
        "adapter is clip_norm / m and its noise std noise_multiplier · clip_norm / m. None "
        "for DP-SGD (left out of the hashed and signed bytes, so older entries still verify).",
    )


class LedgerEntry(StrictModel):
    """One release as the silo accounted it.

    `entry_hash` covers every field but itself and `signature`; `signature` (base64 DER
    ECDSA-SHA256 by the key of `signer_cert`) covers every field but itself.
    """

    version: Literal[2] = LEDGER_VERSION
    federation_id: str = Field(min_length=1)
    silo_id: str = Field(min_length=1)
    seq: int = Field(ge=0)
    round: int = Field(ge=0)
    mechanism: str = Field(min_length=1)
    params: ReleaseParams
    secure_rng: bool
    epsilon_after: float = Field(ge=0)
    budget_epsilon: float = Field(gt=0)
    timestamp: float = Field(
        description="Seconds since the Unix epoch when it was appended, rounded down to "
        "TIMESTAMP_RESOLUTION_S."
    )
    prev_hash: str = Field(pattern=_HASH_PATTERN)
    signer_cert: str = Field(
        min_length=1, description="PEM of the silo certificate whose key signed this entry."
    )
    entry_hash: str = Field(pattern=_HASH_PATTERN)
    signature: str = Field(min_length=1, max_length=200, description="base64 DER ECDSA-SHA256.")
    # Optional fields are left out of the canonical JSON when unset, so entries written
    # before they existed keep their hashes and signatures.
    release_binding: str | None = Field(
        None,
        pattern=_HASH_PATTERN,
        description="A DP-SGD release's binding to (federation, plan, round, adapter, digest "
        "of the global it trained from); a re-release carries its original's.",
    )
    re_release_of: int | None = Field(
        None, ge=0, description="A re-release: the seq of the entry whose update is sent again."
    )

    @property
    def spends(self) -> bool:
        """Whether this entry is a new DP release (a re-release composes nothing)."""
        return self.mechanism != RE_RELEASE

    def computed_hash(self) -> str:
        """SHA-256 of the canonical JSON of this entry without `entry_hash` and `signature`."""
        body = self.model_dump(mode="json", exclude={"entry_hash", "signature"}, exclude_none=True)
        return hashlib.sha256(_canonical(body)).hexdigest()

    def signed_bytes(self) -> bytes:
        """What the signature covers: the canonical JSON of every field but `signature`."""
        return _canonical(self.model_dump(mode="json", exclude={"signature"}, exclude_none=True))

    def to_line(self) -> bytes:
        """The canonical JSON of the whole entry (what the ledger file and the wire carry)."""
        return _canonical(self.model_dump(mode="json", exclude_none=True))

    def dp_event(self) -> DpEvent:
        if not self.spends:
            raise InvalidInput(f"seq {self.seq}: a re-release is no DP event (nothing to compose)")
        return DpEvent(
            mechanism=self.mechanism,
            noise_multiplier=self.params.noise_multiplier,
            sample_rate=self.params.sample_rate,
            steps=self.params.steps,
        )


class EntrySigner:
    """The silo's certificate and its private key, able to sign ledger entries only.

    The key never leaves this object: it cannot be pickled, and nothing exports it.
    """

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate):
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise InvalidInput("ledger entries are signed with an ECDSA P-256 key")
        if cert.public_key() != key.public_key():
            raise InvalidInput("the ledger signing key does not belong to the given certificate")
        self._key = key
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()

    @classmethod
    def from_files(cls, key_path: str | Path, cert_path: str | Path) -> EntrySigner:
        """Load the silo's key and certificate (as issued by `fedbiscuit pki issue`)."""
        try:
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidInput(
                f"cannot load the ledger signing key {key_path} / certificate {cert_path}: "
                f"{type(exc).__name__}"
            ) from None
        return cls(key, cert)  # type: ignore[arg-type]

    def sign(self, entry: LedgerEntry) -> LedgerEntry:
        """`entry` with `signer_cert`, `entry_hash` and `signature` filled in."""
        unsigned = entry.model_copy(
            update={"signer_cert": self.cert_pem, "entry_hash": GENESIS_HASH, "signature": "-"}
        )
        hashed = unsigned.model_copy(update={"entry_hash": unsigned.computed_hash()})
        der = self._key.sign(hashed.signed_bytes(), ec.ECDSA(hashes.SHA256()))
        return LedgerEntry.model_validate(
            {**hashed.model_dump(), "signature": base64.b64encode(der).decode()}
        )

    def __reduce__(self) -> object:
        raise TypeError("an EntrySigner holds a private key and cannot be pickled")


def verify_signature(entry: LedgerEntry, cert: x509.Certificate) -> bool:
    """True iff `entry.signature` is a valid ECDSA-SHA256 signature by `cert`'s key."""
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        der = base64.b64decode(entry.signature, validate=True)
        key.verify(der, entry.signed_bytes(), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


class Ledger:
    """An open, verified ledger file; `append` is the only way to add to it.

    Reading needs no key (status, audit); appending needs the silo's `EntrySigner`.
    """

    def __init__(
        self,
        path: Path,
        federation_id: str,
        silo_id: str,
        entries: list[LedgerEntry],
        clock: Callable[[], float],
        signer: EntrySigner | None = None,
    ):
        self._path = path
        self._federation_id = federation_id
        self._silo_id = silo_id
        self._entries = entries
        self._clock = clock
        self._signer = signer

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        federation_id: str,
        silo_id: str,
        clock: Callable[[], float] = time.time,
        signer: EntrySigner | None = None,
    ) -> Ledger:
        """Open (or start) the ledger at `path`, verifying the whole chain and its owner.

        Raises InvalidInput naming the line and seq of the first entry that is malformed,
        out of order, missing a predecessor, altered, or belongs to another silo/federation.
        """
        path = Path(path)
        entries = _read_verified(path, federation_id, silo_id) if path.exists() else []
        return cls(path, federation_id, silo_id, entries, clock, signer)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        return tuple(self._entries)

    def append(
        self,
        *,
        round_index: int,
        event: DpEvent,
        clip_norm: float,
        delta: float,
        secure_rng: bool,
        epsilon_after: float,
        budget_epsilon: float,
        sample_size: int | None = None,
        release_binding: str | None = None,
    ) -> LedgerEntry:
        """Sign and write one release durably (flush + fsync) before returning; release only
        after."""
        fields = dict(
            round=round_index,
            mechanism=event.mechanism,
            params=ReleaseParams(
                noise_multiplier=event.noise_multiplier,
                sample_rate=event.sample_rate,
                steps=event.steps,
                clip_norm=clip_norm,
                delta=delta,
                sample_size=sample_size,
            ),
            secure_rng=secure_rng,
            epsilon_after=epsilon_after,
            budget_epsilon=budget_epsilon,
            release_binding=release_binding,
        )
        return self._append(fields)

    def append_re_release(
        self, original: LedgerEntry, *, epsilon_after: float, budget_epsilon: float
    ) -> LedgerEntry:
        """Sign and write (fsync) an entry saying `original`'s noised update is sent again:
        same round, parameters and binding, `epsilon_after` unchanged (no new spend)."""
        fields = dict(
            round=original.round,
            mechanism=RE_RELEASE,
            params=original.params,
            secure_rng=original.secure_rng,
            epsilon_after=epsilon_after,
            budget_epsilon=budget_epsilon,
            release_binding=original.release_binding,
            re_release_of=original.seq,
        )
        return self._append(fields)

    def _append(self, fields: dict) -> LedgerEntry:
        if self._signer is None:
            raise FailedPrecondition(f"{self._path}: opened without a signing key; cannot append")
        fields = dict(
            federation_id=self._federation_id,
            silo_id=self._silo_id,
            seq=len(self._entries),
            timestamp=float(
                math.floor(self._clock() / TIMESTAMP_RESOLUTION_S) * TIMESTAMP_RESOLUTION_S
            ),
            prev_hash=self._entries[-1].entry_hash if self._entries else GENESIS_HASH,
            **fields,
        )
        unsigned = LedgerEntry.model_construct(
            **fields, signer_cert="", entry_hash=GENESIS_HASH, signature=""
        )
        entry = self._signer.sign(unsigned)
        self._write_durably(entry.to_line() + b"\n")
        self._entries.append(entry)
        return entry

    def replay_into(self, accountant: PrivacyAccountant) -> float:
        """Record every entry's event into an empty accountant; return the final epsilon.

        Fails closed if the recomputed epsilon disagrees with what an entry recorded: the
        ledger and this accountant would then not describe the same spend.
        """
        if accountant.events:
            raise InvalidInput(f"{self._path}: replay needs an empty accountant")
        epsilon = 0.0
        for entry in self._entries:
            if entry.spends:
                accountant.record(entry.dp_event())
            epsilon = accountant.epsilon(entry.params.delta)
            if not math.isclose(epsilon, entry.epsilon_after, rel_tol=1e-6, abs_tol=1e-9):
                raise InvalidInput(
                    f"{self._path}: seq {entry.seq}: recorded epsilon_after "
                    f"{entry.epsilon_after:.6g} but replay gives {epsilon:.6g}"
                )
        return epsilon

    def _write_durably(self, line: bytes) -> None:
        created = not self._path.exists()
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self._path.parent)


def _read_verified(path: Path, federation_id: str, silo_id: str) -> list[LedgerEntry]:
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raise InvalidInput(
            f"{path}: the last line is incomplete (a crash during append?); that release was "
            "not made. Inspect the file and remove the partial line to continue."
        )
    entries: list[LedgerEntry] = []
    prev_hash = GENESIS_HASH
    for lineno, line in enumerate(raw.splitlines(), start=1):
        where = f"{path}:{lineno}"
        try:
            entry = LedgerEntry.model_validate_json(line)
        except ValidationError as exc:
            problem = exc.errors()[0]
            field = ".".join(str(p) for p in problem["loc"]) or "(entry)"
            raise InvalidInput(f"{where}: malformed entry: {field}: {problem['msg']}") from exc
        expected_seq = len(entries)
        at = f"{where}: seq {entry.seq}"
        if entry.seq != expected_seq:
            raise InvalidInput(f"{at}: expected seq {expected_seq} (entries missing or reordered)")
        if entry.computed_hash() != entry.entry_hash:
            raise InvalidInput(f"{at}: entry_hash does not match its content (entry altered)")
        if entry.prev_hash != prev_hash:
            raise InvalidInput(
                f"{at}: prev_hash does not match the entry before it (entries missing, "
                "reordered or altered)"
            )
        if (entry.federation_id, entry.silo_id) != (federation_id, silo_id):
            raise InvalidInput(
                f"{at}: entry belongs to federation {entry.federation_id!r} silo "
                f"{entry.silo_id!r}, not {federation_id!r} {silo_id!r}"
            )
        entries.append(entry)
        prev_hash = entry.entry_hash
    return entries


def _canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
