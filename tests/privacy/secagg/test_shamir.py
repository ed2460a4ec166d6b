"""Shamir t-of-n sharing: any t shares rebuild, fewer are consistent with every secret."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.secagg import shamir
from protos.errors import InvalidInput


def _is_probable_prime(n: int) -> bool:
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71]:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_field_is_prime_and_holds_every_32_byte_secret() -> None:
    assert shamir.PRIME > 2**256 and _is_probable_prime(shamir.PRIME)
    assert not any(_is_probable_prime(2**256 + k) for k in range(1, 297, 2))


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=32, max_size=32),
    n=st.integers(1, 50),
    data=st.data(),
)
def test_any_threshold_shares_rebuild_the_secret(secret: bytes, n: int, data) -> None:
    t = data.draw(st.integers(1, n))
    xs = data.draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    shares = shamir.split(secret, xs, t, random.Random(n).randbytes)
    subset = data.draw(st.lists(st.sampled_from(xs), min_size=t, max_size=n, unique=True))
    assert shamir.combine({x: shares[x] for x in subset}, t) == secret


@settings(max_examples=40, deadline=None)
@given(
    secret=st.binary(min_size=32, max_size=32),
    other=st.binary(min_size=32, max_size=32),
    t=st.integers(2, 12),
)
def test_fewer_than_threshold_shares_are_consistent_with_any_secret(
    secret: bytes, other: bytes, t: int
) -> None:
    xs = list(range(1, t + 3))
    shares = shamir.split(secret, xs, t, random.Random(t).randbytes)
    seen = {x: shamir.share_value(shares[x]) for x in xs[: t - 1]}
    # A polynomial of degree < t through the t-1 seen shares and (0, other) exists ...
    points = {**seen, 0: int.from_bytes(other, "big")}
    polynomial = {x: shamir.interpolate(points, x) for x in xs[: t - 1]}
    assert polynomial == seen  # ... and explains what was seen exactly,
    assert shamir.interpolate(points, 0) == int.from_bytes(other, "big")  # with the other secret
    with pytest.raises(InvalidInput, match="need"):
        shamir.combine({x: shares[x] for x in xs[: t - 1]}, t)


def test_malformed_shares_are_refused() -> None:
    with pytest.raises(InvalidInput):
        shamir.split(b"short", [1, 2], 2)
    with pytest.raises(InvalidInput):
        shamir.split(bytes(32), [1, 1], 2)
    with pytest.raises(InvalidInput):
        shamir.combine({1: b"\xff" * 33, 2: b"\x00" * 33}, 2)
