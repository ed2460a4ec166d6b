"""`fedbiscuit pki` as an operator runs it: exit codes, messages, and the files it leaves."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import pytest
from cryptography import x509

from fedbiscuit.cli import main
from privacy.pki import FederationPaths, RevocationList


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["pki", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pki_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "pki"
    assert run(capsys, "init", "--federation", "fed-a", "--dir", str(root))[0] == 0
    return root


def test_init_creates_a_ca_for_the_federation(pki_dir: Path) -> None:
    paths = FederationPaths(pki_dir)
    assert paths.ca_cert.exists() and paths.revocation_list.exists()
    assert os.stat(paths.ca_key).st_mode & 0o777 == 0o600


def test_init_twice_is_an_error_that_keeps_the_ca(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = (pki_dir / "ca.key").read_bytes()
    code, _, err = run(capsys, "init", "--federation", "fed-a", "--dir", str(pki_dir))
    assert code == 2
    assert "already has a CA" in err and "Traceback" not in err
    assert (pki_dir / "ca.key").read_bytes() == key


def test_issue_writes_a_private_key_and_never_prints_it(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "issue", "silo-1", "--dir", str(pki_dir))
    key = pki_dir / "silos" / "silo-1.key"
    assert code == 0
    assert "silo-1" in out and str(key) in out
    assert "PRIVATE KEY" not in out
    assert os.stat(key).st_mode & 0o777 == 0o600


def test_issue_with_a_bad_silo_id_names_it(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "issue", "Hospital_A", "--dir", str(pki_dir))
    assert code == 2
    assert "invalid silo id 'Hospital_A'" in err
    assert out == ""


def test_reissue_needs_force_and_then_revokes_the_old_certificate(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "issue", "silo-1", "--dir", str(pki_dir))
    code, _, err = run(capsys, "issue", "silo-1", "--dir", str(pki_dir))
    assert code == 2 and "--force" in err

    assert run(capsys, "issue", "silo-1", "--force", "--dir", str(pki_dir))[0] == 0
    assert len(RevocationList.load(pki_dir / "revoked.json").entries) == 1


def test_issue_aggregator_takes_repeated_names(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--dns", "agg.example.org", "--dns", "localhost", "--ip", "10.0.0.5"]
    code, out, _ = run(capsys, "issue-aggregator", *argv, "--dir", str(pki_dir))
    assert code == 0 and "agg.example.org" in out
    cert = x509.load_pem_x509_certificate((pki_dir / "aggregator.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["agg.example.org", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]


def test_issue_aggregator_defaults_to_loopback_and_rejects_bad_ips(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "issue-aggregator", "--dir", str(pki_dir))
    assert code == 0 and "localhost, 127.0.0.1" in out
    code, _, err = run(
        capsys, "issue-aggregator", "--force", "--ip", "999.1.1.1", "--dir", str(pki_dir)
    )
    assert code == 2 and "'999.1.1.1'" in err


def test_revoke_then_show_lists_the_silo_as_revoked(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "issue", "silo-1", "--dir", str(pki_dir))
    run(capsys, "issue", "silo-2", "--dir", str(pki_dir))
    code, out, _ = run(capsys, "revoke", "silo-1", "--dir", str(pki_dir))
    assert code == 0 and "revoked silo 'silo-1'" in out

    code, out, _ = run(capsys, "show", "--dir", str(pki_dir))
    header, *rows = [re.split(r"\s{2,}", line) for line in out.splitlines()[1:]]
    assert code == 0
    assert header == ["SUBJECT", "ROLE", "SERIAL", "NOT_AFTER", "REVOKED"]
    assert [(r[0], r[1], r[4]) for r in rows] == [
        ("CN=fedbiscuit CA fed-a,O=fed-a", "ca", "no"),
        ("CN=silo-1,O=fed-a", "silo", "yes"),
        ("CN=silo-2,O=fed-a", "silo", "no"),
    ]


def test_revoking_an_unknown_silo_is_an_error_naming_it(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "revoke", "silo-9", "--dir", str(pki_dir))
    assert code == 2 and "silo-9" in err


def test_commands_without_a_ca_say_to_run_init(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["show"], ["issue", "silo-1"], ["issue-aggregator"]):
        code, _, err = run(capsys, *argv, "--dir", str(tmp_path / "empty"))
        assert code == 2 and "pki init" in err, argv
