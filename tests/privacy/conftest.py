"""A federation CA with two silo certificates, for ledger signing and verification tests."""

from __future__ import annotations

import pytest

from privacy.pki import FederationPaths, init_ca, issue_silo

LEDGER_FEDERATION = "fed-a"


@pytest.fixture(scope="session")
def ledger_pki(tmp_path_factory: pytest.TempPathFactory) -> FederationPaths:
    paths = init_ca(tmp_path_factory.mktemp("ledger-pki") / "pki", LEDGER_FEDERATION)
    for silo_id in ("silo-1", "silo-2"):
        issue_silo(paths.root, silo_id)
    return paths
