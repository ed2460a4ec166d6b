"""What a membership-hiding grouping is, and who is asked to report in it.

Why: in ``fedbiscuit.membership: hidden`` the silos group themselves; the aggregator only
relays. Every value a silo signs or seals is bound to one :class:`GroupingContext`
(federation, round, attempt, plan, K) and to the :class:`CandidateRoster` it was shown (the
silos asked to report, with their certificates), so nothing relayed from another grouping,
attempt or roster view is ever accepted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from privacy.pki.layout import validate_id
from privacy.secagg import transcript
from privacy.secagg.keys import verify_silo_certificate
from protos.errors import FailedPrecondition, FedbiscuitError, InvalidInput

_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class GroupingAborted(FailedPrecondition):
    """This silo refuses the grouping: it trains nothing until a consistent one completes.

    Raised before any training, so an aggregator that tampers with the relay costs silos
    no budget beyond the loss report they already made.
    """


@dataclass(frozen=True)
class GroupingContext:
    """One grouping attempt of one plan: what every report and confirmation binds to."""

    federation_id: str
    round: int
    attempt: int
    plan_hash: str  # hex SHA-256 of the plan's canonical JSON
    adapters: int  # K, the number of clusters

    def __post_init__(self) -> None:
        validate_id(self.federation_id, "federation id")
        for name in ("round", "attempt"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"grouping {name} must be a non-negative integer: {value!r}")
        if isinstance(self.adapters, bool) or not isinstance(self.adapters, int):
            raise InvalidInput(f"grouping adapters must be an integer, got {self.adapters!r}")
        if self.adapters < 2:
            raise InvalidInput(f"a grouping needs at least 2 clusters, got {self.adapters}")
        if not _HEX_SHA256.fullmatch(self.plan_hash):
            raise InvalidInput("grouping plan_hash must be a lowercase hex SHA-256 digest")

    @cached_property
    def digest(self) -> bytes:
        return transcript.digest(
            "membership/grouping",
            self.federation_id,
            self.round,
            self.attempt,
            self.plan_hash,
            self.adapters,
        )


@dataclass(frozen=True)
class MemberIdentity:
    """A silo's own identity and what it checks its peers against (never pickle or log it)."""

    silo_id: str
    certificate_pem: bytes
    signing_key: ec.EllipticCurvePrivateKey = field(repr=False)
    ca_certificate: x509.Certificate = field(repr=False)
    now: datetime
    revoked_serials: Collection[int] = frozenset()

    def __reduce__(self) -> object:
        raise TypeError("a MemberIdentity holds a private key and cannot be pickled")


@dataclass(frozen=True)
class CandidateRoster:
    """The silos asked to report in a grouping (silo id -> certificate PEM), as relayed.

    Every loss report signs this roster's digest, so two silos shown different candidates
    (or different certificates for one silo) cannot accept each other's reports.
    """

    context: GroupingContext
    certificates: Mapping[str, bytes]

    def __post_init__(self) -> None:
        for silo_id in self.certificates:
            validate_id(silo_id, "silo id")
        object.__setattr__(self, "certificates", MappingProxyType(dict(self.certificates)))

    @property
    def silo_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self.certificates))

    @cached_property
    def digest(self) -> bytes:
        entries = [f"{s}:{hashlib.sha256(self.certificates[s]).hexdigest()}" for s in self.silo_ids]
        return transcript.digest("membership/candidates", self.context.digest, entries)

    def verified_keys(self, me: MemberIdentity) -> dict[str, ec.EllipticCurvePublicKey]:
        """Every candidate's P-256 key, once its certificate passed the CA checks.

        Aborts if a certificate is not the federation CA's, expired, revoked or names
        another silo, or if this silo is not on the roster with its own certificate.
        """
        if self.certificates.get(me.silo_id) != me.certificate_pem:
            raise GroupingAborted(
                f"silo {me.silo_id!r}: the grouping roster of round {self.context.round} "
                "does not carry this silo with its own certificate"
            )
        keys = {}
        for silo_id in self.silo_ids:
            try:
                keys[silo_id] = verify_silo_certificate(
                    self.certificates[silo_id],
                    me.ca_certificate,
                    self.context.federation_id,
                    silo_id,
                    me.now,
                    me.revoked_serials,
                )
            except FedbiscuitError as error:
                raise GroupingAborted(f"grouping roster: {error}") from None
        return keys
