"""Building blocks: parameters, encoding, masks (known answers), keys, share encryption."""

from __future__ import annotations

import pickle
import random
import struct
from datetime import timedelta

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.secagg import (
    MEDIUM,
    SMALL,
    EncodingParams,
    SecAggAborted,
    SecAggParams,
    UnsafeParameters,
    build_graph,
    decode_sum,
    encode,
    preset,
    quantize,
)
from privacy.secagg.encoding import BLOCK
from privacy.secagg.kdf import pairwise_mask_key, self_mask_key
from privacy.secagg.keys import RoundKeys, verify_silo_certificate
from privacy.secagg.masking import encode_and_mask, mask_update, remove_self_mask
from privacy.secagg.prg import MaskExpander
from privacy.secagg.share_encryption import open_shares, seal_shares
from protos.errors import InvalidInput
from tests.privacy.secagg.harness import NOW, Federation, context

CTX = context()


# -- parameters -----------------------------------------------------------------------------


def test_parameters_that_could_overflow_are_refused() -> None:
    with pytest.raises(UnsafeParameters, match="overflow"):
        EncodingParams(clip=1.0, scale=2.0**27, max_silos=16)
    with pytest.raises(UnsafeParameters, match="power of two"):
        EncodingParams(clip=1.0, scale=1000.0, max_silos=16)


@given(
    clip=st.floats(1e-3, 1e3),
    max_silos=st.integers(1, 10_000),
    bits=st.sampled_from([32, 64]),
)
def test_fit_picks_the_finest_safe_scale(clip: float, max_silos: int, bits: int) -> None:
    params = EncodingParams.fit(clip, max_silos, bits=bits)
    assert max_silos * params.max_level <= 2 ** (bits - 1) - 1
    with pytest.raises(UnsafeParameters):
        EncodingParams(clip=clip, scale=params.scale * 2, max_silos=max_silos, bits=bits)


def test_threshold_is_a_strict_majority_of_neighbours() -> None:
    for degree in range(1, 60):
        assert degree / 2 < MEDIUM.threshold_for(degree) <= degree
    with pytest.raises(UnsafeParameters, match="even"):
        SecAggParams(encoding=SMALL.encoding, degree=5, threshold_fraction=0.6, min_silos=3)
    with pytest.raises(ValueError):
        SecAggParams(encoding=SMALL.encoding, degree=8, threshold_fraction=0.5, min_silos=3)


def test_unknown_preset_names_the_known_ones() -> None:
    assert preset("medium") is MEDIUM
    with pytest.raises(UnsafeParameters, match="medium"):
        preset("huge")


# -- encoding -------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(
        st.lists(st.floats(-5, 5, allow_nan=False), min_size=7, max_size=7), min_size=1, max_size=16
    ),
    stochastic=st.booleans(),
)
def test_decoded_sum_is_the_sum_of_quantized_updates(values, stochastic: bool) -> None:
    params = EncodingParams.fit(1.0, 16, rounding="stochastic" if stochastic else "deterministic")
    rng = random.Random(0).randbytes
    quantized = [quantize(np.array(v), params, rng) for v in values]
    ring = np.zeros(7, dtype=np.uint32)
    for q in quantized:
        assert np.abs(q).max() <= params.max_level
        ring += q.astype(np.uint32)
    np.testing.assert_array_equal(
        decode_sum(ring, params, len(values)), np.sum(quantized, axis=0) / params.scale
    )


def test_all_silos_at_the_clip_do_not_overflow() -> None:
    params = MEDIUM.encoding
    for sign in (1.0, -1.0):
        ring = sum(encode(np.full(3, sign * 9.0), params) for _ in range(params.max_silos))
        np.testing.assert_array_equal(decode_sum(ring, params, params.max_silos), sign * 64.0)


def test_stochastic_rounding_is_unbiased() -> None:
    params = EncodingParams(clip=1.0, scale=1.0, max_silos=1)
    q = quantize(np.full(200_000, 0.3), params, random.Random(1).randbytes)
    assert set(np.unique(q)) == {0, 1}
    assert abs(q.mean() - 0.3) < 0.01


def test_non_finite_updates_are_refused() -> None:
    with pytest.raises(InvalidInput, match="NaN"):
        encode(np.array([0.0, np.nan]), MEDIUM.encoding)


def test_out_of_range_sum_aborts_instead_of_decoding_garbage() -> None:
    with pytest.raises(SecAggAborted, match="out of range"):
        decode_sum(np.array([2**31 - 1], dtype=np.uint32), MEDIUM.encoding, 2)


# -- masks ----------------------------------------------------------------------------------


def _field(tag: bytes, raw: bytes) -> bytes:
    return tag + struct.pack(">I", len(raw)) + raw


def test_pairwise_mask_known_answer() -> None:
    """The mask is AES-128-CTR(0) keyed by HKDF-SHA256(secret, info) with the documented info."""
    secret = bytes(range(32))
    ctx_digest = bytes(32)
    info = (
        _field(b"S", b"fedbiscuit/secagg/v1/pairwise-mask")
        + _field(b"B", ctx_digest)
        + _field(b"S", b"alice")
        + _field(b"S", b"bob")
    )
    key = HKDF(hashes.SHA256(), 16, salt=None, info=info).derive(secret)
    stream = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(4 * 1001))
    oracle = np.frombuffer(stream, dtype="<u4")
    assert pairwise_mask_key(secret, ctx_digest, "bob", "alice") == key
    got = MaskExpander(1001).keystream(key)
    np.testing.assert_array_equal(got, oracle)
    # Frozen so a change of derivation (which would split old and new silos) is noticed.
    assert key.hex() == "07503523669b85b8fadafd78d1830cac"
    assert got[:4].tolist() == [4221495145, 2402099598, 3088527587, 2313672949]


