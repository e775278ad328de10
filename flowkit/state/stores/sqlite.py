"""The SQLite store: the standard library's ``sqlite3``, for large states and many processes.

Every write is one transaction, so a crash at any instant leaves the database
as it was before or after the write. The database runs in WAL mode with
``synchronous=NORMAL``: a committed write survives a crash of the process, and
readers never block writers. Many processes may share one database; a writer
waits up to ``timeout`` seconds for another to finish. WAL needs shared memory
between the processes, so keep the file on a local disk (not a network share).

Values are kept once, in a table of blobs addressed by their SHA-256, however
many cache entries and outcomes refer to them; blobs nobody refers to any more
are deleted at the end of each run.

The file is marked with SQLite's ``application_id``, so a database of another
application is recognised and refused rather than modified.

The run history has tables of its own (``history_*``), so listing runs never
reads a result. Graphs are kept once, by hash, however many runs share them.
A database of schema version 1 (before the run history) is read as it is and
upgraded in the first write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from flowkit.exceptions import StateError
from flowkit.state.history import (
    RUN_STATUSES,
    HistoryRun,
    RunEnd,
    RunHead,
    RunRow,
    TaskEnd,
    checked_task,
)
from flowkit.state.stores.base import CacheEntry, Outcome, Store, open_private

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = 2
_READS = (1, 2)  # schema versions this version reads (1: without run history)
_APPLICATION_ID = 0x666B7374  # "fkst": this file is flowkit state

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    ttl REAL,
    size INTEGER NOT NULL,
    blob TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_by_name ON cache (name);
CREATE INDEX IF NOT EXISTS cache_by_blob ON cache (blob);
CREATE TABLE IF NOT EXISTS blobs (
    hash TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dag TEXT NOT NULL,
    run_id TEXT NOT NULL,
    started REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_dag ON runs (dag, seq);
CREATE TABLE IF NOT EXISTS outcomes (
    dag TEXT NOT NULL,
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    version TEXT NOT NULL,
    blob TEXT,
    finished REAL NOT NULL,
    PRIMARY KEY (dag, run_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outcomes_by_name ON outcomes (name);
CREATE INDEX IF NOT EXISTS outcomes_by_blob ON outcomes (blob);
"""

_HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS history_runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL UNIQUE,
    dag TEXT NOT NULL,
    started REAL NOT NULL,
    params TEXT NOT NULL,
    graph TEXT NOT NULL,
    version TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    token TEXT NOT NULL,
    status TEXT,
    ended REAL
);
CREATE INDEX IF NOT EXISTS history_runs_by_dag ON history_runs (dag, seq);
CREATE TABLE IF NOT EXISTS history_graphs (
    hash TEXT PRIMARY KEY,
    graph TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_tasks (
    run_seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    duration REAL,
    started REAL,
    ended REAL,
    cause TEXT,
    reason TEXT,
    error_type TEXT,
    error TEXT,
    traceback TEXT,
    PRIMARY KEY (run_seq, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_tasks_by_name ON history_tasks (name, run_seq);
"""
_RUN_COLUMNS = "seq, run_id, dag, started, params, graph, version, host, pid, token, status, ended"
_TASK_COLUMNS = ", ".join(
    f"t.{c}" for c in (
        "name", "status", "attempts", "duration", "started", "ended", "cause", "reason",
        "error_type", "error", "traceback",
    )
)


class SQLiteStore(Store):
    """State in an SQLite database at ``path`` (created with mode 0600).

    Args:
        path: the database file.
        timeout: seconds to wait for another process's write before giving up
            with :class:`~flowkit.StateError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0):
        self.path = os.fspath(path)
        self.location = self.path
        self.timeout = timeout
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._version = SCHEMA_VERSION
        self._graphs: dict[str, dict[str, list[str]]] = {}  # by hash: they never change

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # --- connection ---------------------------------------------------------------

    def _error(self, exc: BaseException) -> StateError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            advice = (
                f"another process held it for more than {self.timeout}s; "
                "retry, or raise the timeout"
            )
        elif isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text
        ):
            advice = (
                "it is not a flowkit state database, or it is damaged; pass another path, "
                "or move it away to start with an empty state"
            )
        else:
            advice = "check the file and its directory"
        return StateError(f"state database {self.path!r}: {text}: {advice}.", path=self.path)

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        # Create it ourselves, private: SQLite would use the umask.
        os.close(open_private(self.path, os.O_RDWR, shown=self.path, kind="state database"))
        db = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._prepare(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def _prepare(self, db: sqlite3.Connection) -> None:
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            if app_id != _APPLICATION_ID:
                db.execute("BEGIN IMMEDIATE")  # one process creates the schema
                try:
                    app_id = db.execute("PRAGMA application_id").fetchone()[0]
                    if app_id == 0:
                        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                            raise self._foreign()
                        # executescript() would commit first: run each statement.
                        _execute_script(db, _SCHEMA + _HISTORY_SCHEMA)
                        db.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
                        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                        app_id = _APPLICATION_ID
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                if app_id != _APPLICATION_ID:
                    raise self._foreign()
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in _READS:
                raise StateError(
                    f"state database {self.path!r} has schema version {version}; this version "
                    f"of flowkit reads {_READS[0]} to {_READS[-1]}. Upgrade flowkit, or use a "
                    "new path.",
                    path=self.path,
                )
            self._version = version
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _foreign(self) -> StateError:
        return StateError(
            f"{self.path!r} is an SQLite database of another application, not flowkit "
            "state. Pass the path of a flowkit state file, or a new path.",
            path=self.path,
        )

    @contextlib.contextmanager
    def _tx(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction; ``write`` takes the write lock at once (no upgrade deadlocks)."""
        with self._lock:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    if write and self._version < SCHEMA_VERSION:
                        self._upgrade(db)
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    def _upgrade(self, db: sqlite3.Connection) -> None:
        """Bring a version 1 database to the current schema (inside a write transaction)."""
        if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            _execute_script(db, _HISTORY_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._version = SCHEMA_VERSION

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # --- Store --------------------------------------------------------------------

    def get_entry(self, key: str) -> CacheEntry | None:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT c.key, c.name, c.created, c.ttl, c.size, b.value FROM cache AS c "
                "JOIN blobs AS b ON b.hash = c.blob WHERE c.key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        return CacheEntry(row[0], row[1], row[2], row[3], row[4], self._load(row[5]))

    def _load(self, text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise StateError(
                f"state database {self.path!r} holds a damaged value: {exc}. Invalidate "
                "the task, or move the file away to start with an empty state.",
                path=self.path,
            ) from None

    def entries(self) -> list[CacheEntry]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT key, name, created, ttl, size FROM cache ORDER BY created, key"
            ).fetchall()
        return [CacheEntry(row[0], row[1], row[2], row[3], row[4], None) for row in rows]

    def start_run(
        self, dag: str, run_id: str, started: float, carried: Iterable[Outcome] = ()
    ) -> None:
        with self._tx(write=True) as db:
            db.execute("DELETE FROM outcomes WHERE dag = ?", (dag,))
            db.execute("DELETE FROM runs WHERE dag = ?", (dag,))
            db.execute(
                "INSERT INTO runs (dag, run_id, started) VALUES (?, ?, ?)", (dag, run_id, started)
            )
            for outcome in carried:
                self._insert_outcome(db, outcome._replace(dag=dag, run_id=run_id), check=False)

    def record(self, outcome: Outcome, entry: CacheEntry | None = None) -> None:
        with self._tx(write=True) as db:
            self._record(db, outcome, entry)

    def record_task(self, outcome: Outcome | None, entry: CacheEntry | None, task: TaskEnd) -> None:
        with self._tx(write=True) as db:
            if outcome is not None:
                self._record(db, outcome, entry)
            _insert_task(db, task)

    def _record(self, db: sqlite3.Connection, outcome: Outcome, entry: CacheEntry | None) -> None:
        if entry is not None:
            text, blob = _blob(db, entry.value)
            db.execute(
                "INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?, ?, ?)",
                (entry.key, entry.name, entry.created, entry.ttl, len(text.encode()), blob),
            )
        self._insert_outcome(db, outcome, check=True)

    @staticmethod
    def _insert_outcome(db: sqlite3.Connection, o: Outcome, *, check: bool) -> None:
        blob = _blob(db, o.value)[1] if o.has_value else None
        row = (o.dag, o.run_id, o.name, o.status, o.version, blob, o.finished)
        if not check:
            db.execute("INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            return
        # Only the DAG's latest run keeps outcomes: a run superseded by a newer
        # one (in another process) records nothing more.
        db.execute(
            "INSERT OR REPLACE INTO outcomes SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS "
            "(SELECT 1 FROM runs WHERE dag = ? AND run_id = ?)",
            (*row, o.dag, o.run_id),
        )

    def latest_run(self, dag: str) -> tuple[str, Mapping[str, Outcome]] | None:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT run_id FROM runs WHERE dag = ? ORDER BY seq DESC LIMIT 1", (dag,)
            ).fetchone()
            if row is None:
                return None
            run_id = row[0]
            rows = db.execute(
                "SELECT o.name, o.status, o.version, b.value, o.finished FROM outcomes AS o "
                "LEFT JOIN blobs AS b ON b.hash = o.blob WHERE o.dag = ? AND o.run_id = ?",
                (dag, run_id),
            ).fetchall()
        outcomes = {
            name: Outcome(
                dag, run_id, name, status, version, value is not None,
                None if value is None else self._load(value), finished,
            )
            for name, status, version, value, finished in rows
        }
        return run_id, outcomes

    def invalidate(self, name: str | None = None) -> int:
        with self._tx(write=True) as db:
            if name is None:
                dropped = db.execute("DELETE FROM cache").rowcount
                db.execute("DELETE FROM outcomes")
            else:
                # The task's own records and its items' ("m[3]" of a mapped task "m").
                mine = (
                    "name = ?1 OR (substr(name, 1, length(?1) + 1) = ?1 || '[' "
                    "AND substr(name, -1) = ']')"
                )
                dropped = db.execute(f"DELETE FROM cache WHERE {mine}", (name,)).rowcount
                db.execute(f"DELETE FROM outcomes WHERE {mine}", (name,))
            _collect(db)
        return int(dropped)

    def clear(self) -> None:
        with self._tx(write=True) as db:
            for table in ("cache", "outcomes", "runs", "blobs", *_HISTORY_TABLES):
                db.execute(f"DELETE FROM {table}")
        # Another process using it makes VACUUM fail: the space is reused anyway.
        with self._lock, contextlib.suppress(sqlite3.OperationalError):
            self._connect().execute("VACUUM")

    # --- run history ----------------------------------------------------------------

    def history_start(self, head: RunHead, tasks: Iterable[TaskEnd] = ()) -> None:
        graph = json.dumps(head.graph, separators=(",", ":"))
        digest = hashlib.sha256(graph.encode()).hexdigest()[:40]
        params = json.dumps(head.params, separators=(",", ":"))
        with self._tx(write=True) as db:
            db.execute("INSERT OR IGNORE INTO history_graphs VALUES (?, ?)", (digest, graph))
            db.execute(
                "INSERT OR IGNORE INTO history_runs (run_id, dag, started, params, graph, version,"
                " host, pid, token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (head.run_id, head.dag, head.started, params, digest, head.version, head.host,
                 head.pid, head.token),
            )
            for task in tasks:
                _insert_task(db, task)
            # Retention: the runs of this DAG beyond the newest ``keep`` go.
            old = (
                "SELECT seq FROM history_runs WHERE dag = ?1 ORDER BY seq DESC "
                "LIMIT -1 OFFSET ?2"
            )
            db.execute(f"DELETE FROM history_tasks WHERE run_seq IN ({old})", (head.dag, head.keep))
            db.execute(f"DELETE FROM history_runs WHERE seq IN ({old})", (head.dag, head.keep))

    def history_task(self, task: TaskEnd) -> None:
        with self._tx(write=True) as db:
            _insert_task(db, task)

    def history_end(self, end: RunEnd) -> None:
        with self._tx(write=True) as db:
            db.execute(
                "UPDATE history_runs SET status = ?, ended = ? WHERE run_id = ?",
                (end.status, end.ended, end.run_id),
            )

    def history_runs(
        self, dag: str | None = None, limit: int | None = None, *, tasks: bool = True
    ) -> list[HistoryRun]:
        where, args = ("WHERE dag = ?", [dag]) if dag is not None else ("", [])
        # A quick listing (no tasks) leaves out the graph too.
        columns = _RUN_COLUMNS if tasks else _RUN_COLUMNS.replace("graph", "NULL")
        runs = f"SELECT {columns} FROM history_runs {where} ORDER BY seq DESC LIMIT ?"
        with self._tx(write=False) as db:
            if self._version < 2:
                return []
            rows = db.execute(runs, (*args, -1 if limit is None else limit)).fetchall()
            if not tasks:
                return [self._run(db, row, []) for row in rows]
            found: dict[int, list[TaskEnd]] = {row[0]: [] for row in rows}
            if rows:
                for row in db.execute(
                    f"SELECT run_seq, r.run_id, {_TASK_COLUMNS} FROM history_tasks AS t "
                    f"JOIN ({runs}) AS r ON r.seq = t.run_seq",
                    (*args, -1 if limit is None else limit),
                ):
                    found[row[0]].append(self._task_end(row[1:]))
            return [self._run(db, row, found[row[0]]) for row in rows]

    def history_rows(self, dag: str | None = None) -> list[RunRow]:
        where, args = ("WHERE dag = ?", (dag,)) if dag is not None else ("", ())
        with self._tx(write=False) as db:
            if self._version < 2:
                return []
            rows: list[RunRow] = db.execute(
                "SELECT run_id, dag, started, ended, status, host, pid, token FROM history_runs "
                f"{where} ORDER BY seq DESC",
                args,
            ).fetchall()
        for row in rows:
            if not (isinstance(row[2], float | int) and (row[3] is None or isinstance(
                    row[3], float | int)) and (row[4] is None or row[4] in RUN_STATUSES)):
                raise self._damaged_history(ValueError(f"a run of unexpected types: {row!r:.200}"))
        return rows

    def history_run(self, run_id: str) -> HistoryRun | None:
        with self._tx(write=False) as db:
            if self._version < 2:
                return None
            row = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM history_runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                return None
            tasks = [
                self._task_end((run_id, *task))
                for task in db.execute(
                    f"SELECT {_TASK_COLUMNS} FROM history_tasks AS t WHERE run_seq = ?", (row[0],)
                )
            ]
            return self._run(db, row, tasks)

    def history_tasks(self, dag: str | None, name: str | None) -> list[TaskEnd]:
        conditions = [c for c, v in (("r.dag = ?", dag), ("t.name = ?", name)) if v is not None]
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        with self._tx(write=False) as db:
            if self._version < 2:
                return []
            rows = db.execute(
                f"SELECT r.run_id, {_TASK_COLUMNS} FROM history_tasks AS t JOIN history_runs AS r "
                f"ON r.seq = t.run_seq {where} ORDER BY t.run_seq DESC",
                [v for v in (dag, name) if v is not None],
            ).fetchall()
        return [self._task_end(row) for row in rows]

    def _run(
        self, db: sqlite3.Connection, row: tuple[Any, ...], tasks: list[TaskEnd]
    ) -> HistoryRun:
        _, run_id, dag, started, params, digest, version, host, pid, token, status, ended = row
        if not (
            isinstance(started, float | int) and type(pid) is int
            and all(isinstance(v, str) for v in (run_id, dag, version, host, token))
            and (status is None or (status in RUN_STATUSES and isinstance(ended, float | int)))
        ):
            raise self._damaged_history(ValueError(f"a run of unexpected types: {row!r:.200}"))
        graph = self._graphs.get(digest) if digest is not None else {}
        if graph is None:
            found = db.execute("SELECT graph FROM history_graphs WHERE hash = ?", (digest,))
            text = found.fetchone()
            graph = self._graphs[digest] = self._load(text[0]) if text is not None else {}
        head = RunHead(
            run_id, dag, started, {} if params is None else self._load(params), graph, version,
            host, pid, token, 0,
        )
        end = None if status is None else RunEnd(run_id, status, ended)
        return HistoryRun(head, tasks, end)

    def _task_end(self, row: tuple[Any, ...]) -> TaskEnd:
        try:
            return checked_task(row)
        except ValueError as exc:
            raise self._damaged_history(exc) from None

    def _damaged_history(self, exc: ValueError) -> StateError:
        return StateError(
            f"state database {self.path!r} holds a damaged run history record ({exc}). "
            "Clear the state, or move the file away to start afresh.",
            path=self.path,
        )

    def end_run(self, dag: str, run_id: str) -> None:
        with self._lock:
            with self._tx(write=True) as db:
                _collect(db)
                db.execute(
                    "DELETE FROM history_graphs WHERE hash NOT IN (SELECT graph FROM history_runs)"
                )
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):  # a busy reader elsewhere: later
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.close()


def _blob(db: sqlite3.Connection, value: Any) -> tuple[str, str]:
    """Store ``value`` once; return its JSON text and its hash."""
    text = json.dumps(value, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:40]
    db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (digest, text))
    return text, digest


_HISTORY_TABLES = ("history_runs", "history_graphs", "history_tasks")


def _execute_script(db: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` in the current transaction (executescript commits)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _insert_task(db: sqlite3.Connection, t: TaskEnd) -> None:
    """Add a task's record to its run; nothing if the run was forgotten."""
    db.execute(
        "INSERT OR REPLACE INTO history_tasks SELECT seq, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
        "FROM history_runs WHERE run_id = ?",
        (t.name, t.status, t.attempts, t.duration, t.started, t.ended, t.cause, t.reason,
         t.error_type, t.error, t.traceback, t.run_id),
    )


def _collect(db: sqlite3.Connection) -> None:
    """Delete the blobs no cache entry and no outcome refers to."""
    db.execute(
        "DELETE FROM blobs WHERE hash NOT IN (SELECT blob FROM cache) "
        "AND hash NOT IN (SELECT blob FROM outcomes WHERE blob IS NOT NULL)"
    )
