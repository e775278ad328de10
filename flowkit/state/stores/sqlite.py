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
from flowkit.state.stores.base import CacheEntry, Outcome, Store, open_private

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = 1
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
                        for statement in _SCHEMA.split(";"):
                            if statement.strip():
                                db.execute(statement)
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
            if version != SCHEMA_VERSION:
                raise StateError(
                    f"state database {self.path!r} has schema version {version}; this version "
                    f"of flowkit reads {SCHEMA_VERSION}. Upgrade flowkit, or use a new path.",
                    path=self.path,
                )
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
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

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
            db.execute("DELETE FROM cache")
            db.execute("DELETE FROM outcomes")
            db.execute("DELETE FROM runs")
            db.execute("DELETE FROM blobs")
        # Another process using it makes VACUUM fail: the space is reused anyway.
        with self._lock, contextlib.suppress(sqlite3.OperationalError):
            self._connect().execute("VACUUM")

    def end_run(self, dag: str, run_id: str) -> None:
        with self._lock:
            with self._tx(write=True) as db:
                _collect(db)
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


def _collect(db: sqlite3.Connection) -> None:
    """Delete the blobs no cache entry and no outcome refers to."""
    db.execute(
        "DELETE FROM blobs WHERE hash NOT IN (SELECT blob FROM cache) "
        "AND hash NOT IN (SELECT blob FROM outcomes WHERE blob IS NOT NULL)"
    )
