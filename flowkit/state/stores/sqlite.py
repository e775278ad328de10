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
import logging
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    end_from_data,
    head_from_data,
    medians,
)
from flowkit.state.stores.base import (
    PARAMS,
    CacheEntry,
    Outcome,
    Store,
    check_path,
    create_private,
    is_size,
    is_status,
    is_text,
    is_time,
    is_ttl,
    shown,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

logger = logging.getLogger("flowkit.state")

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

def _is_run_status(value: object) -> bool:
    """null or a run status"""
    return value is None or (type(value) is str and value in RUN_STATUSES)


# What each column read back must hold (SQLite keeps any type in any column):
# a row that fails is reported as damage, naming the file and the row.
_COLUMNS = {
    "cache.key": is_text,
    "cache.name": is_text,
    "cache.created": is_time,
    "cache.ttl": is_ttl,
    "cache.size": is_size,
    "runs.run_id": is_text,
    "outcomes.name": is_text,
    "outcomes.status": is_status,
    "outcomes.version": is_text,
    "outcomes.finished": is_time,
    "history_runs.run_id": is_text,
    "history_runs.dag": is_text,
    "history_runs.started": is_time,
    "history_runs.ended": is_ttl,  # null, or a time
    "history_runs.status": _is_run_status,
    "history_runs.host": is_text,
    "history_runs.pid": is_size,
    "history_runs.token": is_text,
}
_ROW_COLUMNS = tuple(
    f"history_runs.{c}" for c in ("run_id", "dag", "started", "ended", "status", "host", "pid",
                                  "token")
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
        self._graphs: dict[str, Mapping[str, Sequence[str]]] = {}  # by hash: they never change
        self._writable = False  # whether _db was opened to write

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

    def _connect(self, *, write: bool = True) -> sqlite3.Connection:
        """The connection: read-write, or read-only for a reader that may not write
        the database (its own connection would leave -wal and -shm files behind)."""
        if self._db is not None and (self._writable or not write):
            return self._db
        self.close()
        db = None if write or self._may_write() else self._connect_readonly()
        if db is None:
            # Create it ourselves, private: SQLite would use the umask.
            create_private(self.path, kind="state database")
            if not _writable(self.path):  # SQLite would open it read-only
                raise StateError(
                    f"cannot open state database {self.path!r}: it is not writable. "
                    "Check that you may write it.", path=self.path,
                )
            db = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            try:
                self._prepare(db)
            except BaseException:
                db.close()
                raise
            write = True
        self._db, self._writable = db, write
        return db

    def _may_write(self) -> bool:
        try:
            directory = os.path.dirname(os.path.abspath(self.path))
            return _writable(self.path) and _writable(directory)
        except ValueError:  # a NUL byte: reported by the writer's path
            return True

    def _connect_readonly(self) -> sqlite3.Connection | None:
        """A read-only connection to an existing flowkit database, or ``None`` when
        there is none yet (the writer's path then creates it)."""
        check_path(self.path, kind="state database")
        try:
            if os.stat(self.path).st_size == 0:
                return None
        except (OSError, ValueError):
            return None  # missing: reported, or created, by the writer's path
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path))
        # Reading a WAL database needs its shared-memory file; in a directory we
        # may not write, "immutable" reads the file as it is instead.
        for options in ("?mode=ro", "?mode=ro&immutable=1"):
            db = sqlite3.connect(
                uri + options, uri=True, timeout=self.timeout, isolation_level=None,
                check_same_thread=False,
            )
            try:
                app_id = db.execute("PRAGMA application_id").fetchone()[0]
                tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if app_id == 0 and not tables:
                    db.close()
                    return None  # an empty database: made a flowkit one by the writer's path
                self._check_identity(db, app_id)
                return db
            except sqlite3.Error as exc:
                db.close()
                if not isinstance(exc, sqlite3.OperationalError) or "immutable" in options:
                    raise self._error(exc) from exc
            except BaseException:
                db.close()
                raise
        return None  # pragma: no cover - the loop returns or raises

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
            self._check_identity(db, app_id)
            self._use_wal(db)
            db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _use_wal(self, db: sqlite3.Connection) -> None:
        """Put the database in WAL mode (once: the mode is kept in the file).

        While another connection writes to a database not yet in WAL mode (a new
        one, being made by two connections at a time), SQLite refuses the switch
        at once, without the busy wait that ``timeout`` gives every other
        statement. So wait here as that busy wait would, until the switch is made
        (here or by the other connection) or ``timeout`` has passed.
        """
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                db.execute("PRAGMA journal_mode = WAL")
                return  # a file system without WAL keeps the mode it has
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _check_identity(self, db: sqlite3.Connection, app_id: int) -> None:
        """Refuse a database of another application, or of another schema version."""
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
            db = self._connect(write=write)
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
        columns = ("cache.key", "cache.name", "cache.created", "cache.ttl", "cache.size")
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT {', '.join(columns)}, blobs.value FROM cache JOIN blobs "
                "ON blobs.hash = cache.blob WHERE cache.key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        self._check_row(columns, row)
        value, problem = self._load(row[5])
        if problem is not None:
            raise self._damaged(f"the cached value of task {row[1]!r}", problem)
        return CacheEntry(row[0], row[1], row[2], row[3], row[4], value)

    def _check_row(
        self, columns: tuple[str, ...], row: tuple[Any, ...], *, history: bool = False
    ) -> None:
        """Check each cell of ``row`` read from ``columns`` (``"table.column"`` names).

        Raises:
            StateError: naming the file, the column, and the row by its first cell.
        """
        for column, cell in zip(columns, row, strict=False):
            check = _COLUMNS[column]
            if not check(cell):
                damaged = self._damaged_history if history else self._damaged
                raise damaged(
                    f"{column} of the row {shown(row[0])}",
                    f"it is {shown(cell)}, not {check.__doc__}",
                )

    def _damaged(self, what: str, problem: str) -> StateError:
        return StateError(
            f"state database {self.path!r} is damaged: {what} cannot be read ({problem}). "
            "Invalidate the task, or move the file away to start with an empty state.",
            path=self.path,
        )

    def _damaged_history(self, what: str, problem: str) -> StateError:
        return StateError(
            f"state database {self.path!r} holds a damaged run history record: {what} "
            f"cannot be read ({problem}). Clear the state, or move the file away to start "
            "afresh.",
            path=self.path,
        )

    def _load(self, text: object) -> tuple[Any, str | None]:
        """A stored value, or why it cannot be read: ``(value, None)`` or ``(None, problem)``."""
        if type(text) is not str:
            return None, f"it is {shown(text)}, not JSON text"
        try:
            return json.loads(text), None
        except RecursionError:
            return None, "it is nested too deeply"
        except ValueError as exc:
            return None, str(exc)

    def entries(self) -> list[CacheEntry]:
        columns = ("cache.key", "cache.name", "cache.created", "cache.ttl", "cache.size")
        with self._tx(write=False) as db:
            rows = db.execute(
                f"SELECT {', '.join(columns)} FROM cache ORDER BY created, key"
            ).fetchall()
        for row in rows:
            self._check_row(columns, row)
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
        columns = ("outcomes.name", "outcomes.status", "outcomes.version", "outcomes.finished")
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT run_id FROM runs WHERE dag = ? ORDER BY seq DESC LIMIT 1", (dag,)
            ).fetchone()
            if row is None:
                return None
            self._check_row(("runs.run_id",), row)
            run_id = row[0]
            rows = db.execute(
                f"SELECT {', '.join(columns)}, blobs.value FROM outcomes LEFT JOIN blobs "
                "ON blobs.hash = outcomes.blob WHERE outcomes.dag = ? AND outcomes.run_id = ?",
                (dag, run_id),
            ).fetchall()
        outcomes = {}
        for name, status, version, finished, text in rows:
            self._check_row(columns, (name, status, version, finished))
            value, problem = (None, None) if text is None else self._load(text)
            if problem is not None and name != PARAMS:  # that one's value is only shown
                logger.warning(
                    "task %r: its result recorded in %s cannot be read back (%s); it runs "
                    "again", name, self.path, problem,
                )
            readable = text is not None and problem is None
            outcomes[name] = Outcome(dag, run_id, name, status, version, readable, value, finished)
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
            rows = db.execute(
                "SELECT run_id, dag, started, ended, status, host, pid, token FROM history_runs "
                f"{where} ORDER BY seq DESC",
                args,
            ).fetchall()
        for row in rows:
            self._check_row(_ROW_COLUMNS, row, history=True)
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

    def history_durations(self, dag: str, runs: int) -> dict[str, float]:
        with self._tx(write=False) as db:
            if self._version < 2:
                return {}
            rows = db.execute(
                f"SELECT r.run_id, {_TASK_COLUMNS} FROM history_tasks AS t JOIN history_runs AS r "
                "ON r.seq = t.run_seq WHERE t.run_seq IN "
                "(SELECT seq FROM history_runs WHERE dag = ? ORDER BY seq DESC LIMIT ?)",
                (dag, runs),
            ).fetchall()
        return medians(self._task_end(row) for row in rows)

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
        graph = self._graphs.get(digest) if type(digest) is str else None
        if digest is None:
            graph = {}  # a light listing: the graph left out
        elif graph is None:
            found = db.execute("SELECT graph FROM history_graphs WHERE hash = ?", (digest,))
            text = found.fetchone()
            what = f"the graph of run {shown(run_id)}"
            graph = {} if text is None else self._loaded(text[0], what, history=True)
        fields = {
            "run_id": run_id, "dag": dag, "started": started, "params": {}, "graph": graph,
            "version": version, "host": host, "pid": pid, "token": token, "keep": 0,
        }
        if params is not None:
            fields["params"] = self._loaded(
                params, f"the parameters of run {shown(run_id)}", history=True
            )
        try:  # the checks of the journal's history records
            head = head_from_data(fields)
            end = None if status is None else end_from_data(
                {"run_id": run_id, "status": status, "ended": ended}
            )
        except (ValueError, OverflowError) as exc:
            raise self._damaged_history(f"history_runs row {shown(run_id)}", str(exc)) from None
        if type(digest) is str:
            self._graphs[digest] = head.graph
        return HistoryRun(head, tasks, end)

    def _task_end(self, row: tuple[Any, ...]) -> TaskEnd:
        try:  # the checks of the journal's history records
            return checked_task(row)
        except (ValueError, OverflowError) as exc:
            raise self._damaged_history(
                f"history_tasks row {shown(row[1])} of run {shown(row[0])}", str(exc)
            ) from None

    def _loaded(self, text: object, what: str, *, history: bool = False) -> Any:
        value, problem = self._load(text)
        if problem is not None:
            raise (self._damaged_history if history else self._damaged)(what, problem)
        return value

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
    # A blob already there is rewritten only if it differs: damaged on disk.
    db.execute(
        "INSERT INTO blobs VALUES (?1, ?2) ON CONFLICT (hash) DO UPDATE SET value = ?2 "
        "WHERE value IS NOT ?2",
        (digest, text),
    )
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


def _writable(path: str) -> bool:
    """Whether this process may write ``path`` (a file, or in a directory), with its
    effective user where the platform can tell: a setuid program's own rights."""
    if os.access in os.supports_effective_ids:
        return os.access(path, os.W_OK, effective_ids=True)
    return os.access(path, os.W_OK)
