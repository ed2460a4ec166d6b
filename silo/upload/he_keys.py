"""A silo's CKKS keys in homomorphic mode: the custodian makes them, the others receive them.

The key custodian (named by the plan) generates the secret context once per key epoch and
keeps it in its state dir sealed to its own certificate (file mode 0600; only its private
key opens it). It hands the public context to the aggregator and, for every other joined
silo, the secret context sealed to that silo's certificate, each certificate checked
against the federation CA, current and unrevoked first; the aggregator relays blobs it
cannot open. Every other silo fetches and opens its own blob. A silo without a key is not
sampled (the aggregator only samples silos it relayed a key for).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from privacy.he import (
    SecretContext,
    generate_secret_context,
    open_sealed_context,
    public_context_bytes,
    seal_secret_context_for,
)
from protos.errors import FailedPrecondition, NotAuthenticated
from protos.plan import Plan
from silo.client import SiloClient
from silo.config import SiloConfig
from silo.identity import SiloIdentity

log = logging.getLogger(__name__)


class HeKeyring:
    """This silo's secret context for the plan's key epoch (loaded once, kept in memory)."""

    def __init__(
        self,
        config: SiloConfig,
        identity: SiloIdentity,
        client: SiloClient,
        plan: Plan,
        *,
        create_key: bool = True,
    ) -> None:
        """`create_key=False` (export): a custodian that lost its key raises instead of
        making a new one, which could not decrypt anything of this epoch."""
        if plan.he is None:
            raise FailedPrecondition(f"federation {plan.federation_id!r} has no HE key epoch")
        self._create_key = create_key
        self._config = config
        self._identity = identity
        self._client = client
        self._spec = plan.he
        self._federation_id = plan.federation_id
        self._secret: SecretContext | None = None

    @property
    def is_custodian(self) -> bool:
        return self._config.silo_id == self._spec.key_custodian

    @property
    def key_epoch(self) -> int:
        return self._spec.key_epoch

    def secret(self) -> SecretContext:
        """The secret context; raises FailedPrecondition while this silo has none yet."""
        if self._secret is None:
            if self.is_custodian:
                self._secret = self._custodian_secret()
            else:
                self._secret = self._received_secret()
        return self._secret

    def serve(self) -> None:
        """Custodian: provide the keys (first call of an epoch) and seal the secret context
        to every joined silo still waiting for it. Other silos: nothing."""
        if not self.is_custodian:
            return
        secret = self.secret()
        reply = self._client.he_keys(self.key_epoch)
        public = public_context_bytes(secret)
        if reply.public_context and reply.public_context != public:
            raise FailedPrecondition(
                f"the aggregator holds another public context for key epoch {self.key_epoch}; "
                "refusing to seal this epoch's key to anyone"
            )
        revoked = frozenset(int(serial) for serial in reply.revoked_serials)
        sealed: dict[str, bytes] = {}
        for silo_id, cert_pem in sorted(reply.waiting_certificates.items()):
            try:
                sealed[silo_id] = seal_secret_context_for(
                    cert_pem,
                    secret,
                    ca_cert_pem=self._identity.ca_cert_pem,
                    federation_id=self._federation_id,
                    key_epoch=self.key_epoch,
                    now=self._identity.now(),
                    revoked_serials=revoked,
                )
            except NotAuthenticated as exc:
                log.warning(
                    "federation=%s silo=%s phase=keys no key for %s: %s",
                    self._federation_id,
                    self._config.silo_id,
                    silo_id,
                    exc,
                )
        if sealed or not reply.public_context:
            self._client.he_provide_keys(self.key_epoch, public, sealed)
            log.info(
                "federation=%s silo=%s phase=keys key_epoch=%d sealed_for=%s",
                self._federation_id,
                self._config.silo_id,
                self.key_epoch,
                ",".join(sorted(sealed)) or "-",
            )

    def _custodian_secret(self) -> SecretContext:
        path = self._secret_path()
        if path.exists():
            return self._open(path.read_bytes(), self._config.silo_id)
        if not self._create_key:
            raise FailedPrecondition(
                f"silo {self._config.silo_id!r} is the key custodian but {path} is missing: the "
                f"CKKS key of epoch {self.key_epoch} is lost (run with the state_dir that made it)"
            )
        secret = generate_secret_context(self._spec.preset)
        sealed = seal_secret_context_for(
            self._identity.cert_pem,
            secret,
            ca_cert_pem=self._identity.ca_cert_pem,
            federation_id=self._federation_id,
            key_epoch=self.key_epoch,
            now=self._identity.now(),
        )
        _write_private(path, sealed)
        return secret

    def _received_secret(self) -> SecretContext:
        reply = self._client.he_keys(self.key_epoch)
        if not reply.sealed_context:
            raise FailedPrecondition(
                f"silo {self._config.silo_id!r} has no CKKS key for epoch {self.key_epoch} yet "
                f"(the key custodian {self._spec.key_custodian!r} has not sealed one to it)"
            )
        return self._open(reply.sealed_context, self._config.silo_id)

    def _open(self, sealed: bytes, silo_id: str) -> SecretContext:
        return open_sealed_context(
            self._identity.key,
            sealed,
            federation_id=self._federation_id,
            silo_id=silo_id,
            key_epoch=self.key_epoch,
        )

    def _secret_path(self) -> Path:
        return self._config.state_dir / f"he-secret-e{self.key_epoch}.sealed"


def _write_private(path: Path, data: bytes) -> None:
    """Create `path` 0600 (never readable by others, even briefly) and fsync it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
