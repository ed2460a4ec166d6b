"""The production store: SQLite (WAL, synchronous=FULL) plus blob files in a state dir.

Everything the aggregator acknowledges is on disk first: an upload's blob is written, fsynced
and renamed into place, then its row is committed, and only then is the Ack sent. Blob files
without a committed row are crash leftovers and are swept when the store opens. Individual
updates are deleted once their round attempt closes (DESIGN §3: keep nothing unneeded).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import safetensors.numpy

from aggregator.store import records
from aggregator.store.base import ARTIFACT_KEY, FederationStore, check_plan_change
from protos import codec
from protos.codec import TensorSpec
from protos.errors import FailedPrecondition, InvalidInput
from protos.plan import Plan

DB_NAME = "aggregator.sqlite3"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS plan (
    id INTEGER PRIMARY KEY CHECK (id = 1), sha256 TEXT NOT NULL, canonical_json BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS globals (
    round INTEGER NOT NULL, adapter INTEGER NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL,
    layout TEXT NOT NULL, PRIMARY KEY (round, adapter));
CREATE TABLE IF NOT EXISTS silos (
    silo_id TEXT PRIMARY KEY, joined_at_s REAL NOT NULL, exhausted INTEGER NOT NULL,
    last_seen_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, silo_id TEXT NOT NULL, round INTEGER NOT NULL,
    attempt INTEGER NOT NULL, issued_at_s REAL NOT NULL, kind TEXT NOT NULL,
    adapter_index INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    task_id TEXT PRIMARY KEY, silo_id TEXT NOT NULL, round INTEGER NOT NULL,
    attempt INTEGER NOT NULL, blob_path TEXT, sha256 TEXT NOT NULL, num_examples INTEGER NOT NULL,
    received_at_s REAL NOT NULL, aggregated INTEGER NOT NULL, ledger_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS loss_reports (
    task_id TEXT PRIMARY KEY, silo_id TEXT NOT NULL, round INTEGER NOT NULL,
    attempt INTEGER NOT NULL, losses TEXT NOT NULL, received_at_s REAL NOT NULL,
    ledger_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS declines (
    task_id TEXT PRIMARY KEY, silo_id TEXT NOT NULL, round INTEGER NOT NULL,
    attempt INTEGER NOT NULL, reason_code TEXT NOT NULL, message TEXT NOT NULL,
    epsilon_spent REAL NOT NULL, received_at_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (
    key TEXT PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_entries (
    silo_id TEXT NOT NULL, seq INTEGER NOT NULL, round INTEGER NOT NULL, entry_hash TEXT NOT NULL,
    epsilon_after REAL NOT NULL, budget_epsilon REAL NOT NULL, entry_json BLOB NOT NULL,
    received_at_s REAL NOT NULL, PRIMARY KEY (silo_id, seq));
"""


