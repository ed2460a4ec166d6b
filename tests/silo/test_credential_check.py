"""Before dialling, a silo checks its own certificate and key and names what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from privacy.pki import FederationPaths, init_ca, issue_silo
from protos.errors import InvalidInput
from silo.agent import run_silo
from silo.config import SiloConfig, SiloPki
from silo.credential_check import check_credentials
from tests.silo.conftest import FEDERATION, SiloConfigFactory


def _pki(paths: FederationPaths, silo_id: str = "silo-1", **changes: Path) -> SiloPki:
    files = {
        "ca_cert": paths.ca_cert,
        "cert": paths.silo_cert(silo_id),
        "key": paths.silo_key(silo_id),
    }
    return SiloPki(**{**files, **changes})


def test_a_silos_own_credentials_pass_and_are_summarised(pki: FederationPaths) -> None:
    summary = check_credentials(_pki(pki), FEDERATION, "silo-1")

    assert summary.silo_id == "silo-1" and summary.federation_id == FEDERATION
    assert summary.not_after > datetime.now(UTC)


def test_a_certificate_from_another_ca_is_named_before_dialling(
    pki: FederationPaths, tmp_path: Path
) -> None:
    other = init_ca(tmp_path / "other", FEDERATION)
    cert, key = issue_silo(other.root, "silo-1")

    with pytest.raises(InvalidInput) as refused:
        check_credentials(_pki(pki, cert=cert, key=key), FEDERATION, "silo-1")

    assert str(refused.value).startswith(
        f"{cert}: not issued by the federation CA in {pki.ca_cert}"
    )
    assert "fedbiscuit pki issue silo-1 --force" in str(refused.value)


def test_an_expired_certificate_says_when_it_expired(pki: FederationPaths) -> None:
    issued = datetime.now(UTC) - timedelta(days=40)
    issue_silo(pki.root, "silo-1", valid_days=30, force=True, now=issued)

    with pytest.raises(InvalidInput, match=r"silo-1.pem: expired on \d{4}-\d\d-\d\d"):
        check_credentials(_pki(pki), FEDERATION, "silo-1")


def test_a_certificate_not_yet_valid_points_at_the_clock(pki: FederationPaths) -> None:
    two_days_ago = datetime.now(UTC) - timedelta(days=2)

    with pytest.raises(InvalidInput, match="not valid before .* check this host's clock"):
        check_credentials(_pki(pki), FEDERATION, "silo-1", now=two_days_ago)


def test_another_silos_certificate_or_key_is_refused(pki: FederationPaths) -> None:
    with pytest.raises(InvalidInput, match="certificate of silo 'silo-2', but silo_id is 'silo-1'"):
        check_credentials(_pki(pki, "silo-2"), FEDERATION, "silo-1")
    mixed = _pki(pki, key=pki.silo_key("silo-2"))
    with pytest.raises(InvalidInput, match="this key does not belong to the certificate"):
        check_credentials(mixed, FEDERATION, "silo-1")


def test_a_key_others_can_read_is_refused(pki: FederationPaths) -> None:
    pki.silo_key("silo-1").chmod(0o644)

    with pytest.raises(InvalidInput, match=r"readable by others \(mode 644\); chmod 600 it"):
        check_credentials(_pki(pki), FEDERATION, "silo-1")


def test_the_ca_of_another_federation_is_named(pki: FederationPaths) -> None:
    with pytest.raises(InvalidInput, match="CA of federation test-fed, but federation_id is 'x'"):
        check_credentials(_pki(pki), "x", "silo-1")


def test_silo_run_stops_on_a_foreign_certificate_before_dialling(
    silo_config: SiloConfigFactory, tmp_path: Path
) -> None:
    other = init_ca(tmp_path / "other", FEDERATION)
    cert, key = issue_silo(other.root, "silo-1")
    config = silo_config("silo-1", 9)  # nothing listens on port 9: dialling would retry
    config = config.model_copy(update={"pki": _pki_of(config, cert=cert, key=key)})

    with pytest.raises(InvalidInput, match="not issued by the federation CA"):
        run_silo(config)

    assert not (config.state_dir / "ledger.jsonl").exists()


def _pki_of(config: SiloConfig, **changes: Path) -> SiloPki:
    return SiloPki(**{**config.pki.model_dump(), **changes})
