"""Adapter state <-> one flat little-endian float32 vector with a manifest, and its chunks.

Tensors never travel pickled: names, shapes and offsets go in a manifest with the SHA-256 of
the raw bytes; the receiver checks size limits before buffering, then the hash, the layout
and that every value is finite before anything reaches aggregation. Masked updates (secure
aggregation) travel the same way as uint32 or uint64 ring words in the adapters' layout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from protos.errors import InvalidInput, ResourceExhausted
from protos.v1 import federation_pb2 as pb

CHUNK_BYTES = 1 << 20
DTYPE = "float32"
WIRE_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),  # adapter values
    "uint32": np.dtype("<u4"),  # masked ring words (secure aggregation)
    "uint64": np.dtype("<u8"),
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True)
class Manifest:
    """Layout of a flat vector: tensors in order (offsets follow from sizes) and its hash."""

    tensors: tuple[TensorSpec, ...]
    sha256: str
    dtype: str = DTYPE

    @property
    def num_elements(self) -> int:
        return sum(t.size for t in self.tensors)

    @property
    def total_bytes(self) -> int:
        return self.num_elements * WIRE_DTYPES[self.dtype].itemsize

    def layout(self) -> tuple[TensorSpec, ...]:
        """The layout without the hash: two vectors can be added iff their layouts match."""
        return self.tensors


def flatten(state: Mapping[str, np.ndarray]) -> tuple[Manifest, np.ndarray]:
    """Concatenate tensors in name order into one float32 vector and describe it."""
    if not state:
        raise InvalidInput("adapter state is empty")
    names = sorted(state)
    arrays = [np.asarray(state[name], dtype=np.float32) for name in names]
    vector = np.concatenate([a.reshape(-1) for a in arrays])
    specs = tuple(
        TensorSpec(n, tuple(int(d) for d in a.shape)) for n, a in zip(names, arrays, strict=True)
    )
    return Manifest(specs, sha256_of(vector)), vector


def unflatten(manifest: Manifest, vector: np.ndarray) -> dict[str, np.ndarray]:
    """Split a flat vector back into named tensors (views into `vector`)."""
    if vector.shape != (manifest.num_elements,):
        raise InvalidInput(
            f"vector has {vector.size} elements, manifest describes {manifest.num_elements}"
        )
    out, offset = {}, 0
    for spec in manifest.tensors:
        out[spec.name] = vector[offset : offset + spec.size].reshape(spec.shape)
        offset += spec.size
    return out


def ring_manifest(layout: tuple[TensorSpec, ...], words: np.ndarray) -> Manifest:
    """Describe masked ring words (uint32 or uint64) laid out like the adapters `layout`."""
    dtype = _dtype_name(words)
    if dtype == DTYPE:
        raise InvalidInput(f"ring words must be uint32 or uint64, not {words.dtype}")
    manifest = Manifest(layout, sha256_of(words), dtype)
    if words.shape != (manifest.num_elements,):
        raise InvalidInput(
            f"{words.size} ring words do not fit a layout of {manifest.num_elements}"
        )
    return manifest


def _dtype_name(vector: np.ndarray) -> str:
    """The wire dtype a vector travels as: its own for ring words, float32 for anything else."""
    kind = np.asarray(vector).dtype
    return kind.name if kind.name in ("uint32", "uint64") else DTYPE


def _wire(vector: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vector, dtype=WIRE_DTYPES[_dtype_name(vector)])


def to_bytes(vector: np.ndarray) -> bytes:
    return _wire(vector).tobytes()


def wire_view(vector: np.ndarray) -> memoryview:
    """The wire bytes of `vector` without a copy when it already is float32 or ring words
    in little-endian order (what a file write or a hash can take instead of bytes)."""
    return memoryview(_wire(vector)).cast("B")


def sha256_of(vector: np.ndarray) -> str:
    """SHA-256 of the wire bytes, hashed in place (no copy for a float32 or ring vector)."""
    return hashlib.sha256(wire_view(vector)).hexdigest()


def iter_chunks(data: bytes | memoryview, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Split `data` into pieces of at most `chunk_bytes` (the wire limit is 1 MiB)."""
    if not 0 < chunk_bytes <= CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be in (0, {CHUNK_BYTES}]")
    view = memoryview(data)
    for start in range(0, len(view), chunk_bytes):
        yield bytes(view[start : start + chunk_bytes])


