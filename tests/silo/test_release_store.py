"""The silo's sealed copy of its latest release: it opens only under its own binding and key,
a tampered file is refused (never re-sent), and a later round's release replaces it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from protos import codec
from protos.errors import InvalidInput
from silo.release_store import FOLDER, KEY_FILE, ReleaseStore, StoredRelease

BINDING, OTHER = "a" * 64, "b" * 64


def _release(seed: int = 0) -> StoredRelease:
    rng = np.random.default_rng(seed)
    manifest, vector = codec.flatten({"lora.a": rng.normal(size=(4, 3)).astype(np.float32)})
    return StoredRelease(seq=3, roster=("silo-1", "silo-2", "silo-3"), manifest=manifest,
                         vector=vector)  # fmt: skip


def test_release_round_trips_under_its_binding_only(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path)
    store.save(BINDING, 2, _release())

    loaded = ReleaseStore(tmp_path).load(BINDING, 2)

    assert loaded is not None
    assert (loaded.seq, loaded.roster, loaded.manifest) == (
        3,
        _release().roster,
        _release().manifest,
    )
    np.testing.assert_array_equal(loaded.vector, _release().vector)
    assert store.load(OTHER, 2) is None
    assert os.stat(tmp_path / KEY_FILE).st_mode & 0o777 == 0o600


def test_a_sealed_file_moved_to_another_binding_or_altered_is_refused(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path)
    store.save(BINDING, 2, _release())
    sealed = tmp_path / FOLDER / f"r2-{BINDING}.sealed"
    moved = tmp_path / FOLDER / f"r2-{OTHER}.sealed"
    moved.write_bytes(sealed.read_bytes())
    altered = bytearray(sealed.read_bytes())
    altered[-1] ^= 1
    sealed.write_bytes(bytes(altered))

    for binding in (BINDING, OTHER):
        with pytest.raises(InvalidInput, match="cannot be opened"):
            store.load(binding, 2)


def test_a_later_rounds_release_replaces_earlier_ones(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path)
    store.save(BINDING, 1, _release(1))
    store.save(OTHER, 2, _release(2))

    assert store.load(BINDING, 1) is None
    assert store.load(OTHER, 2) is not None