def test_pairwise_masks_cancel_and_self_masks_remove() -> None:
    ids = ["a", "b", "c"]
    secrets = {
        frozenset(p): random.Random(str(p)).randbytes(32)
        for p in [("a", "b"), ("a", "c"), ("b", "c")]
    }
    seeds = {s: random.Random(s).randbytes(32) for s in ids}
    expander = MaskExpander(513)
    total = np.zeros(513, dtype=np.uint32)
    for s in ids:
        pair = {p: secrets[frozenset((s, p))] for p in ids if p != s}
        total += mask_update(np.zeros(513, np.uint32), s, seeds[s], pair, CTX.digest)
    assert total.any()
    for s in ids:
        remove_self_mask(total, s, seeds[s], CTX.digest, expander)
    assert not total.any()


@pytest.mark.parametrize("bits", [32, 64])
def test_fused_encode_and_mask_equals_encoding_then_whole_vector_masks(bits: int) -> None:
    """The silo's blocked path gives the very words of encode + one keystream per mask (the
    server strips exactly those), across block boundaries, stochastic rounding included."""
    size = 2 * BLOCK + 17
    params = EncodingParams.fit(1.0, 16, bits=bits)
    update = np.random.default_rng(5).normal(0, 0.5, size).astype(np.float32)
    pair = {"b": random.Random(1).randbytes(32), "0": random.Random(2).randbytes(32)}
    seed = random.Random(3).randbytes(32)
    got = encode_and_mask(update, params, "a", seed, pair, CTX.digest, random.Random(4).randbytes)

    # Oracle: whole-vector stochastic rounding from one keystream, then every mask.
    rounding_key = random.Random(4).randbytes(16)
    uniform = MaskExpander(size).keystream(rounding_key).astype(np.float64)
    y = np.clip(update.astype(np.float64), -1.0, 1.0) * params.scale
    floor = np.floor(y)
    expected = (floor + (uniform < (y - floor) * 2.0**32)).astype(np.int64).astype(params.dtype)
    expander = MaskExpander(size, params.dtype)
    expander.add(expected, self_mask_key(seed, CTX.digest, "a"))
    expander.subtract(expected, pairwise_mask_key(pair["0"], CTX.digest, "a", "0"))
    expander.add(expected, pairwise_mask_key(pair["b"], CTX.digest, "a", "b"))
    np.testing.assert_array_equal(got, expected)


def test_uint64_masks() -> None:
    expander = MaskExpander(5, np.uint64)
    acc = np.zeros(5, np.uint64)
    expander.add(acc, bytes(16))
    expander.subtract(acc, bytes(16))
    assert not acc.any()


# -- neighbour graph ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 9, 10, 11, 50, 64])
def test_graph_is_symmetric_and_regular(n: int) -> None:
    ids = [f"s{i:02d}" for i in range(n)]
    graph = build_graph(ids, CTX.digest, MEDIUM)
    k = min(8, n - 1)
    assert graph.degree == k and graph.threshold > k / 2
    for s, peers in graph.neighbours.items():
        assert len(peers) == k and s not in peers
        assert all(s in graph.neighbours[p] for p in peers)


def test_graph_depends_on_the_round_seed() -> None:
    ids = [f"s{i:02d}" for i in range(30)]
    a = build_graph(ids, context(seed=1).digest, MEDIUM)
    assert a == build_graph(list(reversed(ids)), context(seed=1).digest, MEDIUM)
    assert a.neighbours != build_graph(ids, context(seed=2).digest, MEDIUM).neighbours


# -- keys and certificates ------------------------------------------------------------------


def test_certificate_checks(federation: Federation, rogue: Federation) -> None:
    silo = federation.silos["silo-00"]
    verify_silo_certificate(silo.certificate_pem, federation.ca, "fed-a", "silo-00", NOW)
    cases = [
        (silo.certificate_pem, "silo-01", NOW, frozenset(), "names"),
        (silo.certificate_pem, "silo-00", NOW + timedelta(days=400), frozenset(), "not valid"),
        (rogue.silos["sybil-00"].certificate_pem, "sybil-00", NOW, frozenset(), "CA"),
    ]
    for pem, silo_id, now, revoked, match in cases:
        with pytest.raises(SecAggAborted, match=match):
            verify_silo_certificate(pem, federation.ca, "fed-a", silo_id, now, revoked)
    from cryptography import x509

    serial = x509.load_pem_x509_certificate(silo.certificate_pem).serial_number
    with pytest.raises(SecAggAborted, match="revoked"):
        verify_silo_certificate(
            silo.certificate_pem, federation.ca, "fed-a", "silo-00", NOW, {serial}
        )


def test_round_keys_cannot_be_pickled() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(RoundKeys())


# -- share encryption -----------------------------------------------------------------------


def test_shares_open_only_for_the_intended_round_roster_and_direction() -> None:
    secret, roster = bytes(32), b"r" * 32
    share_a, share_b = b"\x01" * 33, b"\x02" * 33
    sealed = seal_shares(secret, CTX.digest, roster, "a", "b", share_a, share_b)
    assert open_shares(secret, CTX.digest, roster, "a", "b", sealed) == (share_a, share_b)
    tampered = bytes([sealed[0] ^ 1]) + sealed[1:]
    for args in [
        (secret, CTX.digest, roster, "b", "a", sealed),
        (secret, context(round_number=2).digest, roster, "a", "b", sealed),
        (secret, CTX.digest, b"x" * 32, "a", "b", sealed),
        (secret, CTX.digest, roster, "a", "b", tampered),
    ]:
        with pytest.raises(SecAggAborted):
            open_shares(*args)
