"""The silo's identity is read once from its PKI files and keeps its private key to itself."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from protos.errors import FailedPrecondition, InvalidInput
from silo.identity import SiloIdentity
from tests.silo.conftest import SiloConfigFactory


def test_identity_holds_the_issued_material_and_the_injected_clock(
    silo_config: SiloConfigFactory,
) -> None:
    config = silo_config("silo-1", 1)

    identity = SiloIdentity.load(config, clock=lambda: 1_700_000_000.0)

    assert identity.silo_id == "silo-1"
    assert identity.cert_pem == config.pki.cert.read_bytes()
    assert identity.ca_cert_pem == config.pki.ca_cert.read_bytes()
    assert identity.signer.cert_pem == config.pki.cert.read_text()
    assert identity.now() == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


def test_identity_cannot_be_pickled_or_printed_with_its_key(
    silo_config: SiloConfigFactory,
) -> None:
    identity = SiloIdentity.load(silo_config("silo-1", 1))

    assert "PRIVATE" not in repr(identity)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(identity)


def test_a_key_that_is_not_a_key_is_named(silo_config: SiloConfigFactory, tmp_path: Path) -> None:
    config = silo_config("silo-1", 1)
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"not a key")
    pki = config.pki.model_copy(update={"key": bad})

    with pytest.raises(InvalidInput, match="bad.key"):
        SiloIdentity.load(config.model_copy(update={"pki": pki}))


def test_a_missing_certificate_says_what_to_run(
    silo_config: SiloConfigFactory, tmp_path: Path
) -> None:
    config = silo_config("silo-1", 1)
    gone = tmp_path / "gone.pem"
    gone.write_bytes(b"")
    pki = config.pki.model_copy(update={"cert": gone})
    gone.unlink()

    with pytest.raises(FailedPrecondition, match="fedbiscuit pki"):
        SiloIdentity.load(config.model_copy(update={"pki": pki}))
