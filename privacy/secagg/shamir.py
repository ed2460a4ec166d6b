"""Shamir t-of-n secret sharing of 32-byte secrets over the prime field GF(2**256 + 297).

The field is the smallest prime field holding every 32-byte string, so a secret is one
field element (no splitting). Shares are ``(x, y)`` with a public, non-zero ``x`` (the
holder's 1-based position in the round's roster) and ``y`` as 33 big-endian bytes. Any
``threshold`` shares rebuild the secret; fewer are consistent with every secret, because
the polynomial's other coefficients are uniform (drawn by rejection sampling from the
injected CSPRNG). Python integers are ample for SecAgg+'s few dozen shares per silo.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from protos.errors import InvalidInput

PRIME = 2**256 + 297
SECRET_BYTES = 32
SHARE_BYTES = 33
_MASK_257 = (1 << 257) - 1

RandomBytes = Callable[[int], bytes]


def _random_element(random_bytes: RandomBytes) -> int:
    while True:
        candidate = int.from_bytes(random_bytes(SHARE_BYTES), "big") & _MASK_257
        if candidate < PRIME:
            return candidate


def _check_xs(xs: Iterable[int], lowest: int = 1) -> list[int]:
    values = list(xs)
    if len(set(values)) != len(values) or any(not lowest <= x < PRIME for x in values):
        raise InvalidInput(f"x-coordinates must be distinct and in [{lowest}, p)")
    return values


def split(
    secret: bytes,
    xs: Iterable[int],
    threshold: int,
    random_bytes: RandomBytes = os.urandom,
) -> dict[int, bytes]:
    """Shares of ``secret`` at each ``x``; any ``threshold`` of them rebuild it."""
    if len(secret) != SECRET_BYTES:
        raise InvalidInput(f"shamir secrets are {SECRET_BYTES} bytes, got {len(secret)}")
    points = _check_xs(xs)
    if not 1 <= threshold <= len(points):
        raise InvalidInput(f"threshold {threshold} is not in [1, {len(points)}]")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [_random_element(random_bytes) for _ in range(threshold - 1)]
    shares = {}
    for x in points:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % PRIME
        shares[x] = y.to_bytes(SHARE_BYTES, "big")
    return shares


def interpolate(points: Mapping[int, int], at: int) -> int:
    """The value at ``at`` of the unique polynomial of degree < len(points) through them."""
    xs = _check_xs(points, lowest=0)
    total = 0
    for xi in xs:
        numerator, denominator = 1, 1
        for xj in xs:
            if xj != xi:
                numerator = numerator * (at - xj) % PRIME
                denominator = denominator * (xi - xj) % PRIME
        total = (total + points[xi] * numerator * pow(denominator, -1, PRIME)) % PRIME
    return total


def share_value(share: bytes) -> int:
    """A share's ``y`` as a field element; refuses malformed shares."""
    if len(share) != SHARE_BYTES:
        raise InvalidInput(f"a share is {SHARE_BYTES} bytes, got {len(share)}")
    value = int.from_bytes(share, "big")
    if value >= PRIME:
        raise InvalidInput("a share lies outside the field")
    return value


def combine(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """The secret behind ``threshold`` (or more) shares; uses the ``threshold`` lowest x."""
    if len(shares) < threshold:
        raise InvalidInput(f"need {threshold} shares to rebuild a secret, got {len(shares)}")
    chosen = sorted(shares)[:threshold]
    value = interpolate({x: share_value(shares[x]) for x in chosen}, 0)
    if value >= 2 ** (8 * SECRET_BYTES):
        raise InvalidInput("the shares do not rebuild a 32-byte secret (inconsistent shares)")
    return value.to_bytes(SECRET_BYTES, "big")
