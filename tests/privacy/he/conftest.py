"""Shared fixtures: one CKKS key per preset (key generation is the slow part) and a PKI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from privacy.he import SecretContext, generate_secret_context
from privacy.pki import FederationPaths, init_ca, issue_silo

NOW = datetime(2030, 1, 1, tzinfo=UTC)
FEDERATION = "fed-he"


@pytest.fixture(scope="session")
def secret_ctx() -> SecretContext:
    return generate_secret_context("ckks-add-8192")


@pytest.fixture(scope="session")
def small_ctx() -> SecretContext:
    return generate_secret_context("ckks-add-4096")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FederationPaths:
    """A federation CA with silos a, b, c issued at NOW."""
    root: Path = tmp_path_factory.mktemp("pki")
    paths = init_ca(root, FEDERATION, now=NOW)
    for silo in ("silo-a", "silo-b", "silo-c"):
        issue_silo(root, silo, now=NOW)
    return paths