def vector_chunks(vector: np.ndarray, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The wire bytes of `vector` in pieces of at most `chunk_bytes`, cut straight from the
    array (a float32 or ring vector is not copied whole first: an upload then holds one
    chunk at a time beside the update, not a second copy of it)."""
    return iter_chunks(wire_view(vector), chunk_bytes)


def manifest_to_proto(manifest: Manifest) -> pb.TensorManifest:
    entries, offset = [], 0
    for spec in manifest.tensors:
        entries.append(pb.TensorEntry(name=spec.name, shape=list(spec.shape), offset=offset))
        offset += spec.size
    return pb.TensorManifest(
        tensors=entries,
        dtype=manifest.dtype,
        total_bytes=manifest.total_bytes,
        sha256=manifest.sha256,
    )


def manifest_from_proto(msg: pb.TensorManifest, max_bytes: int, dtype: str = DTYPE) -> Manifest:
    """Validate a received manifest: the `dtype` the receiver expects, contiguous offsets,
    unique names, size limit."""
    if msg.dtype != dtype:
        raise InvalidInput(f"manifest dtype {msg.dtype!r} is not supported; expected {dtype!r}")
    if len(msg.sha256) != 64 or any(c not in "0123456789abcdef" for c in msg.sha256):
        raise InvalidInput("manifest sha256 is not a lowercase hex SHA-256 digest")
    specs, offset, seen = [], 0, set()
    for entry in msg.tensors:
        if not entry.name or entry.name in seen:
            raise InvalidInput(f"manifest tensor name {entry.name!r} is empty or repeated")
        seen.add(entry.name)
        if entry.offset != offset:
            raise InvalidInput(
                f"manifest tensor {entry.name!r} starts at {entry.offset}, expected {offset}"
            )
        spec = TensorSpec(entry.name, tuple(int(d) for d in entry.shape))
        offset += spec.size
        specs.append(spec)
    manifest = Manifest(tuple(specs), msg.sha256, dtype)
    if not specs:
        raise InvalidInput("manifest lists no tensors")
    if msg.total_bytes != manifest.total_bytes:
        raise InvalidInput(
            f"manifest total_bytes {msg.total_bytes} disagrees with its shapes "
            f"({manifest.total_bytes} bytes)"
        )
    if manifest.total_bytes > max_bytes:
        raise ResourceExhausted(
            f"payload of {manifest.total_bytes} bytes exceeds the limit of {max_bytes} bytes"
        )
    return manifest


class ChunkAssembler:
    """Collects chunks for one manifest, refusing to buffer past its declared size.

    The buffer of the declared size (at most the receiver's limit, checked by
    :func:`manifest_from_proto`) is reserved up front and filled in place, and each chunk is
    hashed as it arrives, while it is in cache: the finished vector is a view of that buffer,
    so receiving an update costs one copy of it and one pass of SHA-256.
    """

    def __init__(self, manifest: Manifest, expected_layout: tuple[TensorSpec, ...] | None = None):
        if expected_layout is not None and manifest.layout() != expected_layout:
            raise InvalidInput(_layout_mismatch(manifest.layout(), expected_layout))
        self._manifest = manifest
        self._buffer = np.empty(manifest.total_bytes, dtype=np.uint8)
        self._filled = 0
        self._hash = hashlib.sha256()

    def add(self, chunk: bytes) -> None:
        if len(chunk) > CHUNK_BYTES:
            raise ResourceExhausted(f"chunk of {len(chunk)} bytes exceeds {CHUNK_BYTES} bytes")
        end = self._filled + len(chunk)
        if end > self._manifest.total_bytes:
            raise ResourceExhausted(
                f"more data than the manifest declares ({self._manifest.total_bytes} bytes)"
            )
        self._buffer[self._filled : end] = np.frombuffer(chunk, dtype=np.uint8)
        self._hash.update(chunk)
        self._filled = end

    def finish(self) -> np.ndarray:
        """The verified vector: complete, hash-matching and finite."""
        if self._filled != self._manifest.total_bytes:
            raise InvalidInput(
                f"payload truncated: got {self._filled} of {self._manifest.total_bytes} bytes"
            )
        if self._hash.hexdigest() != self._manifest.sha256:
            raise InvalidInput("payload SHA-256 does not match its manifest (corrupt or tampered)")
        wire = WIRE_DTYPES[self._manifest.dtype]
        vector = self._buffer.view(wire)
        if not wire.isnative:
            vector = vector.astype(wire.newbyteorder("="))
        if self._manifest.dtype == DTYPE:
            bad = _first_non_finite(vector)
            if bad is not None:
                raise InvalidInput(
                    f"payload holds a non-finite value (NaN or Inf) at element {bad}"
                )
        return vector


def _first_non_finite(vector: np.ndarray, block: int = 1 << 16) -> int | None:
    """Index of the first NaN or infinity, checked block by block (no full-size mask)."""
    for start in range(0, vector.size, block):
        ok = np.isfinite(vector[start : start + block])
        if not ok.all():
            return start + int(np.flatnonzero(~ok)[0])
    return None


def assemble(
    manifest: Manifest,
    chunks: Iterable[bytes],
    expected_layout: tuple[TensorSpec, ...] | None = None,
) -> np.ndarray:
    """Assemble and verify a whole payload from an iterable of chunks."""
    assembler = ChunkAssembler(manifest, expected_layout)
    for chunk in chunks:
        assembler.add(chunk)
    return assembler.finish()


def _layout_mismatch(got: tuple[TensorSpec, ...], want: tuple[TensorSpec, ...]) -> str:
    want_by_name = {t.name: t.shape for t in want}
    for spec in got:
        if spec.name not in want_by_name:
            return f"unexpected tensor {spec.name!r}"
        if spec.shape != want_by_name[spec.name]:
            return (
                f"tensor {spec.name!r} has shape {list(spec.shape)}, "
                f"expected {list(want_by_name[spec.name])}"
            )
    missing = sorted(set(want_by_name) - {t.name for t in got})
    if missing:
        return f"missing tensor(s) {missing[:3]}"
    return "tensor order differs from the expected layout"
