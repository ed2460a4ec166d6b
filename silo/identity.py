"""Who this silo is: its id, certificate, key, the federation CA, its ledger signer, a clock.

Loaded once from the files `fedbiscuit pki issue` wrote (by `fedbiscuit silo run` or
`fedbiscuit silo export`) and passed down, so the gRPC channel, the ledger, SecAgg+ and HE
all use the same material read at the same moment, and every "is this certificate current"
question asks the same clock (tests inject one). The private key never leaves this object:
it cannot be pickled and is not in its repr.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from privacy.ledger import EntrySigner
from privacy.pki.layout import read_file
from protos.errors import InvalidInput
from silo.config import SiloConfig


class SiloIdentity:
    """The silo's PKI material and clock, read once; `clock()` returns POSIX seconds."""

    def __init__(
        self,
        silo_id: str,
        cert_pem: bytes,
        key_pem: bytes,
        ca_cert_pem: bytes,
        *,
        clock: Callable[[], float] = time.time,
        where: str = "the silo key",
    ) -> None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
            cert = x509.load_pem_x509_certificate(cert_pem)
            ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"cannot load {where}: {type(exc).__name__}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidInput(f"{where}: the silo key is not an ECDSA key")
        self.silo_id = silo_id
        self.cert_pem = cert_pem
        self.ca_cert_pem = ca_cert_pem
        self.ca_cert = ca_cert
        self.key = key
        self.signer = EntrySigner(key, cert)
        self.clock = clock
        self._key_pem = key_pem

    @classmethod
    def load(cls, config: SiloConfig, *, clock: Callable[[], float] = time.time) -> SiloIdentity:
        """Read `config.pki` (certificate, key, CA bundle) once."""
        pki = config.pki
        return cls(
            config.silo_id,
            read_file(pki.cert, "certificate"),
            read_file(pki.key, "key"),
            read_file(pki.ca_cert, "CA certificate"),
            clock=clock,
            where=f"{pki.key} / {pki.cert} / {pki.ca_cert}",
        )

    def now(self) -> datetime:
        """The clock as an aware UTC datetime (certificate validity checks)."""
        return datetime.fromtimestamp(self.clock(), UTC)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """mTLS to the aggregator: trust only the federation CA, present this silo's cert."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_cert_pem,
            private_key=self._key_pem,
            certificate_chain=self.cert_pem,
        )

    def __repr__(self) -> str:
        return f"SiloIdentity(silo_id={self.silo_id!r})"

    def __reduce__(self) -> object:
        raise TypeError("a SiloIdentity holds a private key and cannot be pickled")
