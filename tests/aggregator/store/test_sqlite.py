"""What SqliteStore does on disk beyond the contract: blob files, crash leftovers, read-only
views for status tools."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aggregator.store import DB_NAME, ClosedAttempt, SqliteStore
from protos.errors import FailedPrecondition, InvalidInput

from .conftest import PLAN, Crash, submission, update


def _upload_files(state_dir: Path) -> list[Path]:
    return sorted((state_dir / "blobs" / "uploads").iterdir())


def test_an_upload_blob_lives_only_until_its_attempt_closes(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    store = SqliteStore.create(state_dir, PLAN)
    store.add_submission(submission(), update())
    assert len(_upload_files(state_dir)) == 1

    store.save_state({"round": 1}, ClosedAttempt(0, 0, aggregated=True))

    assert _upload_files(state_dir) == []


def test_an_upload_blob_whose_row_never_committed_is_swept_on_open(tmp_path: Path) -> None:
    def crash_after_blob(point: str) -> None:
        if point == "upload_written":
            raise Crash

    state_dir = tmp_path / "state"
    store = SqliteStore.create(state_dir, PLAN, fault_hook=crash_after_blob)
    with pytest.raises(Crash):
        store.add_submission(submission(), update())
    store.close()
    assert len(_upload_files(state_dir)) == 1

    SqliteStore.create(state_dir, PLAN).close()

    assert _upload_files(state_dir) == []


def test_a_tampered_upload_blob_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    store = SqliteStore.create(state_dir, PLAN)
    sub = submission()
    store.add_submission(sub, update())
    (blob,) = _upload_files(state_dir)
    blob.write_bytes(update(1).astype("<f4").tobytes())

    with pytest.raises(InvalidInput, match="corrupt"):
        store.load_update(sub.task_id)


def test_read_only_view_sees_the_state_without_a_plan_argument(tmp_path: Path) -> None:
    store = SqliteStore.create(tmp_path / "state", PLAN)
    store.join_silo("silo-1", 1.0)

    view = SqliteStore.open_read_only(tmp_path / "state")

    assert view.plan == PLAN
    assert [s.silo_id for s in view.silos()] == ["silo-1"]
    view.close()
    store.close()


def test_read_only_view_of_a_folder_without_state_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=DB_NAME):
        SqliteStore.open_read_only(tmp_path)


def test_globals_from_another_round_file_are_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    store = SqliteStore.create(state_dir, PLAN)
    store.put_globals(0, {"w": np.zeros(4, np.float32)})
    store.put_globals(1, {"w": np.ones(4, np.float32)})
    globals_dir = state_dir / "blobs" / "globals"
    (globals_dir / "round-000000-adapter-00.safetensors").write_bytes(
        (globals_dir / "round-000001-adapter-00.safetensors").read_bytes()
    )

    with pytest.raises(InvalidInput, match="globals of round 0 adapter 0 are corrupt"):
        store.load_globals(0)
    with pytest.raises(FailedPrecondition, match="no globals stored for round 2"):
        store.load_globals(2)
