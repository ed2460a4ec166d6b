"""gRPC TLS credentials for both ends of the federation: mutual TLS, never optional."""

from __future__ import annotations

from pathlib import Path

import grpc

from privacy.pki.layout import read_file


def server_credentials(
    cert_path: Path | str, key_path: Path | str, ca_path: Path | str
) -> grpc.ServerCredentials:
    """Aggregator side: present its certificate and require a client certificate from the CA.

    ``ca_path`` may hold several CA certificates (a trust bundle); the interceptor then
    still rejects silos whose certificate names another federation.
    """
    return grpc.ssl_server_credentials(
        [(read_file(Path(key_path), "key"), read_file(Path(cert_path), "certificate"))],
        root_certificates=read_file(Path(ca_path), "CA certificate"),
        require_client_auth=True,
    )


def channel_credentials(
    ca_path: Path | str, cert_path: Path | str, key_path: Path | str
) -> grpc.ChannelCredentials:
    """Silo side: trust only the federation CA and present the silo's client certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=read_file(Path(ca_path), "CA certificate"),
        private_key=read_file(Path(key_path), "key"),
        certificate_chain=read_file(Path(cert_path), "certificate"),
    )
