"""Flat float32 update <-> CKKS ciphertexts, their manifest, the homomorphic sum, decryption.

Why this shape: an adapter update is one flat vector (the codec's order); it is cut into
runs of N/2 values (N/2 slots times ``values_per_slot`` for packed presets, ``_digits.py``),
one ciphertext each, serialised separately so the transport can stream
them in chunks like any update. The manifest lists every ciphertext's SHA-256, so each
chunk is checked *before* TenSEAL parses it, and the manifest's own digest is what a silo
signs (see ``_statements.py``).

Weights are applied on the silo before encryption (``encrypt_update(..., weight=w)``), so
the aggregator only adds and no rescaling level is needed. Each silo also refuses values
that could make the sum of ``max_silos`` contributions wrap around the modulus.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import tenseal as ts
from pydantic import Field, model_validator

from privacy.he._context import PublicContext, SecretContext
from privacy.he._digits import pack, unpack
from protos.errors import InvalidInput
from protos.strict_model import StrictTypedModel

MANIFEST_VERSION = 1
_SHA256 = r"^[0-9a-f]{64}$"
# A serialised ciphertext is 2 * N * 8 bytes per data prime plus a small header.
_HEADER_ALLOWANCE = 4096


class CiphertextManifest(StrictTypedModel):
    """What a run of ciphertexts holds; sent before the ciphertexts themselves."""

    version: Literal[1] = MANIFEST_VERSION
    preset: str = Field(min_length=1, description="CKKS preset name the ciphertexts use.")
    context_id: str = Field(
        pattern=_SHA256, description="SHA-256 of the public context they were made under."
    )
    length: int = Field(ge=1, description="Number of float values packed.")
    slots: int = Field(
        ge=1, description="Values per ciphertext (N/2 x values per slot); the last may hold fewer."
    )
    count: int = Field(ge=1, description="Number of ciphertexts.")
    chunk_sha256: tuple[str, ...] = Field(description="SHA-256 of each serialised ciphertext.")

    @model_validator(mode="after")
    def _consistent(self) -> CiphertextManifest:
        if self.count != math.ceil(self.length / self.slots):
            raise ValueError(
                f"count {self.count} != ceil(length {self.length} / slots {self.slots})"
            )
        if len(self.chunk_sha256) != self.count:
            raise ValueError(f"{len(self.chunk_sha256)} chunk hashes for {self.count} chunks")
        for h in self.chunk_sha256:
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
                raise ValueError("chunk hashes must be 64 lowercase hex digits")
        return self

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no spaces): what travels and what is hashed."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CiphertextManifest:
        try:
            return cls.model_validate_json(data, strict=False)
        except ValueError as exc:
            raise InvalidInput(f"malformed ciphertext manifest: {exc}") from None

    def digest(self) -> str:
        """SHA-256 of the canonical manifest: commits to every ciphertext byte."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def chunk_length(self, index: int) -> int:
        return min(self.slots, self.length - index * self.slots)