class SqliteStore(FederationStore):
    """The production backend. `fault_hook(point)` is a test seam called between a blob's
    fsync and its row's commit (points: "upload_written", "globals_written")."""

    def __init__(
        self,
        state_dir: Path,
        conn: sqlite3.Connection,
        plan: Plan,
        fault_hook: Callable[[str], None] | None = None,
    ):
        self.state_dir = state_dir
        self.plan = plan
        self._conn = conn
        self._lock = threading.RLock()
        self._fault_hook = fault_hook or (lambda _point: None)

    @classmethod
    def create(
        cls,
        state_dir: str | Path,
        plan: Plan,
        *,
        allow_plan_change: bool = False,
        fault_hook: Callable[[str], None] | None = None,
    ) -> SqliteStore:
        """Open (or initialise) the state dir for `plan`; refuse a dir that holds another plan."""
        state_dir = Path(state_dir)
        for sub in ("uploads", "globals", "artifacts"):
            (state_dir / "blobs" / sub).mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(state_dir / DB_NAME, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        store = cls(state_dir, conn, plan, fault_hook)
        store._bind_plan(plan, allow_plan_change)
        store._sweep_orphan_uploads()
        return store

    @classmethod
    def open_read_only(cls, state_dir: str | Path) -> SqliteStore:
        """A view for status tools; never writes (SQLite `mode=ro`)."""
        state_dir = Path(state_dir)
        db = state_dir / DB_NAME
        if not db.is_file():
            raise InvalidInput(f"{state_dir}: no aggregator state here ({DB_NAME} missing)")
        conn = sqlite3.connect(
            f"{db.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
        try:
            row = conn.execute("SELECT canonical_json FROM plan").fetchone()
        except sqlite3.DatabaseError as exc:  # being created right now, or not ours
            conn.close()
            raise InvalidInput(f"{state_dir}: aggregator state is not readable: {exc}") from exc
        if row is None:
            conn.close()
            raise InvalidInput(f"{state_dir}: aggregator state holds no plan")
        return cls(state_dir, conn, Plan.from_canonical_json(row[0]))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _bind_plan(self, plan: Plan, allow_plan_change: bool) -> None:
        rows = self._rows("SELECT sha256, canonical_json FROM plan")
        if rows and rows[0][0] != plan.sha256():
            stored = Plan.from_canonical_json(rows[0][1])
            check_plan_change(str(self.state_dir), stored, plan, allow_plan_change)
        with self._tx() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO plan VALUES (1, ?, ?)",
                (plan.sha256(), plan.canonical_json()),
            )

    def _sweep_orphan_uploads(self) -> None:
        """Delete upload blobs whose row never committed (a crash before the Ack)."""
        kept = {row[0] for row in self._rows("SELECT blob_path FROM submissions") if row[0]}
        for path in (self.state_dir / "blobs" / "uploads").iterdir():
            if path.name not in kept:
                path.unlink()

    def _write_blob(self, path: Path, data: bytes | memoryview) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def load_state(self) -> dict | None:
        rows = self._rows("SELECT json FROM state")
        return json.loads(rows[0][0]) if rows else None

    def save_state(self, state: dict, closing: records.ClosedAttempt | None = None) -> None:
        doomed: list[str] = []
        with self._tx() as tx:
            tx.execute("INSERT OR REPLACE INTO state VALUES (1, ?)", (json.dumps(state),))
            if closing is not None:
                where = "round = ? AND attempt = ?"
                key = (closing.round, closing.attempt)
                sql = f"SELECT blob_path FROM submissions WHERE {where} AND blob_path IS NOT NULL"
                doomed = [row[0] for row in tx.execute(sql, key)]
                tx.execute(
                    f"UPDATE submissions SET blob_path = NULL, aggregated = ? WHERE {where}",
                    (int(closing.aggregated), *key),
                )
        for name in doomed:
            (self.state_dir / "blobs" / "uploads" / name).unlink(missing_ok=True)

    def put_globals(
        self, round_: int, tensors: Mapping[str, np.ndarray], adapter: int = 0
    ) -> records.GlobalsRecord:
        manifest, _ = codec.flatten(tensors)
        arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
        name = f"round-{round_:06d}-adapter-{adapter:02d}.safetensors"
        self._write_blob(
            self.state_dir / "blobs" / "globals" / name, safetensors.numpy.save(arrays)
        )
        self._fault_hook("globals_written")
        layout = json.dumps([[t.name, list(t.shape)] for t in manifest.layout()])
        with self._tx() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO globals VALUES (?, ?, ?, ?, ?)",
                (round_, adapter, name, manifest.sha256, layout),
            )
        return records.GlobalsRecord(round_, manifest.sha256, manifest.layout(), adapter)

    def globals_record(self, round_: int, adapter: int = 0) -> records.GlobalsRecord | None:
        rows = self._rows(
            "SELECT sha256, layout FROM globals WHERE round = ? AND adapter = ?", (round_, adapter)
        )
        if not rows:
            return None
        layout = tuple(TensorSpec(name, tuple(shape)) for name, shape in json.loads(rows[0][1]))
        return records.GlobalsRecord(round_, rows[0][0], layout, adapter)

    def load_globals(self, round_: int, adapter: int = 0) -> dict[str, np.ndarray]:
        rows = self._rows(
            "SELECT path, sha256 FROM globals WHERE round = ? AND adapter = ?", (round_, adapter)
        )
        if not rows:
            raise FailedPrecondition(f"no globals stored for round {round_} adapter {adapter}")
        data = (self.state_dir / "blobs" / "globals" / rows[0][0]).read_bytes()
        tensors = safetensors.numpy.load(data)
        if codec.flatten(tensors)[0].sha256 != rows[0][1]:
            raise InvalidInput(
                f"globals of round {round_} adapter {adapter} are corrupt (SHA-256 mismatch)"
            )
        return tensors

    def put_artifact(self, key: str, data: bytes) -> None:
        if not ARTIFACT_KEY.fullmatch(key):
            raise InvalidInput(f"artifact key {key!r} must match {ARTIFACT_KEY.pattern}")
        digest = hashlib.sha256(data).hexdigest()
        # Content-addressed file name: a replaced value never overwrites the one in use.
        name = f"{digest}.bin"
        self._write_blob(self.state_dir / "blobs" / "artifacts" / name, data)
        with self._tx() as tx:
            tx.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?)", (key, name, digest))

    def artifact(self, key: str) -> bytes | None:
        rows = self._rows("SELECT path, sha256 FROM artifacts WHERE key = ?", (key,))
        if not rows:
            return None
        data = (self.state_dir / "blobs" / "artifacts" / rows[0][0]).read_bytes()
        if hashlib.sha256(data).hexdigest() != rows[0][1]:
            raise InvalidInput(f"artifact {key!r} is corrupt (SHA-256 mismatch)")
        return data

    def artifact_keys(self, prefix: str) -> list[str]:
        rows = self._rows("SELECT key FROM artifacts ORDER BY key")
        return [row[0] for row in rows if row[0].startswith(prefix)]

    def join_silo(self, silo_id: str, now_s: float) -> records.SiloRecord:
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO silos VALUES (?, ?, 0, ?) ON CONFLICT (silo_id) "
                "DO UPDATE SET last_seen_s = excluded.last_seen_s",
                (silo_id, now_s, now_s),
            )
        return self._silo(silo_id)

    def see_silo(self, silo_id: str, now_s: float) -> records.SiloRecord | None:
        with self._tx() as tx:
            tx.execute("UPDATE silos SET last_seen_s = ? WHERE silo_id = ?", (now_s, silo_id))
        return self._silo(silo_id)

    def _silo(self, silo_id: str) -> records.SiloRecord | None:
        return next((s for s in self.silos() if s.silo_id == silo_id), None)

    def silos(self) -> list[records.SiloRecord]:
        rows = self._rows("SELECT * FROM silos ORDER BY silo_id")
        return [records.SiloRecord(r[0], r[1], bool(r[2]), r[3]) for r in rows]

    def add_task(self, task: records.TaskRecord) -> None:
        with self._tx() as tx:
            tx.execute(
                "INSERT OR IGNORE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (task.task_id, task.silo_id, task.round, task.attempt, task.issued_at_s,
                 task.kind, task.adapter_index),
            )  # fmt: skip

    def task(self, task_id: str) -> records.TaskRecord | None:
        rows = self._rows("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
        return records.TaskRecord(*rows[0]) if rows else None

    def add_submission(self, submission: records.Submission, update: np.ndarray | None) -> None:
        s = submission
        name = None
        if update is not None:
            task_digest = hashlib.sha256(s.task_id.encode()).hexdigest()[:16]
            name = f"r{s.round}-a{s.attempt}-{task_digest}.f32"
            self._write_blob(self.state_dir / "blobs" / "uploads" / name, codec.wire_view(update))
        self._fault_hook("upload_written")
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO submissions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (s.task_id, s.silo_id, s.round, s.attempt, name, s.sha256, s.num_examples,
                 s.received_at_s, int(s.aggregated), s.ledger_seq),
            )  # fmt: skip

    _SUBMISSION_COLUMNS = (
        "task_id, silo_id, round, attempt, sha256, num_examples, received_at_s, aggregated, "
        "ledger_seq"
    )

    def submission(self, task_id: str) -> records.Submission | None:
        found = self._submissions_where("task_id = ?", (task_id,))
        return found[0] if found else None

    def submissions(
        self, *, round_: int | None = None, attempt: int | None = None, silo_id: str | None = None
    ) -> list[records.Submission]:
        return self._submissions_where(*_filters(round_, attempt, silo_id))

    def _submissions_where(self, where: str, args: tuple) -> list[records.Submission]:
        sql = f"SELECT {self._SUBMISSION_COLUMNS} FROM submissions WHERE {where} ORDER BY task_id"
        return [records.Submission(*r[:7], bool(r[7]), r[8]) for r in self._rows(sql, args)]

    def load_update(self, task_id: str) -> np.ndarray:
        rows = self._rows("SELECT blob_path, sha256 FROM submissions WHERE task_id = ?", (task_id,))
        if not rows or rows[0][0] is None:
            raise FailedPrecondition(f"no stored update for task {task_id!r}")
        data = (self.state_dir / "blobs" / "uploads" / rows[0][0]).read_bytes()
        vector = np.frombuffer(data, dtype="<f4").astype(np.float32)
        if codec.sha256_of(vector) != rows[0][1]:
            raise InvalidInput(f"stored update of task {task_id!r} is corrupt (SHA-256 mismatch)")
        return vector

    def add_loss_report(self, report: records.LossReport) -> None:
        r = report
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO loss_reports VALUES (?, ?, ?, ?, ?, ?, ?)",
                (r.task_id, r.silo_id, r.round, r.attempt, json.dumps(list(r.losses)),
                 r.received_at_s, r.ledger_seq),
            )  # fmt: skip

    def loss_report(self, task_id: str) -> records.LossReport | None:
        found = self._loss_reports_where("task_id = ?", (task_id,))
        return found[0] if found else None

    def loss_reports(
        self, *, round_: int | None = None, attempt: int | None = None, silo_id: str | None = None
    ) -> list[records.LossReport]:
        return self._loss_reports_where(*_filters(round_, attempt, silo_id))

    def _loss_reports_where(self, where: str, args: tuple) -> list[records.LossReport]:
        rows = self._rows(f"SELECT * FROM loss_reports WHERE {where} ORDER BY task_id", args)
        return [
            records.LossReport(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6])
            for r in rows
        ]

    def add_decline(self, decline: records.Decline, *, mark_exhausted: bool) -> None:
        d = decline
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO declines VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (d.task_id, d.silo_id, d.round, d.attempt, d.reason_code, d.message,
                 d.epsilon_spent, d.received_at_s),
            )  # fmt: skip
            if mark_exhausted:
                tx.execute("UPDATE silos SET exhausted = 1 WHERE silo_id = ?", (d.silo_id,))

    def decline(self, task_id: str) -> records.Decline | None:
        rows = self._rows("SELECT * FROM declines WHERE task_id = ?", (task_id,))
        return records.Decline(*rows[0]) if rows else None

    def declines(
        self, *, round_: int | None = None, attempt: int | None = None, silo_id: str | None = None
    ) -> list[records.Decline]:
        where, args = _filters(round_, attempt, silo_id)
        rows = self._rows(f"SELECT * FROM declines WHERE {where} ORDER BY task_id", args)
        return [records.Decline(*r) for r in rows]

    def add_ledger_entries(self, entries: Sequence[records.LedgerEntryRecord]) -> None:
        try:
            with self._tx() as tx:
                for e in entries:
                    tx.execute(
                        "INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (e.silo_id, e.seq, e.round, e.entry_hash, e.epsilon_after,
                         e.budget_epsilon, e.entry_json, e.received_at_s),
                    )  # fmt: skip
        except sqlite3.IntegrityError:
            raise FailedPrecondition(
                "a ledger entry with that silo and seq is already stored"
            ) from None

    def ledger_entries(self, silo_id: str | None = None) -> list[records.LedgerEntryRecord]:
        where, args = _filters(None, None, silo_id)
        rows = self._rows(f"SELECT * FROM ledger_entries WHERE {where} ORDER BY silo_id, seq", args)
        return [records.LedgerEntryRecord(*r[:6], bytes(r[6]), r[7]) for r in rows]


def _filters(round_: int | None, attempt: int | None, silo_id: str | None) -> tuple[str, tuple]:
    """A WHERE clause over the optional (round, attempt, silo_id) filters."""
    pairs = [("round", round_), ("attempt", attempt), ("silo_id", silo_id)]
    used = [(column, value) for column, value in pairs if value is not None]
    where = " AND ".join(f"{column} = ?" for column, _ in used) or "1"
    return where, tuple(value for _, value in used)
