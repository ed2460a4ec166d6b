"""The tensor codec: what a receiver accepts and what it refuses, before aggregation sees it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from protos import codec
from protos.errors import InvalidInput, ResourceExhausted

LIMIT = 1 << 24


def _state(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "layer.0.lora_A": rng.standard_normal((4, 32)).astype(np.float32),
        "layer.0.lora_B": rng.standard_normal((32, 4)).astype(np.float32),
        "head.bias": rng.standard_normal(1).astype(np.float32),
    }


def _roundtrip(manifest: codec.Manifest, data: bytes, chunk: int = codec.CHUNK_BYTES):
    received = codec.manifest_from_proto(codec.manifest_to_proto(manifest), LIMIT)
    return codec.assemble(received, codec.iter_chunks(data, chunk))


@settings(max_examples=50, deadline=None)
@given(
    tensors=st.dictionaries(
        st.text("abcdefgh._", min_size=1, max_size=12),
        arrays(
            np.float32,
            st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple),
            elements=st.floats(-1e6, 1e6, width=32),
        ),
        min_size=1,
        max_size=5,
    ),
    chunk=st.integers(1, 64),
)
def test_state_survives_the_wire_bit_for_bit(tensors, chunk):
    manifest, vector = codec.flatten(tensors)
    vector_back = _roundtrip(manifest, codec.to_bytes(vector), chunk)
    restored = codec.unflatten(manifest, vector_back)
    assert set(restored) == set(tensors)
    for name, value in tensors.items():
        assert restored[name].shape == np.asarray(value).shape
        np.testing.assert_array_equal(restored[name], value)


def test_chunks_never_exceed_one_mib():
    data = bytes(3 * codec.CHUNK_BYTES + 5)
    sizes = [len(c) for c in codec.iter_chunks(data)]
    assert max(sizes) == codec.CHUNK_BYTES and sum(sizes) == len(data)


@pytest.mark.parametrize("dtype", [np.float32, np.uint32, np.uint64])
def test_vector_chunks_cut_the_wire_bytes_straight_from_the_array(dtype):
    vector = np.arange(3 * codec.CHUNK_BYTES // 8 + 3).astype(dtype)
    chunks = list(codec.vector_chunks(vector))
    assert max(len(c) for c in chunks) <= codec.CHUNK_BYTES
    assert b"".join(chunks) == codec.to_bytes(vector)
    assert codec.wire_view(vector).obj is vector  # no copy of a little-endian wire vector


def test_non_finite_value_is_located_beyond_the_first_check_block():
    vector = np.zeros(200_000, np.float32)
    vector[150_001] = np.nan
    manifest = codec.Manifest((codec.TensorSpec("w", (vector.size,)),), codec.sha256_of(vector))
    with pytest.raises(InvalidInput, match="at element 150001"):
        codec.assemble(manifest, codec.vector_chunks(vector, 4096))


def test_tampered_payload_is_refused():
    manifest, vector = codec.flatten(_state())
    data = bytearray(codec.to_bytes(vector))
    data[10] ^= 0x01
    with pytest.raises(InvalidInput, match="SHA-256"):
        _roundtrip(manifest, bytes(data))


def test_truncated_payload_is_refused():
    manifest, vector = codec.flatten(_state())
    with pytest.raises(InvalidInput, match="truncated"):
        _roundtrip(manifest, codec.to_bytes(vector)[:-4])


def test_extra_bytes_are_refused_before_buffering():
    manifest, vector = codec.flatten(_state())
    assembler = codec.ChunkAssembler(manifest)
    assembler.add(codec.to_bytes(vector))
    with pytest.raises(ResourceExhausted, match="more data than the manifest"):
        assembler.add(b"\x00\x00\x00\x00")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    state = _state()
    state["head.bias"][0] = bad
    manifest, vector = codec.flatten(state)
    with pytest.raises(InvalidInput, match="non-finite"):
        _roundtrip(manifest, codec.to_bytes(vector))


def test_oversize_manifest_is_refused_before_any_data():
    manifest, _ = codec.flatten({"big": np.zeros((1024, 1024), np.float32)})
    with pytest.raises(ResourceExhausted, match="exceeds the limit"):
        codec.manifest_from_proto(codec.manifest_to_proto(manifest), max_bytes=1 << 20)


def test_wrong_shape_against_expected_layout_names_the_tensor():
    manifest, _ = codec.flatten(_state())
    other = _state()
    other["layer.0.lora_A"] = np.zeros((8, 32), np.float32)
    wrong, _ = codec.flatten(other)
    with pytest.raises(InvalidInput, match=r"layer\.0\.lora_A.*\[8, 32\].*\[4, 32\]"):
        codec.ChunkAssembler(wrong, expected_layout=manifest.layout())


def test_manifest_lies_are_refused():
    manifest, _ = codec.flatten(_state())
    msg = codec.manifest_to_proto(manifest)
    msg.total_bytes += 4
    with pytest.raises(InvalidInput, match="total_bytes"):
        codec.manifest_from_proto(msg, LIMIT)
    msg = codec.manifest_to_proto(manifest)
    msg.tensors[1].offset += 1
    with pytest.raises(InvalidInput, match="starts at"):
        codec.manifest_from_proto(msg, LIMIT)
    msg = codec.manifest_to_proto(manifest)
    msg.dtype = "float64"
    with pytest.raises(InvalidInput, match="dtype"):
        codec.manifest_from_proto(msg, LIMIT)
    msg = codec.manifest_to_proto(manifest)
    msg.tensors[1].name = msg.tensors[0].name
    with pytest.raises(InvalidInput, match="repeated"):
        codec.manifest_from_proto(msg, LIMIT)


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_masked_ring_words_travel_in_the_adapters_layout(dtype):
    manifest, vector = codec.flatten(_state())
    words = np.random.default_rng(1).integers(0, np.iinfo(dtype).max, vector.size, dtype=dtype)
    ring = codec.ring_manifest(manifest.layout(), words)

    received = codec.manifest_from_proto(codec.manifest_to_proto(ring), LIMIT, ring.dtype)
    chunks = codec.iter_chunks(codec.to_bytes(words), 4096)
    assembled = codec.assemble(received, chunks, manifest.layout())

    assert received.dtype == np.dtype(dtype).name
    assert assembled.dtype == dtype and np.array_equal(assembled, words)


def test_a_receiver_refuses_a_dtype_it_did_not_ask_for():
    manifest, vector = codec.flatten(_state())
    ring = codec.ring_manifest(manifest.layout(), vector.view(np.uint32))

    with pytest.raises(InvalidInput, match="manifest dtype 'uint32' is not supported"):
        codec.manifest_from_proto(codec.manifest_to_proto(ring), LIMIT)
    with pytest.raises(InvalidInput, match="manifest dtype 'float32'"):
        codec.manifest_from_proto(codec.manifest_to_proto(manifest), LIMIT, "uint32")
