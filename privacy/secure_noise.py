"""Gaussian noise and Poisson sampling from a cryptographically secure keystream.

Why: DP noise from an ordinary PRNG (Mersenne Twister, PCG64, Philox) is predictable by
anyone who recovers or guesses its state, and textbook Gaussian sampling in floating point
leaks the un-noised value through the low bits of the release (Mironov, "On significance of
the least significant bits for differential privacy", CCS 2012; Jin et al., "Are we there
yet? Timing and floating-point attacks on differential privacy systems", IEEE S&P 2022,
who attack exactly Opacus's DP-SGD noise).

What this module does, and why this method:
- **Keystream.** Every release gets its own AES-256-CTR keystream (`cryptography`), keyed
  from `os.urandom` (`NoiseSource()`), or, for tests only, from HKDF(seed, federation,
  silo, ledger seq, purpose) (`NoiseSource(seed=..)`), so a seeded silo still never replays
  a stream: each release has a seq of its own in the persisted ledger. A seeded stream is
  predictable by design and is therefore ledgered as `secure_rng: false`.
- **Gaussians.** Box–Muller over 64-bit uniforms computed in float64: a fixed amount of work
  per block, no rejection loop, so the time taken says nothing about the values (the timing
  channel Jin et al. find in rejection samplers of the discrete Gaussian). The radius uses
  the full 64 bits (uniforms down to 2^-65), so the tails reach 9.5σ.
- **Floating point: snapping.** The release, not the noise, is rounded: `value + noise` is
  computed in float64 and rounded to the power-of-two grid Λ = 2^(⌈log2 std⌉ − 12)
  (≈ std/4096), Mironov's snapping mitigation (§5: sample at the noise's scale, add, snap
  the sum to a grid far coarser than the float artefacts) carried over to the Gaussian.
  The float64 artefacts of sampling and adding live at 2^-52 of the magnitude; within a
  grid cell of ~2^-12 std they are averaged away, so the output no longer marks which
  inputs were possible. Rounding adds a variance of Λ²/12 (≈ 5·10^-9 std²): the accounted
  Gaussian mechanism is unchanged (this is post-processing of it, up to those artefacts),
  so the accountant needs no adjustment. This is a mitigation in the spirit of Mironov's,
  not a proof like his for the Laplace mechanism.
- **Why not the discrete Gaussian** (Canonne, Kamath, Steinke, NeurIPS 2020): it is exact
  for integer-valued queries, but a d-dimensional gradient must first be rounded onto its
  lattice, which inflates the L2 sensitivity by up to γ·√d (d is 10^5–10^6 here), and the
  exact samplers are rejection samplers with the timing channel above.

Pure: bytes in, arrays out; the caller chooses the device and passes the stream.
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protos.errors import InvalidInput

__all__ = ["GRID_BITS", "NoiseSource", "RandomStream", "snap", "snapping_grid"]

GRID_BITS = 12
"""The snapping grid is 2^-GRID_BITS of the noise std (rounded up to a power of two)."""

_KEY_BYTES = 32
_TWO_PI = 2.0 * math.pi


class RandomStream:
    """One release's keystream: uniforms, Poisson samples and standard Gaussians.

    The key is consumed at construction and never exposed; draws are sequential, so two
    calls never return overlapping randomness.
    """

    def __init__(self, key: bytes):
        if len(key) != _KEY_BYTES:
            raise InvalidInput(f"a noise stream key is {_KEY_BYTES} bytes, got {len(key)}")
        # A fresh key per stream, so the all-zero initial counter block is never reused.
        self._cipher = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def words(self, count: int) -> np.ndarray:
        """`count` uniformly random uint64 words."""
        if count < 0:
            raise InvalidInput(f"cannot draw {count} random words")
        raw = self._cipher.update(bytes(8 * count))
        return np.frombuffer(raw, dtype="<u8")

    def uniforms(self, count: int) -> np.ndarray:
        """`count` float64 uniforms in (0, 1) with 53 random bits each."""
        return ((self.words(count) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53

    def poisson_rows(self, population: int, rate: float) -> list[int]:
        """Each of `population` rows independently with probability `rate` (Poisson sampling)."""
        if not 0 < rate <= 1:
            raise InvalidInput(f"sampling rate {rate} is not in (0, 1]")
        return np.flatnonzero(self.uniforms(population) < rate).tolist()

    def gaussians(self, count: int, device: torch.device | None = None) -> torch.Tensor:
        """`count` standard normals (float64) on `device`, by Box–Muller.

        The keystream is drawn on the CPU in one block; the uniforms travel to the device in
        one transfer and the transcendental work happens there.
        """
        pairs = (count + 1) // 2
        words = self.words(2 * pairs)
        # Radius from all 64 bits (down to 2^-65: tails to 9.5σ); angle from 53 bits.
        radius_u = (words[:pairs].astype(np.float64) + 0.5) * 2.0**-64
        angle_u = (words[pairs:] >> np.uint64(11)).astype(np.float64) * 2.0**-53
        block = torch.from_numpy(np.stack([radius_u, angle_u]))
        if device is not None and device.type != "cpu":
            block = block.pin_memory().to(device, non_blocking=True)
        radius = torch.sqrt(-2.0 * torch.log(block[0]))
        angle = _TWO_PI * block[1]
        return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])[:count]


class NoiseSource:
    """Where a silo's release keys come from.

    Without a seed (production): 32 bytes of `os.urandom` per stream, `secure` True. With a
    seed (tests and demos only): HKDF-SHA256 of the seed and the stream's label (federation,
    silo, ledger seq, purpose), reproducible across runs yet never the same for two releases
    of one silo; `secure` False, because whoever knows the seed knows the noise.
    """

    def __init__(self, seed: int | None = None, context: str = ""):
        if seed is not None and (isinstance(seed, bool) or seed < 0):
            raise InvalidInput(f"noise seed must be a non-negative integer, got {seed!r}")
        self._seed = seed
        self._context = context

    @property
    def secure(self) -> bool:
        return self._seed is None

    @property
    def seeded(self) -> bool:
        return self._seed is not None

    def stream(self, release: int, purpose: str) -> RandomStream:
        """The keystream of release `release` (its ledger seq) for `purpose`."""
        if self._seed is None:
            return RandomStream(os.urandom(_KEY_BYTES))
        label = f"fedbiscuit noise v1\x00{self._context}\x00{release}\x00{purpose}".encode()
        ikm = struct.pack(">Q", self._seed) if self._seed < 2**64 else str(self._seed).encode()
        key = HKDF(hashes.SHA256(), _KEY_BYTES, salt=None, info=label).derive(ikm)
        return RandomStream(key)


def snapping_grid(std: float) -> float:
    """Λ = 2^(⌈log2 std⌉ − GRID_BITS), in [std, 2·std)·2^-GRID_BITS: the grid that releases
    with noise `std` snap to."""
    if not std > 0 or not math.isfinite(std):
        raise InvalidInput(f"noise std {std} must be positive and finite")
    return 2.0 ** (math.ceil(math.log2(std)) - GRID_BITS)


def snap(values: torch.Tensor, std: float, normals: torch.Tensor) -> torch.Tensor:
    """values + std·normals, computed in float64 and rounded to `snapping_grid(std)`.

    Dividing and multiplying by a power of two is exact, so the result is exactly a grid
    point (a float64 tensor); callers cast it down afterwards, which is post-processing.
    """
    grid = snapping_grid(std)
    noisy = values.to(torch.float64) + std * normals.reshape(values.shape)
    return torch.round(noisy / grid) * grid
