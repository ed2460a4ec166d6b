"""A TLS handshake the aggregator refuses is reported as such at once, not retried as an
outage (against the real aggregator over mTLS on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from privacy.pki import FederationPaths, init_ca, issue_aggregator, issue_silo
from protos.plan import Plan
from silo.config import SiloConfig
from silo.handshake import HandshakeRefused
from tests.silo.conftest import FEDERATION, AggregatorFactory, SiloConfigFactory, connect


def _with_pki(config: SiloConfig, ca: Path, cert: Path, key: Path) -> SiloConfig:
    pki = config.pki.model_validate({"ca_cert": ca, "cert": cert, "key": key})
    return config.model_copy(update={"pki": pki})


def _other_federation_ca(tmp_path: Path) -> FederationPaths:
    other = init_ca(tmp_path / "other", FEDERATION)
    issue_aggregator(other.root)
    issue_silo(other.root, "silo-1")
    return other


def _refusal(
    tiny_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    ca: Path,
    other: FederationPaths,
) -> tuple[str, list[float]]:
    """Join with `other`'s silo-1 credentials, trusting `ca`: the refusal and the retry
    delays."""
    delays: list[float] = []
    with aggregator(tiny_plan) as server:
        config = _with_pki(
            silo_config("silo-1", server.port),
            ca,
            other.silo_cert("silo-1"),
            other.silo_key("silo-1"),
        )
        with (
            connect(config, sleep=delays.append) as client,
            pytest.raises(HandshakeRefused) as refused,
        ):
            client.join()
    return str(refused.value), delays


def test_aggregator_certificate_from_another_ca_is_named_without_retries(
    tiny_plan: Plan, aggregator: AggregatorFactory, silo_config: SiloConfigFactory, tmp_path: Path
) -> None:
    other = _other_federation_ca(tmp_path)
    message, delays = _refusal(tiny_plan, aggregator, silo_config, other.ca_cert, other)

    assert "the aggregator's certificate is not from the federation CA" in message
    assert delays == []


def test_silo_certificate_the_aggregator_does_not_trust_is_named_without_retries(
    tiny_plan: Plan,
    aggregator: AggregatorFactory,
    silo_config: SiloConfigFactory,
    pki: FederationPaths,
    tmp_path: Path,
) -> None:
    other = _other_federation_ca(tmp_path)
    bundle = tmp_path / "both-cas.pem"  # the silo trusts both CAs; the aggregator only its own
    bundle.write_bytes(pki.ca_cert.read_bytes() + other.ca_cert.read_bytes())
    message, delays = _refusal(tiny_plan, aggregator, silo_config, bundle, other)

    assert "the aggregator refused this silo's certificate" in message
    assert delays == []