@dataclass(frozen=True)
class EncryptedVector:
    """A manifest and the serialised ciphertexts it describes, in order."""

    manifest: CiphertextManifest
    ciphertexts: tuple[bytes, ...]

    def nbytes(self) -> int:
        return sum(len(c) for c in self.ciphertexts)

    def to_bytes(self) -> bytes:
        """``u32 manifest length | manifest | (u32 length | ciphertext)*``: how the aggregator
        keeps ciphertexts at rest."""
        parts = [self.manifest.to_bytes(), *self.ciphertexts]
        return b"".join(struct.pack(">I", len(p)) + p for p in parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedVector:
        """Parse :meth:`to_bytes`, checking every ciphertext against the manifest's SHA-256."""
        parts, at = [], 0
        while at < len(data):
            if at + 4 > len(data):
                raise InvalidInput("encrypted vector is truncated (length prefix)")
            (size,) = struct.unpack(">I", data[at : at + 4])
            if at + 4 + size > len(data):
                raise InvalidInput("encrypted vector is truncated")
            parts.append(data[at + 4 : at + 4 + size])
            at += 4 + size
        if not parts:
            raise InvalidInput("encrypted vector is empty")
        manifest = CiphertextManifest.from_bytes(parts[0])
        chunks = tuple(parts[1:])
        if len(chunks) != manifest.count or any(
            hashlib.sha256(c).hexdigest() != h
            for c, h in zip(chunks, manifest.chunk_sha256, strict=True)
        ):
            raise InvalidInput("encrypted vector does not match its manifest (corrupt)")
        return cls(manifest, chunks)


def _manifest(ctx: SecretContext | PublicContext, length: int, chunks: Sequence[bytes]):
    return CiphertextManifest(
        preset=ctx.preset.name,
        context_id=ctx.context_id,
        length=length,
        slots=ctx.preset.values_per_chunk,
        count=len(chunks),
        chunk_sha256=tuple(hashlib.sha256(c).hexdigest() for c in chunks),
    )


def encrypt_update(
    ctx: SecretContext | PublicContext,
    values: np.ndarray,
    *,
    weight: float,
    max_silos: int,
    rng: np.random.Generator | None = None,
) -> EncryptedVector:
    """Encrypt ``weight * values`` (a flat float32 vector) for the homomorphic sum (the public
    context suffices: the aggregator encrypts the public initial model with it).

    Packed presets round each value to their grid stochastically, drawing from ``rng``
    (default: a generator seeded from the operating system's entropy).

    Refuses non-finite values and any |weight * value| above ``value_bound / max_silos``,
    so that a sum over up to ``max_silos`` contributions cannot overflow.
    """
    if values.ndim != 1 or values.size == 0 or values.dtype != np.float32:
        raise InvalidInput(
            f"encrypt_update needs a non-empty flat float32 vector, got {values.dtype} "
            f"of shape {values.shape}"
        )
    if not (math.isfinite(weight) and max_silos >= 1):
        raise InvalidInput(f"weight must be finite and max_silos >= 1 (got {weight}, {max_silos})")
    scaled = values.astype(np.float64) * weight
    if not np.all(np.isfinite(scaled)):
        raise InvalidInput("the update holds NaN or infinite values; refusing to encrypt it")
    preset = ctx.preset
    limit = preset.value_bound / max_silos
    peak = float(np.max(np.abs(scaled)))
    if peak > limit:
        raise InvalidInput(
            f"weighted update value {peak:.3g} exceeds {limit:.3g}, the most that {max_silos} "
            f"silos can add under preset {preset.name!r}; clip the update or choose a preset "
            "with a smaller scale"
        )
    if preset.packed:
        slots = pack(
            scaled,
            step=preset.step,
            digit_bits=preset.digit_bits,
            per_slot=preset.values_per_slot,
            rng=rng if rng is not None else np.random.default_rng(),
        )
    else:
        slots = scaled
    tenseal = ctx._tenseal()
    chunks = tuple(
        ts.ckks_vector(tenseal, slots[i : i + preset.slots]).serialize()
        for i in range(0, slots.size, preset.slots)
    )
    return EncryptedVector(_manifest(ctx, scaled.size, chunks), chunks)


def check_manifest(
    ctx: SecretContext | PublicContext, manifest: CiphertextManifest, *, length: int | None
) -> None:
    """Refuse a manifest made for another context or preset, or of an unexpected length."""
    if manifest.preset != ctx.preset.name or manifest.slots != ctx.preset.values_per_chunk:
        raise InvalidInput(
            f"ciphertexts use preset {manifest.preset!r} ({manifest.slots} slots); this "
            f"federation uses {ctx.preset.name!r}"
        )
    if manifest.context_id != ctx.context_id:
        raise InvalidInput(
            f"ciphertexts were made under CKKS context {manifest.context_id[:12]}…, not this "
            f"federation's {ctx.context_id[:12]}… (another key or key epoch)"
        )
    if length is not None and manifest.length != length:
        raise InvalidInput(f"ciphertexts hold {manifest.length} values, expected {length}")


def load_chunk(
    ctx: SecretContext | PublicContext, manifest: CiphertextManifest, index: int, data: bytes
) -> ts.CKKSVector:
    """Check chunk ``index`` against the manifest (size, then SHA-256), then parse it."""
    if not 0 <= index < manifest.count:
        raise InvalidInput(f"ciphertext chunk {index} is outside 0..{manifest.count - 1}")
    preset = ctx.preset
    max_len = preset.ciphertext_bytes() + _HEADER_ALLOWANCE
    if len(data) > max_len:
        raise InvalidInput(f"ciphertext chunk {index} is {len(data)} bytes, over {max_len}")
    if hashlib.sha256(data).hexdigest() != manifest.chunk_sha256[index]:
        raise InvalidInput(
            f"ciphertext chunk {index} of {manifest.count} does not match its SHA-256 in the "
            "manifest (truncated or tampered)"
        )
    try:
        vector = ts.ckks_vector_from(ctx._tenseal(), data)
    except Exception as exc:  # TenSEAL/SEAL raise ValueError or RuntimeError
        raise InvalidInput(f"ciphertext chunk {index} could not be parsed: {exc}") from None
    cts = vector.ciphertext()
    values = manifest.chunk_length(index)
    if (
        vector.size() != math.ceil(values / preset.values_per_slot)
        or len(cts) != 1
        or cts[0].size() != 2
        or cts[0].coeff_modulus_size() != len(preset.coeff_mod_bit_sizes) - 1
        or cts[0].scale != preset.scale
        or cts[0].is_transparent()
    ):
        raise InvalidInput(
            f"ciphertext chunk {index} is not a fresh-level ciphertext of "
            f"{values} values at scale 2^{preset.scale_bits}"
        )
    return vector


def _check_whole(
    ctx: SecretContext | PublicContext, encrypted: EncryptedVector, length: int | None
) -> list[ts.CKKSVector]:
    check_manifest(ctx, encrypted.manifest, length=length)
    if len(encrypted.ciphertexts) != encrypted.manifest.count:
        raise InvalidInput(
            f"{len(encrypted.ciphertexts)} ciphertext chunks for a manifest of "
            f"{encrypted.manifest.count} (truncated)"
        )
    for i, data in enumerate(encrypted.ciphertexts):  # every hash before any parsing
        if hashlib.sha256(data).hexdigest() != encrypted.manifest.chunk_sha256[i]:
            raise InvalidInput(
                f"ciphertext chunk {i} of {encrypted.manifest.count} does not match its "
                "SHA-256 in the manifest (truncated or tampered)"
            )
    return [load_chunk(ctx, encrypted.manifest, i, c) for i, c in enumerate(encrypted.ciphertexts)]


class EncryptedSum:
    """The aggregator's running homomorphic sum of contributions (public context only).

    A contribution is checked whole (manifest, every hash, every parse) before any of it is
    added, so a bad upload leaves the sum untouched.
    """

    def __init__(self, ctx: PublicContext | SecretContext, length: int) -> None:
        self._ctx = ctx
        self._length = length
        self._acc: list[ts.CKKSVector] | None = None
        self._added = 0

    @property
    def added(self) -> int:
        return self._added

    def add(self, contribution: EncryptedVector) -> None:
        vectors = _check_whole(self._ctx, contribution, self._length)
        if self._acc is None:
            self._acc = vectors
        else:
            for acc, v in zip(self._acc, vectors, strict=True):
                acc.add_(v)
        self._added += 1

    def result(self) -> EncryptedVector:
        if self._acc is None:
            raise InvalidInput("no contribution was added to the encrypted sum")
        chunks = tuple(v.serialize() for v in self._acc)
        return EncryptedVector(_manifest(self._ctx, self._length, chunks), chunks)


def sum_encrypted(
    ctx: PublicContext | SecretContext, contributions: Sequence[EncryptedVector]
) -> EncryptedVector:
    """The homomorphic sum of contributions that all hold the same number of values."""
    if not contributions:
        raise InvalidInput("nothing to sum")
    total = EncryptedSum(ctx, contributions[0].manifest.length)
    for c in contributions:
        total.add(c)
    return total.result()


def decrypt_update(ctx: SecretContext, encrypted: EncryptedVector) -> np.ndarray:
    """Decrypt a (checked) encrypted vector on a silo; returns float32 values.

    Packed presets refuse a sum whose values left the preset's range (it may have wrapped).
    """
    vectors = _check_whole(ctx, encrypted, None)
    slots = np.concatenate([np.asarray(v.decrypt(), dtype=np.float64) for v in vectors])
    preset = ctx.preset
    if not preset.packed:
        return slots.astype(np.float32)
    return unpack(
        slots,
        encrypted.manifest.length,
        step=preset.step,
        digit_bits=preset.digit_bits,
        per_slot=preset.values_per_slot,
    ).astype(np.float32)
