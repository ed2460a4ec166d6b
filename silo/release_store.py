"""The silo's own copy of its latest DP-SGD release, so a re-run attempt re-sends it unpaid.

Why (DESIGN.md §3, privacy.re_release): when an attempt of a round is re-run, training again
would be a new DP release and cost budget each time a peer stalls. The noised update the
silo already paid for is kept here, sealed (AES-256-GCM under a key only this state dir
holds, the release binding as associated data, so a file cannot be swapped to another
round, adapter or global), with the ledger seq of its release and the SecAgg roster it was
first sent to. Only the current round's releases are kept: saving one for a later round
deletes the older ones. Files are 0600 in ``<state_dir>/releases``.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy.pki.layout import write_atomic
from protos import codec
from protos.errors import InvalidInput
from protos.v1 import federation_pb2 as pb

KEY_FILE = "release_store.key"
FOLDER = "releases"
_NONCE_BYTES = 12
_MAX_MANIFEST_BYTES = 16 << 20


@dataclass(frozen=True)
class StoredRelease:
    """A paid-for noised update: the ledger seq of its release, the roster (silo ids) of the
    masked attempt it was first sent in (empty when not masked), its manifest and vector."""

    seq: int
    roster: tuple[str, ...]
    manifest: codec.Manifest
    vector: np.ndarray


class ReleaseStore:
    def __init__(self, state_dir: Path) -> None:
        self._folder = state_dir / FOLDER
        key_path = state_dir / KEY_FILE
        if not key_path.exists():
            write_atomic(key_path, AESGCM.generate_key(bit_length=256), secret=True)
        self._aead = AESGCM(key_path.read_bytes())

    def save(self, binding: str, round_: int, release: StoredRelease) -> None:
        """Seal `release` under `binding` (fsync'd), dropping releases of earlier rounds."""
        meta = json.dumps({"seq": release.seq, "roster": list(release.roster)}).encode()
        manifest = codec.manifest_to_proto(release.manifest).SerializeToString()
        body = b"".join(
            (
                struct.pack(">II", len(meta), len(manifest)),
                meta,
                manifest,
                codec.to_bytes(release.vector),
            )
        )
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, body, binding.encode())
        write_atomic(self._path(binding, round_), sealed, secret=True)
        for old in self._folder.glob("r*-*.sealed"):
            if _round_of(old) < round_:
                old.unlink(missing_ok=True)

    def load(self, binding: str, round_: int) -> StoredRelease | None:
        """The release sealed under `binding`, or None if there is none."""
        path = self._path(binding, round_)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
            body = self._aead.decrypt(nonce, ciphertext, binding.encode())
            meta_len, manifest_len = struct.unpack(">II", body[:8])
            if manifest_len > _MAX_MANIFEST_BYTES:
                raise ValueError("manifest too large")
            meta = json.loads(body[8 : 8 + meta_len])
            start = 8 + meta_len
            manifest = codec.manifest_from_proto(
                pb.TensorManifest.FromString(body[start : start + manifest_len]),
                max_bytes=len(body),
            )
            vector = codec.assemble(manifest, [body[start + manifest_len :]])
            return StoredRelease(int(meta["seq"]), tuple(meta["roster"]), manifest, vector)
        except (InvalidTag, ValueError, KeyError, struct.error, InvalidInput) as exc:
            raise InvalidInput(
                f"{path}: the sealed release cannot be opened ({type(exc).__name__}); delete it "
                "to train afresh (a new release, paid again)"
            ) from None

    def _path(self, binding: str, round_: int) -> Path:
        return self._folder / f"r{round_}-{binding}.sealed"


def _round_of(path: Path) -> int:
    try:
        return int(path.name[1:].split("-", 1)[0])
    except ValueError:
        return -1
