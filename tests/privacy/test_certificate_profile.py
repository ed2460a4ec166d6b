"""A silo identity is an end-entity client certificate: CA:TRUE, keyCertSign and
no-digitalSignature leaves, though signed by the federation CA with a valid SAN, are refused
by every check that trusts a silo certificate (SecAgg keys, HE key sealing, ledger
verification and the audit; the aggregator's interceptor is in tests/aggregator/test_auth.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from privacy.he import generate_secret_context, seal_secret_context_for
from privacy.ledger import EntrySigner
from privacy.ledger_verify import TrustAnchors, verify_ledger
from privacy.pki import FederationPaths, check_silo_profile, init_ca, issue_silo
from privacy.secagg import SecAggAborted
from privacy.secagg.keys import verify_silo_certificate
from protos.errors import NotAuthenticated
from tests.ledger_entries import signed_entry
from tests.odd_leaves import ODD_PROFILES, issue_odd_leaf

FEDERATION = "fed-a"
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FederationPaths:
    paths = init_ca(tmp_path_factory.mktemp("pki") / "fed", FEDERATION)
    issue_silo(paths.root, "silo-1")
    return paths


@pytest.fixture(scope="module", params=sorted(ODD_PROFILES))
def odd_leaf(
    request: pytest.FixtureRequest, pki: FederationPaths, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    return issue_odd_leaf(pki, FEDERATION, "silo-2", request.param, tmp_path_factory.mktemp("odd"))


def test_issued_silo_certificate_has_the_silo_profile(pki: FederationPaths) -> None:
    check_silo_profile(x509.load_pem_x509_certificate(pki.silo_cert("silo-1").read_bytes()))


def test_odd_leaf_is_refused_by_the_profile(odd_leaf: tuple[Path, Path]) -> None:
    with pytest.raises(NotAuthenticated, match="serial"):
        check_silo_profile(x509.load_pem_x509_certificate(odd_leaf[0].read_bytes()))


def test_ca_certificate_is_refused_by_the_profile(pki: FederationPaths) -> None:
    with pytest.raises(NotAuthenticated, match="CA:TRUE"):
        check_silo_profile(x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()))


def test_secagg_key_check_refuses_odd_leaf(
    pki: FederationPaths, odd_leaf: tuple[Path, Path]
) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    with pytest.raises(SecAggAborted, match="silo-2"):
        verify_silo_certificate(odd_leaf[0].read_bytes(), ca, FEDERATION, "silo-2", NOW)


def test_he_key_sealing_refuses_odd_leaf(pki: FederationPaths, odd_leaf: tuple[Path, Path]) -> None:
    secret = generate_secret_context("ckks-add-4096")
    with pytest.raises(NotAuthenticated):
        seal_secret_context_for(
            odd_leaf[0].read_bytes(),
            secret,
            ca_cert_pem=pki.ca_cert.read_bytes(),
            federation_id=FEDERATION,
            key_epoch=0,
            now=NOW,
        )


def test_ledger_verification_and_audit_refuse_entries_signed_by_odd_leaf(
    pki: FederationPaths, odd_leaf: tuple[Path, Path]
) -> None:
    cert_path, key_path = odd_leaf
    entry = signed_entry(
        EntrySigner.from_files(key_path, cert_path),
        federation_id=FEDERATION,
        silo_id="silo-2",
        seq=0,
        round_=0,
        timestamp=NOW.timestamp(),
    )
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    verified = verify_ledger([("ledger:1", entry.to_line())], TrustAnchors(ca, FEDERATION))
    assert not verified.ok
    assert "serial" in verified.violations[0].message
