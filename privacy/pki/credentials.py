"""gRPC TLS credentials for both ends of the federation: mutual TLS, never optional."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from cryptography import x509

from privacy.pki.layout import read_file
from protos.errors import InvalidInput


def server_credentials(
    cert_path: Path | str, key_path: Path | str, ca_path: Path | str
) -> grpc.ServerCredentials:
    """Aggregator side: present its certificate and require a client certificate from the CA.

    ``ca_path`` may hold several CA certificates (a trust bundle); the interceptor then
    still rejects silos whose certificate names another federation.
    """
    return hosting_credentials([(Path(cert_path), Path(key_path))], [Path(ca_path)])


def hosting_credentials(
    identities: Sequence[tuple[Path, Path]], ca_paths: Sequence[Path]
) -> grpc.ServerCredentials:
    """Aggregator side for several federations on one port: one (certificate, key) per
    federation and a trust bundle of their CAs. The TLS stack picks the certificate whose DNS
    name matches the name a silo dials (SNI), so each federation's silos see their own CA's
    certificate; the names must therefore differ between federations."""
    if len(identities) > 1:
        _refuse_shared_names([cert for cert, _key in identities])
    return grpc.ssl_server_credentials(
        [(read_file(key, "key"), read_file(cert, "certificate")) for cert, key in identities],
        root_certificates=b"".join(read_file(ca, "CA certificate") for ca in ca_paths),
        require_client_auth=True,
    )


def _refuse_shared_names(cert_paths: Sequence[Path]) -> None:
    """Two server certificates answering to one DNS name would give one federation's silos
    the other's certificate (and a failed handshake)."""
    owner: dict[str, Path] = {}
    for path in cert_paths:
        cert = x509.load_pem_x509_certificate(read_file(path, "certificate"))
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = san.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        if not names:
            raise InvalidInput(
                f"{path}: hosting several federations needs a DNS name on each server "
                "certificate (silos select it by aggregator_server_name)"
            )
        for name in names:
            if name in owner:
                raise InvalidInput(
                    f"{path}: DNS name {name!r} is also on {owner[name]}; give each hosted "
                    "federation's server certificate its own name (`pki issue-aggregator --dns`)"
                )
            owner[name] = path


def channel_credentials(
    ca_path: Path | str, cert_path: Path | str, key_path: Path | str
) -> grpc.ChannelCredentials:
    """Silo side: trust only the federation CA and present the silo's client certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=read_file(Path(ca_path), "CA certificate"),
        private_key=read_file(Path(key_path), "key"),
        certificate_chain=read_file(Path(cert_path), "certificate"),
    )
