"""A federation PKI (the real one, in a temporary folder) shared by the secagg tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from privacy.pki import init_ca, issue_silo
from tests.privacy.secagg.harness import NOW, Federation, SiloIdentity

SILOS = 24


def _federation(root: Path, federation_id: str, count: int, prefix: str) -> Federation:
    paths = init_ca(root, federation_id, now=NOW)
    silos = {}
    for index in range(count):
        silo_id = f"{prefix}{index:02d}"
        cert_path, key_path = issue_silo(root, silo_id, now=NOW)
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        silos[silo_id] = SiloIdentity(silo_id, cert_path.read_bytes(), key)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    return Federation(federation_id, ca, silos)


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return _federation(tmp_path_factory.mktemp("pki"), "fed-a", SILOS, "silo-")


@pytest.fixture(scope="session")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    """Another CA claiming the same federation id: what an aggregator could mint sybils with."""
    return _federation(tmp_path_factory.mktemp("rogue"), "fed-a", 4, "sybil-")
