"""AES-128-CTR keystream expanded straight into preallocated ring-word buffers.

Each key is derived for exactly one stream (see :mod:`privacy.secagg.kdf`), so the counter
starts at zero. One :class:`MaskExpander` holds the zero input and the output scratch for
one vector length, so expanding a mask allocates nothing and loops over no elements in
Python. A :class:`Keystream` yields the same words block by block, so a silo can add a
block of every mask while that block of its update is still in cache.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from privacy.secagg.kdf import MASK_KEY_BYTES

_ZERO_COUNTER = bytes(16)


class MaskExpander:
    """Keystream generator for vectors of ``length`` words of ``dtype`` (uint32 or uint64)."""

    def __init__(self, length: int, dtype: np.dtype | type = np.uint32) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.uint32), np.dtype(np.uint64)):
            raise ValueError(f"mask words must be uint32 or uint64, not {self.dtype}")
        if length < 0:
            raise ValueError("vector length must be >= 0")
        self.length = length
        nbytes = length * self.dtype.itemsize
        self._zeros = np.zeros(nbytes, dtype=np.uint8)
        # update_into wants room for one extra block in the output.
        self._scratch = np.empty(nbytes + 16, dtype=np.uint8)
        self._words = self._scratch[:nbytes].view(self.dtype)

    def keystream(self, key: bytes) -> np.ndarray:
        """The first ``length`` words of AES-CTR(key); a view overwritten by the next call."""
        if len(key) != MASK_KEY_BYTES:
            raise ValueError(f"mask keys are {MASK_KEY_BYTES} bytes")
        encryptor = Cipher(algorithms.AES(key), modes.CTR(_ZERO_COUNTER)).encryptor()
        encryptor.update_into(self._zeros, self._scratch)
        return self._words

    def add(self, accumulator: np.ndarray, key: bytes) -> None:
        """``accumulator += PRG(key)`` modulo 2**bits, in place."""
        np.add(accumulator, self.keystream(key), out=accumulator)

    def subtract(self, accumulator: np.ndarray, key: bytes) -> None:
        """``accumulator -= PRG(key)`` modulo 2**bits, in place."""
        np.subtract(accumulator, self.keystream(key), out=accumulator)


class Keystream:
    """The words of AES-CTR(key) (those of :meth:`MaskExpander.keystream`), block by block."""

    def __init__(self, key: bytes, dtype: np.dtype | type, block_words: int) -> None:
        if len(key) != MASK_KEY_BYTES:
            raise ValueError(f"mask keys are {MASK_KEY_BYTES} bytes")
        self.dtype = np.dtype(dtype)
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(_ZERO_COUNTER)).encryptor()
        nbytes = block_words * self.dtype.itemsize
        self._zeros = np.zeros(nbytes, dtype=np.uint8)
        self._scratch = np.empty(nbytes + 16, dtype=np.uint8)

    def next_block(self, words: int) -> np.ndarray:
        """The next ``words`` words of the stream; a view overwritten by the next call."""
        nbytes = words * self.dtype.itemsize
        if nbytes > self._zeros.size:
            raise ValueError(f"a block holds at most {self._zeros.size // self.dtype.itemsize}")
        self._encryptor.update_into(self._zeros[:nbytes], self._scratch[: nbytes + 16])
        return self._scratch[:nbytes].view(self.dtype)
