"""The federation PKI: what certificates say, how keys are stored, and revocation bookkeeping."""

from __future__ import annotations

import ipaddress
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from privacy.pki import (
    FederationPaths,
    RevocationList,
    channel_credentials,
    federation_id_of_ca,
    init_ca,
    issue_aggregator,
    issue_silo,
    revoke,
    server_credentials,
    show,
    silo_id_from_cert_pem,
)
from protos.errors import FailedPrecondition, InvalidInput, NotAuthenticated

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def pki(tmp_path: Path) -> FederationPaths:
    return init_ca(tmp_path / "pki", "fed-a", now=NOW)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_ca_names_its_federation_and_can_only_sign(pki: FederationPaths) -> None:
    ca = _cert(pki.ca_cert)
    assert federation_id_of_ca(ca) == "fed-a"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    assert ca.not_valid_after_utc - NOW == timedelta(days=730)
    assert RevocationList.load(pki.revocation_list).entries == ()


def test_init_refuses_an_existing_ca(pki: FederationPaths) -> None:
    before = pki.ca_key.read_bytes()
    with pytest.raises(FailedPrecondition, match="ca.key already exists"):
        init_ca(pki.root, "fed-b")
    assert pki.ca_key.read_bytes() == before


def test_silo_certificate_carries_identity_only_in_signed_names(pki: FederationPaths) -> None:
    cert_path, key_path = issue_silo(pki.root, "silo-1", now=NOW)
    cert = _cert(cert_path)
    cert.verify_directly_issued_by(_cert(pki.ca_cert))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "silo-1"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        "fedbiscuit://fed-a/silo/silo-1"
    ]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.not_valid_after_utc - NOW == timedelta(days=30)
    assert silo_id_from_cert_pem(cert_path.read_bytes(), "fed-a") == "silo-1"
    assert key_path == pki.silo_key("silo-1")


def test_private_keys_are_owner_only_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        paths = init_ca(tmp_path / "pki", "fed-a")
        _, silo_key = issue_silo(paths.root, "silo-1")
        _, agg_key = issue_aggregator(paths.root)
    finally:
        os.umask(old)
    assert [_mode(p) for p in (paths.ca_key, silo_key, agg_key)] == [0o600] * 3
    assert _mode(paths.ca_cert) == 0o644


def test_issuing_twice_is_refused_unless_forced_and_force_revokes_the_old_cert(
    pki: FederationPaths,
) -> None:
    cert_path, key_path = issue_silo(pki.root, "silo-1")
    old_serial, old_key = _cert(cert_path).serial_number, key_path.read_bytes()
    with pytest.raises(FailedPrecondition, match="force"):
        issue_silo(pki.root, "silo-1")
    assert key_path.read_bytes() == old_key

    issue_silo(pki.root, "silo-1", force=True)
    revoked = RevocationList.load(pki.revocation_list)
    assert revoked.is_revoked(old_serial)
    assert not revoked.is_revoked(_cert(cert_path).serial_number)
    assert _mode(key_path) == 0o600 and key_path.read_bytes() != old_key


@pytest.mark.parametrize("bad", ["Silo_1", "", "-silo", "../ca", "a" * 64, "silo 1"])
def test_bad_silo_ids_are_rejected_by_name(pki: FederationPaths, bad: str) -> None:
    with pytest.raises(InvalidInput, match="invalid silo id"):
        issue_silo(pki.root, bad)
    assert not pki.silos_dir.exists() or list(pki.silos_dir.iterdir()) == []


def test_issue_before_init_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="pki init"):
        issue_silo(tmp_path, "silo-1")


def test_aggregator_certificate_defaults_to_loopback(pki: FederationPaths) -> None:
    cert = _cert(issue_aggregator(pki.root)[0])
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    with pytest.raises(NotAuthenticated):
        silo_id_from_cert_pem(pki.aggregator_cert.read_bytes(), "fed-a")


def test_aggregator_certificate_takes_given_names_and_rejects_bad_ones(
    pki: FederationPaths,
) -> None:
    issue_aggregator(pki.root, ["agg.example.org"], ["10.0.0.5", "::1"])
    sans = _cert(pki.aggregator_cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert sans.value.get_values_for_type(x509.DNSName) == ["agg.example.org"]
    with pytest.raises(InvalidInput, match="'10.0.0.300'"):
        issue_aggregator(pki.root, [], ["10.0.0.300"], force=True)
    with pytest.raises(InvalidInput, match="at least one"):
        issue_aggregator(pki.root, [], [], force=True)


def test_lifetimes_are_configurable_but_never_outlive_the_ca(tmp_path: Path) -> None:
    paths = init_ca(tmp_path, "fed-a", valid_days=10, now=NOW)
    cert_path, _ = issue_silo(paths.root, "silo-1", valid_days=365, now=NOW)
    assert _cert(cert_path).not_valid_after_utc == _cert(paths.ca_cert).not_valid_after_utc
    with pytest.raises(InvalidInput, match="valid_days"):
        issue_silo(paths.root, "silo-2", valid_days=0)


def test_silo_identity_is_bound_to_the_federation(pki: FederationPaths) -> None:
    cert_path, _ = issue_silo(pki.root, "silo-1")
    with pytest.raises(NotAuthenticated, match="fed-b"):
        silo_id_from_cert_pem(cert_path.read_bytes(), "fed-b")
    with pytest.raises(NotAuthenticated):
        silo_id_from_cert_pem(b"not a certificate", "fed-a")


def test_revoke_records_the_serial_and_show_reports_it(pki: FederationPaths) -> None:
    cert_path, _ = issue_silo(pki.root, "silo-1")
    issue_silo(pki.root, "silo-2")
    entry = revoke(pki.root, "silo-1", now=NOW)
    assert revoke(pki.root, "silo-1") == entry  # idempotent

    doc = json.loads(pki.revocation_list.read_text())
    assert doc["revoked"] == [
        {
            "serial": str(_cert(cert_path).serial_number),
            "silo_id": "silo-1",
            "revoked_at": NOW.isoformat(),
        }
    ]
    rows = {(i.role, i.subject): i.revoked for i in show(pki.root)}
    assert rows == {
        ("ca", "CN=fedbiscuit CA fed-a,O=fed-a"): False,
        ("silo", "CN=silo-1,O=fed-a"): True,
        ("silo", "CN=silo-2,O=fed-a"): False,
    }


def test_revoking_an_unknown_silo_names_it(pki: FederationPaths) -> None:
    with pytest.raises(FailedPrecondition, match="silo-9"):
        revoke(pki.root, "silo-9")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"version": 2, "revoked": []}',
        '{"version": 1, "revoked": [{"serial": 5, "silo_id": "s", "revoked_at": "2030-01-01"}]}',
        '{"version": 1, "revoked": [], "extra": 1}',
    ],
)
def test_a_malformed_revocation_list_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "revoked.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match="malformed"):
        RevocationList.load(path)


def test_a_missing_revocation_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not found"):
        RevocationList.load(tmp_path / "revoked.json")


def test_credentials_load_from_the_pki_folder(pki: FederationPaths) -> None:
    issue_aggregator(pki.root)
    cert, key = issue_silo(pki.root, "silo-1")
    server = server_credentials(pki.aggregator_cert, pki.aggregator_key, pki.ca_cert)
    assert isinstance(server, grpc.ServerCredentials)
    assert isinstance(channel_credentials(pki.ca_cert, cert, key), grpc.ChannelCredentials)
    with pytest.raises(FailedPrecondition, match="missing.key"):
        channel_credentials(pki.ca_cert, cert, pki.root / "missing.key")
