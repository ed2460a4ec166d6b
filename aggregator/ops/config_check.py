"""`aggregator check-config`: everything a start would trip over, found before starting.

Validates the config and, for each hosted federation, the plan it points to and the PKI
files (the server certificate is signed by the CA, is a serverAuth certificate of this
federation, is current and matches its key; the key is not readable by others; the
revocation list parses), and says whether the state dir is new or which round it resumes.
Several federations must have distinct ids and server certificate names. Reads only; never
writes a state dir.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from aggregator.config import AggregatorConfig, FederationConfig
from aggregator.rounds.round_table import RoundState
from aggregator.store import SqliteStore
from aggregator.store.sqlite import DB_NAME
from privacy.pki import (
    RevocationList,
    federation_id_of_ca,
    hosting_credentials,
    load_private_key,
)
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import Plan


@dataclass(frozen=True)
class FederationSummary:
    federation_id: str
    algorithm: str
    rounds: int
    plan_sha256: str
    server_cert_expires: datetime
    revoked_serials: int
    state: str  # "new" or "resumes round R (PHASE)"

    def lines(self) -> list[str]:
        days = (self.server_cert_expires - datetime.now(UTC)).days
        return [
            f"federation {self.federation_id} ({self.algorithm}, {self.rounds} rounds, "
            f"plan {self.plan_sha256[:12]})",
            f"  server certificate: valid until {self.server_cert_expires:%Y-%m-%d} ({days} days)",
            f"  revoked serials:    {self.revoked_serials}",
            f"  state:              {self.state}",
        ]


@dataclass(frozen=True)
class ConfigSummary:
    listen_address: str
    metrics_address: str | None
    health_address: str | None
    federations: tuple[FederationSummary, ...]

    def lines(self) -> list[str]:
        return [
            f"listen (mTLS gRPC): {self.listen_address}",
            f"metrics (HTTP):     {self.metrics_address or 'off'}",
            f"health (plaintext): {self.health_address or 'off (mTLS port only)'}",
            *(line for federation in self.federations for line in federation.lines()),
        ]


def check_config(config: AggregatorConfig, now: datetime | None = None) -> ConfigSummary:
    """Raise InvalidInput / FailedPrecondition naming the file at fault, else summarise."""
    now = now or datetime.now(UTC)
    federations: list[FederationSummary] = []
    for index, federation in enumerate(config.hosted()):
        summary = _check_federation(federation, now)
        if any(s.federation_id == summary.federation_id for s in federations):
            raise InvalidInput(
                f"federations.{index}.plan_path: federation {summary.federation_id!r} is "
                "listed twice; host each federation once"
            )
        federations.append(summary)
    pki = [federation.pki for federation in config.hosted()]
    hosting_credentials([(p.server_cert, p.server_key) for p in pki], [p.ca_cert for p in pki])
    return ConfigSummary(
        listen_address=config.listen_address,
        metrics_address=config.metrics_address,
        health_address=config.health_address,
        federations=tuple(federations),
    )


def _check_federation(config: FederationConfig, now: datetime) -> FederationSummary:
    plan = config.load_plan()
    pki = config.pki
    ca = _certificate(pki.ca_cert, "CA certificate")
    federation = federation_id_of_ca(ca)
    if federation != plan.federation_id:
        raise InvalidInput(
            f"{pki.ca_cert}: CA of federation {federation!r}, but the plan "
            f"{config.plan_path} is for {plan.federation_id!r}"
        )
    server = _certificate(pki.server_cert, "server certificate")
    _check_server_cert(server, ca, pki.server_cert, now)
    _check_key(pki.server_key, server)
    revoked = RevocationList.load(pki.revocation_list)
    return FederationSummary(
        federation_id=plan.federation_id,
        algorithm=plan.algorithm,
        rounds=plan.rounds,
        plan_sha256=plan.sha256(),
        server_cert_expires=server.not_valid_after_utc,
        revoked_serials=len(revoked.entries),
        state=_state_summary(config, plan),
    )


def _certificate(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise FailedPrecondition(f"{what} {path} not found") from None
    except ValueError as exc:
        raise InvalidInput(f"{path}: not a PEM certificate: {exc}") from None


def _check_server_cert(
    cert: x509.Certificate, ca: x509.Certificate, path: Path, now: datetime
) -> None:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        issuer = ca.subject.rfc4514_string()
        raise InvalidInput(f"{path}: not issued by the federation CA {issuer}") from None
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = ()
    if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        raise InvalidInput(f"{path}: not a server (serverAuth) certificate")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise InvalidInput(
            f"{path}: not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}); re-issue it with `fedbiscuit pki "
            "issue-aggregator --force`"
        )


def _check_key(path: Path, cert: x509.Certificate) -> None:
    try:
        key = load_private_key(path)
    except FileNotFoundError:
        raise FailedPrecondition(f"server key {path} not found") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise InvalidInput(f"{path}: this key does not belong to the server certificate")


def _state_summary(config: FederationConfig, plan: Plan) -> str:
    if not (config.state_dir / DB_NAME).is_file():
        return f"new ({config.state_dir} will be created)"
    store = SqliteStore.open_read_only(config.state_dir)
    try:
        stored, saved = store.plan, store.load_state()
    finally:
        store.close()
    if stored.sha256() != plan.sha256() and not config.allow_plan_change:
        raise FailedPrecondition(
            f"{config.state_dir} belongs to plan {stored.sha256()[:12]}, not "
            f"{plan.sha256()[:12]}; use a fresh state_dir or set allow_plan_change"
        )
    if saved is None:
        return f"{config.state_dir}: nothing run yet"
    state = RoundState.from_dict(saved)
    return f"resumes round {state.round} attempt {state.attempt} ({state.phase})"
