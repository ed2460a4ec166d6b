"""Telling a refused TLS handshake from a network outage, on the silo's side.

gRPC reports both as UNAVAILABLE ("Socket closed", "Tls handshake failed"), so a silo whose
certificate the aggregator does not trust would retry as if the network were down. When the
failure looks like TLS, the silo repeats the handshake once with Python's `ssl` and the same
files and reads the outcome: the aggregator's certificate does not verify against the
silo's CA, or the aggregator completes the handshake and then closes the connection without
a byte (it rejected the silo's certificate; TLS 1.3 servers check it after the client
finishes), or it answers (not a TLS problem: keep retrying).
"""

from __future__ import annotations

import socket
import ssl
import time

from protos.errors import NotAuthenticated
from silo.config import SiloPki

# Substrings of gRPC's UNAVAILABLE details that a TLS failure produces; "Connection refused"
# and name-resolution failures are not among them (nothing is listening: an outage).
_TLS_HINTS = ("handshake", "socket closed", "ssl", "tls", "certificate", "connection reset")
_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH
_CLOSED = "closed after the handshake"  # a sentinel of _probe, confirmed before it is believed
_RECHECK_S = 1.0


class HandshakeRefused(NotAuthenticated):
    """The TLS handshake with the aggregator fails for a reason retrying cannot fix."""


def looks_like_tls_failure(details: str) -> bool:
    """Whether gRPC's failure details could come from a failed TLS handshake."""
    lowered = details.lower()
    return any(hint in lowered for hint in _TLS_HINTS)


def diagnose_handshake(
    address: str, server_name: str | None, pki: SiloPki, timeout_s: float = 10.0
) -> str | None:
    """Why the aggregator at `address` refuses a TLS session with this silo, or None when
    it does not (unreachable, or it accepts: a transient failure to retry).

    A connection closed right after the handshake is only called a refusal if a second try
    a moment later ends the same way: an aggregator that happens to close one connection
    (shutting down, restarting) must not stop a silo for good."""
    cause = _probe(address, server_name, pki, timeout_s)
    if cause is _CLOSED:
        time.sleep(_RECHECK_S)
        cause = _probe(address, server_name, pki, timeout_s)
    return (
        _refused_ours(pki, "it closed the connection after the handshake")
        if cause is _CLOSED
        else cause
    )


def _probe(address: str, server_name: str | None, pki: SiloPki, timeout_s: float) -> str | None:
    """One handshake: a cause, _CLOSED (closed without a byte after it), or None."""
    host, port = address.rsplit(":", 1)
    name = server_name or host
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(pki.cert), str(pki.key))
    context.set_alpn_protocols(["h2"])  # what gRPC offers; the aggregator requires it
    try:
        raw = socket.create_connection((host, int(port)), timeout=timeout_s)
    except OSError:
        return None
    with raw:
        try:
            tls = context.wrap_socket(raw, server_hostname=name)
        except ssl.SSLCertVerificationError as exc:
            if exc.verify_code == _HOSTNAME_MISMATCH:
                return (
                    f"the aggregator's certificate does not name {name!r} ({exc.verify_message}): "
                    "set aggregator_server_name to a name it was issued for, or dial that name"
                )
            return (
                f"the aggregator's certificate is not from the federation CA in {pki.ca_cert} "
                f"({exc.verify_message}): this silo and the aggregator belong to different "
                "federations, or one of them has the wrong ca.pem"
            )
        except ssl.SSLError as exc:
            return _refused_ours(pki, exc.reason or str(exc))
        except OSError:
            return None
        with tls:
            try:
                answer = tls.recv(1)
            except ssl.SSLError as exc:
                return _refused_ours(pki, exc.reason or str(exc))
            except OSError:
                return None
    return None if answer else _CLOSED


def _refused_ours(pki: SiloPki, how: str) -> str:
    return (
        f"the aggregator refused this silo's certificate {pki.cert} ({how}): it does not "
        f"trust the CA in {pki.ca_cert}, so it belongs to another federation or has a "
        "different ca.pem; check that both use the same federation CA"
    )
