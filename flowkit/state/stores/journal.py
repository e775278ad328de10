"""The JSON store: an append-only journal of JSON lines, compacted now and then.

The file starts with a header line (``{"flowkit": "state", "format": 2}``) so
a foreign file is recognised, followed by one JSON object per line: a run
started, a task's outcome, a cache entry, an invalidation, and the run history
(``hs``/``ht``/``he``: a run started, a task ended, a run ended; see
``flowkit.state.history``). Later lines win. Format 1 files (before the run
history) are read as they are and rewritten as format 2 on the first write.

Why it is safe and fast:

- **One line per outcome.** Recording a task appends one line with a single
  ``write`` call — no buffering in the process, so the line survives a crash
  of the process the moment the call returns (not a power loss: the file is
  ``fsync``-ed at the end of each run and at each compaction). Recording N
  outcomes costs O(N).
- **A torn last line is not corruption.** A crash can leave the last line
  incomplete; readers ignore it and the next writer cuts it off.
- **Compaction** rewrites only the live records into a temporary file, syncs
  it, and renames it over the journal (``os.replace`` is atomic), so a crash at
  any instant leaves either the old file or the new one. It happens at the end
  of a run, and only once the journal holds more than twice the live records.
- **Several processes** may share one file: every access holds an ``flock`` on
  the file (shared to read, exclusive to write). A compaction elsewhere renames
  a new file over the old one, which is then left without a name: a process
  that finds its open file so, reopens the path. Each process keeps an index
  of the file and reads only what others appended since its last look.
- **Reading the history never reads results.** It goes through its own
  read-only view of the file, which parses only the history lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flowkit.exceptions import StateError
from flowkit.state.history import (
    NO_DETAILS,
    HistoryIndex,
    HistoryRun,
    RunEnd,
    RunHead,
    RunRow,
    TaskEnd,
    end_to_data,
    head_to_data,
    task_to_data,
)
from flowkit.state.stores.base import (
    CacheEntry,
    Outcome,
    Store,
    belongs_to,
    is_anything,
    is_status,
    is_text,
    is_time,
    is_ttl,
    open_state,
    shown,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process at a time
    fcntl = None  # type: ignore[assignment]

__all__ = ["FORMAT", "JSONStore"]

FORMAT = 2
_READS = (1, 2)  # formats this version reads (1: without run history)
_HEADER = json.dumps({"flowkit": "state", "format": FORMAT}) + "\n"
_HEADER_BYTES = _HEADER.encode()
_MIN_DEAD = 256  # dead lines tolerated before a compaction is worth its fsync
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)  # absent on Windows

_TEMP_PART = re.compile(r"[a-z0-9_]{8}")  # what tempfile.mkstemp puts in a name
logger = logging.getLogger("flowkit.state")


def _is_name(value: object) -> bool:
    """a task name, or null for every task"""
    return value is None or type(value) is str


Check = Callable[[object], bool]

# Each kind of record ("t") and its fields: field -> (check, required). Fields
# not listed are ignored (a later writer of this format may add some).
_FIELDS: dict[str, dict[str, tuple[Check, bool]]] = {
    "o": {  # a task's outcome in a run; "v" its value, or "ref" the key of an entry holding it
        "dag": (is_text, True), "run": (is_text, True), "n": (is_text, True),
        "s": (is_status, True), "ver": (is_text, True), "at": (is_time, True),
        "v": (is_anything, False), "ref": (is_text, False),
    },
    "c": {  # a cache entry
        "k": (is_text, True), "n": (is_text, True), "at": (is_time, True),
        "ttl": (is_ttl, True), "v": (is_anything, True),
    },
    "run": {"dag": (is_text, True), "run": (is_text, True), "at": (is_time, True)},
    "inv": {"n": (_is_name, True)},  # an invalidation
    # The run history: its records are checked by flowkit.state.history as they
    # are applied (a ValueError there is reported like a failed check here).
    "hs": {}, "ht": {}, "he": {},
}


class JSONStore(Store):
    """State in one JSON-lines file at ``path`` (created with mode 0600)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        self.location = self.path
        # Compaction renames a new file over the old one: through a symlink that
        # would replace the link itself, so work on the file it points to.
        self._file = os.path.realpath(self.path) if "\0" not in self.path else self.path
        self._lock = threading.RLock()
        self._fd: int | None = None
        self._writable = False  # whether _fd was opened to write
        self._swept = False  # whether abandoned compaction files were looked for
        self._reset_index(None)
        self._reader = _HistoryReader(self)

    def __repr__(self) -> str:
        return f"JSONStore({self.path!r})"

    # --- the index of the file --------------------------------------------------

    def _reset_index(self, ident: tuple[int, int] | None) -> None:
        self._ident = ident  # (st_dev, st_ino) of the file the index reflects
        self._offset = 0  # bytes of it applied to the index
        self._lines = 0  # records applied (live or dead)
        self._entries: dict[str, CacheEntry] = {}
        self._runs: dict[str, tuple[str, dict[str, Outcome]]] = {}
        self._dirty = False  # written since the last fsync
        self._size = 0  # the file's size at the last look
        self._history = HistoryIndex()
        self._old_format = False  # a format 1 file: rewritten before the next write

    def _live(self) -> int:
        runs = sum(len(o) + 1 for _, o in self._runs.values())
        return len(self._entries) + runs + self._history.records()

    def _apply(self, rec: dict[str, Any], size: int, unreadable: bool = False) -> None:
        """Apply one record read from the file (checked by ``_read_record``) or just
        written to the index. ``unreadable``: its value holds an int too long to read."""
        kind = rec["t"]
        if kind == "o":
            value, has_value, key = rec.get("v"), "v" in rec and not unreadable, None
            if "ref" in rec:  # the value is that of a cache entry written with it
                key = rec["ref"]
                entry = self._entries.get(key)
                has_value, value = entry is not None, entry and entry.value
            self._put_outcome(Outcome(
                rec["dag"], rec["run"], rec["n"], rec["s"], rec["ver"],
                has_value, value if has_value else None, rec["at"], key,
            ))
        elif kind == "c":
            if unreadable:
                self._lines += 1  # dead: dropped at the next compaction
                logger.warning(
                    "task %r: its cached result in %s cannot be read back: it holds an int "
                    "with more digits than this process converts (see "
                    "sys.set_int_max_str_digits); the task runs again",
                    rec["n"], self.path,
                )
            else:
                self._put_entry(
                    CacheEntry(rec["k"], rec["n"], rec["at"], rec["ttl"], size, rec["v"])
                )
        elif kind == "run":
            self._runs[rec["dag"]] = (rec["run"], {})
            self._lines += 1
        elif kind in _HISTORY_KINDS:
            self._history.apply(rec)  # checks the fields: ValueError if malformed
            self._lines += 1
        else:  # "inv"
            name = rec["n"]
            for key in [k for k, e in self._entries.items() if belongs_to(e.name, name)]:
                del self._entries[key]
            for _, outcomes in self._runs.values():
                for gone in [n for n in outcomes if belongs_to(n, name)]:
                    del outcomes[gone]
            self._lines += 1

    def _read_record(self, raw: bytes, line_no: int) -> tuple[dict[str, Any], bool]:
        """Parse and check one line: the record, and whether its value is unreadable.

        Raises:
            StateError: the line is not a record this format holds, naming the line.
        """
        try:
            rec, unreadable = _parse(raw)
            if type(rec) is not dict:
                raise ValueError(f"a record is a JSON object, not {shown(rec)}")
            kind = rec.get("t")
            fields = _FIELDS.get(kind) if type(kind) is str else None
            if fields is None:
                raise ValueError(f"unknown record type {shown(kind)}")
            for field, (check, required) in fields.items():
                if field in rec:
                    if not check(rec[field]):
                        raise ValueError(
                            f"field {field!r} of a {rec['t']!r} record is "
                            f"{shown(rec[field])}, not {check.__doc__}"
                        )
                elif required:
                    raise ValueError(f"a {rec['t']!r} record without its field {field!r}")
        except (ValueError, RecursionError) as exc:
            problem = "a value nested too deeply" if isinstance(exc, RecursionError) else exc
            raise self._corrupt(line_no, str(problem)) from None
        return rec, unreadable

    def _put_outcome(self, outcome: Outcome) -> None:
        run = self._runs.get(outcome.dag)
        if run is not None and run[0] == outcome.run_id:  # else: a superseded run
            run[1][outcome.name] = outcome
        self._lines += 1

    def _put_entry(self, entry: CacheEntry) -> None:
        self._entries.pop(entry.key, None)  # re-insert: newest last
        self._entries[entry.key] = entry
        self._lines += 1

    def _corrupt(self, line_no: int, problem: str) -> StateError:
        return StateError(
            f"state file {self.path!r} is corrupt at line {line_no}: {problem}. "
            "Restore it from a backup, or move it away to start with an empty state "
            "(cached results and resume information are then lost).",
            path=self.path,
        )

    def _foreign(self) -> StateError:
        return StateError(
            f"{self.path!r} is not a flowkit state file (its first line is not a flowkit "
            "header). Pass the path of a flowkit state file, or a new path.",
            path=self.path,
        )

    def _refresh(self, size: int) -> None:
        """Apply what was appended since the last look (called under the file lock)."""
        self._size = size
        if size < self._offset:  # rewritten in place: should not happen, but be safe
            self._reset_index(self._ident)
            self._size = size
        if size == self._offset:
            return
        assert self._fd is not None
        os.lseek(self._fd, self._offset, os.SEEK_SET)
        data = _read_exactly(self._fd, size - self._offset)
        end = data.rfind(b"\n") + 1  # beyond it: a line torn by a crash, ignored
        start = 0
        if self._offset == 0:
            start = self._check_start(data)
            if end == 0:
                return  # only a torn header: the file is as good as new
        line_no = self._lines + 2  # the header is line 1
        for raw in data[start:end].split(b"\n")[:-1]:
            rec, unreadable = self._read_record(raw, line_no)
            try:
                self._apply(rec, len(raw) + 1, unreadable)
            except _MALFORMED as exc:  # from the checks of a history record
                raise self._corrupt(line_no, str(exc)) from None
            line_no += 1
        self._offset += end

    def _check_start(self, data: bytes) -> int:
        """Check that ``data``, the start of the file, starts with a flowkit header
        (or a part of one, torn by a crash); return the offset of the first record."""
        start = data.find(b"\n") + 1
        if start == 0:
            if _HEADER_BYTES.startswith(data):
                return 0
            raise self._foreign()
        self._check_header(data[:start])
        return start

    def _check_header(self, head: bytes) -> None:
        self._old_format = self._format_of(head) != FORMAT

    def _format_of(self, head: bytes) -> int:
        """The format of a file whose first line is ``head``; StateError if foreign or newer."""
        try:
            header = json.loads(head)
        except ValueError:
            raise self._foreign() from None
        if not isinstance(header, dict) or header.get("flowkit") != "state":
            raise self._foreign()
        version = header.get("format")
        if version not in _READS or type(version) is not int:
            raise StateError(
                f"state file {self.path!r} has format {version!r}; this version of "
                f"flowkit reads formats {_READS[0]} to {_READS[-1]}. Upgrade flowkit, "
                "or use a new path.",
                path=self.path,
            )
        return int(version)

    # --- the file and its lock -----------------------------------------------------

    def _open(self, *, write: bool) -> int:
        """The open file: read-write for writers; read-only for readers, so that a
        file one may only read can still be read (a missing one is created, private)."""
        if self._fd is not None and (self._writable or not write):
            return self._fd
        self.close()
        fd = None if write else open_state(
            self._file, write=False, shown=self.path, kind="state file"
        )
        if fd is None:
            fd, write = open_state(self._file, write=True, shown=self.path, kind="state file"), True
        assert fd is not None
        self._fd, self._writable = fd, write
        return fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._reader.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # type: ignore[arg-type]
        if getattr(self, "_reader", None) is not None:
            with contextlib.suppress(OSError):
                self._reader.close()

    def _acquire(self, *, exclusive: bool, index: bool = True) -> int:
        """Take the file lock on the file currently at ``path`` and bring the index up to date.

        Pair with :meth:`_release`. (Explicit calls rather than a context manager:
        this runs once per recorded task.) ``exclusive`` is for writers. Without
        ``index`` only the header is checked (to clear a damaged file).
        """
        self._lock.acquire()
        try:
            while True:
                fd = self._open(write=exclusive)
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                fst = os.fstat(fd)
                # A compaction elsewhere renames a new file over this one, which
                # then has no name left: reopen the path to find the new file.
                if fst.st_nlink:
                    break
                self.close()
            ident = (fst.st_dev, fst.st_ino)
            if ident != self._ident or not index:
                self._reset_index(ident)
            if index:
                self._refresh(fst.st_size)
            else:
                os.lseek(fd, 0, os.SEEK_SET)
                self._check_start(os.read(fd, 4096))
            if exclusive and not self._swept:
                self._sweep()
        except BaseException:
            self._release()
            raise
        return fd

    def _release(self) -> None:
        try:
            if fcntl is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool, index: bool = True) -> Iterator[int]:
        fd = self._acquire(exclusive=exclusive, index=index)
        try:
            yield fd
        finally:
            self._release()

    def _append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` as lines and apply them to the index."""
        with self._locked(exclusive=True) as fd:
            self._append_records(fd, records)

    def _append_records(self, fd: int, records: list[dict[str, Any]]) -> None:
        lines = [_line(r) for r in records]
        self._append_locked(fd, lines)
        for rec, line in zip(records, lines, strict=True):
            self._apply(rec, len(line))

    def _append_locked(self, fd: int, lines: list[bytes]) -> None:
        """Write ``lines`` with one ``write`` call (under the exclusive file lock)."""
        if self._old_format:
            self._rewrite()  # upgrade the file first: its header says what it holds
            assert self._fd is not None
            fd = self._fd
        prefix = b""
        if self._offset == 0:
            prefix = _HEADER_BYTES  # a new file (or only a torn header)
        if self._size != self._offset:
            os.ftruncate(fd, self._offset)  # cut off a line torn by a crash
        data = prefix + b"".join(lines)
        self._write_all(fd, data)
        self._offset += len(data)
        self._size = self._offset
        self._dirty = True

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._offset)  # no half line left behind
            raise StateError(
                f"cannot write state file {self.path!r}: {exc.strerror or exc}", path=self.path
            ) from exc

    # --- Store --------------------------------------------------------------------

    def get_entry(self, key: str) -> CacheEntry | None:
        self._acquire(exclusive=False)
        try:
            return self._entries.get(key)
        finally:
            self._release()

    def entries(self) -> list[CacheEntry]:
        with self._locked(exclusive=False):
            return [e._replace(value=None) for e in self._entries.values()]

    def start_run(
        self, dag: str, run_id: str, started: float, carried: Iterable[Outcome] = ()
    ) -> None:
        carried = [o._replace(dag=dag, run_id=run_id) for o in carried]
        with self._locked(exclusive=True) as fd:
            lines = [_line({"t": "run", "dag": dag, "run": run_id, "at": started})]
            lines.extend(self._outcome_line(o) for o in carried)
            self._append_locked(fd, lines)
            self._runs[dag] = (run_id, {})
            self._lines += 1
            for outcome in carried:
                self._put_outcome(outcome)

    def record(self, outcome: Outcome, entry: CacheEntry | None = None) -> None:
        self._record(outcome, entry, None)

    def record_task(self, outcome: Outcome | None, entry: CacheEntry | None, task: TaskEnd) -> None:
        if outcome is None:
            self.history_task(task)
        else:
            self._record(outcome, entry, task)

    def _record(self, outcome: Outcome, entry: CacheEntry | None, task: TaskEnd | None) -> None:
        """Append an outcome, its cache entry and its history record with one write."""
        fd = self._acquire(exclusive=True)
        try:
            lines = [self._outcome_line(outcome, entry)]
            if entry is not None:
                lines.insert(0, _line(_entry_record(entry)))
            if task is not None:
                lines.append(_task_line(task))
            self._append_locked(fd, lines)
            if entry is not None:
                self._put_entry(entry._replace(size=len(lines[0])))
            self._put_outcome(outcome)
            if task is not None:
                self._history.task(task)
                self._lines += 1
        finally:
            self._release()

    def history_start(self, head: RunHead, tasks: Iterable[TaskEnd] = ()) -> None:
        self._append([head_to_data(head), *(task_to_data(t) for t in tasks)])

    def history_task(self, task: TaskEnd) -> None:
        self._append([task_to_data(task)])

    def history_end(self, end: RunEnd) -> None:
        self._append([end_to_data(end)])

    def history_runs(
        self, dag: str | None = None, limit: int | None = None, *, tasks: bool = True
    ) -> list[HistoryRun]:
        with self._lock:
            return self._reader.index().runs(dag, limit, tasks=tasks)

    def history_run(self, run_id: str) -> HistoryRun | None:
        with self._lock:
            return self._reader.index().run(run_id)

    def history_rows(self, dag: str | None = None) -> list[RunRow]:
        with self._lock:
            return self._reader.index().rows(dag)

    def history_tasks(self, dag: str | None, name: str | None) -> list[TaskEnd]:
        with self._lock:
            return self._reader.index().task_ends(dag, name)

    def history_durations(self, dag: str, runs: int) -> dict[str, float]:
        with self._lock:
            return self._reader.index().durations(dag, runs)

    def latest_run(self, dag: str) -> tuple[str, Mapping[str, Outcome]] | None:
        with self._locked(exclusive=False):
            run = self._runs.get(dag)
            return None if run is None else (run[0], dict(run[1]))

    def invalidate(self, name: str | None = None) -> int:
        with self._lock:
            with self._locked(exclusive=True) as fd:
                dropped = sum(1 for e in self._entries.values() if belongs_to(e.name, name))
                self._append_records(fd, [{"t": "inv", "n": name}])
            self._maybe_compact()
            return dropped

    def clear(self) -> None:
        # Only the header is checked: a damaged state file can be cleared too.
        with self._locked(exclusive=True, index=False):
            self._rewrite()

    def end_run(self, dag: str, run_id: str) -> None:
        with self._lock:
            if self._fd is not None and self._dirty:
                os.fsync(self._fd)
                self._dirty = False
            self._maybe_compact()
            self.close()

    def _outcome_line(self, o: Outcome, entry: CacheEntry | None = None) -> bytes:
        """The journal line of an outcome, built by hand: this runs once per task."""
        head = (
            f'{{"t":"o","dag":{_text(o.dag)},"run":{_text(o.run_id)},"n":{_text(o.name)},'
            f'"s":{_text(o.status)},"ver":{_text(o.version)},"at":{_number(o.finished)}'
        )
        if not o.has_value:
            return (head + "}\n").encode()
        if entry is None and o.key is not None:
            entry = self._entries.get(o.key)
        # Refer to the cache entry rather than store the value twice, when the
        # entry holds this very value (not one written there later).
        if entry is not None and entry.value is o.value:
            return (f'{head},"ref":{_text(entry.key)}}}\n').encode()
        return (f'{head},"v":{_json(o.value)}}}\n').encode()

    # --- compaction -----------------------------------------------------------------

    def _maybe_compact(self) -> None:
        with self._locked(exclusive=True):
            if self._lines > 2 * self._live() + _MIN_DEAD:
                self._rewrite()

    def _rewrite(self) -> None:
        """Replace the file by one holding only the live records (under the exclusive lock)."""
        lines = [_line(_entry_record(e)) for e in self._entries.values()]
        for dag, (run_id, outcomes) in self._runs.items():
            lines.append(_line({"t": "run", "dag": dag, "run": run_id, "at": 0.0}))
            lines.extend(self._outcome_line(o) for o in outcomes.values())
        lines.extend(_line(rec) for rec in self._history.dump())
        data = _HEADER_BYTES + b"".join(lines)
        directory = os.path.dirname(os.path.abspath(self._file))
        new_fd = None
        try:
            fd, temp = tempfile.mkstemp(dir=directory, prefix=self._temp_prefix(), suffix=".tmp")
        except OSError as exc:
            raise self._unwritable(exc) from exc
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            # Lock the new file before it takes the name, so that nobody can
            # append to it (or compact it) between the rename and our lock.
            new_fd = os.open(temp, os.O_RDWR | os.O_APPEND | _CLOEXEC)
            if fcntl is not None:
                fcntl.flock(new_fd, fcntl.LOCK_EX)
            self._check_still_ours()
            os.replace(temp, self._file)
        except BaseException as exc:
            if new_fd is not None:
                os.close(new_fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            if isinstance(exc, OSError):
                raise self._unwritable(exc) from exc
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        # Our lock is on the old file, which others now find replaced. Lock the
        # new one, then close the old one (releasing its lock); the index stays
        # valid for the new file, plus whatever another process appended to it
        # in between.
        old_fd = self._fd
        self._fd = new_fd
        if old_fd is not None:
            os.close(old_fd)
        st = os.fstat(new_fd)
        self._ident = (st.st_dev, st.st_ino)
        self._offset = len(data)
        self._lines = len(lines)
        self._dirty = False
        self._old_format = False
        self._refresh(st.st_size)

    def _check_still_ours(self) -> None:
        """Refuse to rename over the path unless it is still the file we hold locked
        (a symlink retargeted, or a file put there by something else, is not ours)."""
        assert self._fd is not None
        try:
            now = os.stat(self._file)
        except OSError:
            now = None
        held = os.fstat(self._fd)
        if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            raise StateError(
                f"state file {self.path!r} was replaced by something else while flowkit "
                "held it; flowkit leaves it alone. Check what else writes to this path.",
                path=self.path,
            )

    def _temp_prefix(self) -> str:
        """Compaction files of this state file: ``.<name>.compacting-XXXXXXXX.tmp``."""
        return f".{os.path.basename(self._file)}.compacting-"

    def _sweep(self) -> None:
        """Remove compaction files a killed process left behind (under the exclusive lock).

        They are provably abandoned: compacting this file takes the exclusive lock
        we hold now, and a compaction that completed renamed its file away.
        """
        self._swept = True
        directory = os.path.dirname(os.path.abspath(self._file))
        prefix = self._temp_prefix()
        try:
            names = os.listdir(directory)
        except OSError:  # e.g. a directory we may not list: nothing to sweep
            return
        for name in names:
            if (
                name.startswith(prefix)
                and name.endswith(".tmp")
                and _TEMP_PART.fullmatch(name[len(prefix) : -4])
            ):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))

    def _unwritable(self, exc: OSError) -> StateError:
        return StateError(
            f"cannot rewrite state file {self.path!r}: {exc.strerror or exc}. flowkit "
            "compacts the file through a new file in the same directory: make that "
            "directory writable.",
            path=self.path,
        )


_encode = json.JSONEncoder(separators=(",", ":")).encode
_text = json.encoder.encode_basestring_ascii  # a JSON string literal


def _number(x: float) -> str:
    return repr(x) if type(x) is float and math.isfinite(x) else _encode(x)


def _json(value: Any) -> str:
    """``_encode(value)``, without the encoder's setup for the plain scalars
    most lines hold (what the encoder would write for them, exactly)."""
    kind = type(value)
    if kind is str:
        return _text(value)
    if kind is float:
        return _number(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return _encode(value)


def _line(record: dict[str, Any]) -> bytes:
    return (_encode(record) + "\n").encode()


def _task_line(task: TaskEnd) -> bytes:
    """``_line(task_to_data(task))``, built by hand like an outcome's line: it is
    written once per task, and a record holds only strings, numbers and ``None``."""
    run_id, name, status, attempts, duration, started, ended = task[:7]
    if (
        type(duration) is float and type(started) is float and type(ended) is float
        and type(attempts) is int and task[7:] == NO_DETAILS
        and type(run_id) is str and type(name) is str and type(status) is str
        and math.isfinite(duration + started + ended)  # each is finite: repr is their JSON
    ):  # a task that ran and succeeded: nearly every line, in one piece
        return (
            f'{{"t":"ht","run_id":{_text(run_id)},"name":{_text(name)},'
            f'"status":{_text(status)},"attempts":{attempts},"duration":{duration!r},'
            f'"started":{started!r},"ended":{ended!r}}}\n'
        ).encode()
    fields = ['{"t":"ht"']
    for key, value in zip(_TASK_KEYS, task, strict=True):
        if value is None:  # left out, as task_to_data does
            continue
        fields.append(key)
        fields.append(_json(value))
    fields.append("}\n")
    return "".join(fields).encode()


_TASK_KEYS = [f',"{name}":' for name in TaskEnd._fields]


_TOO_LONG = object()  # stands for an int too long to convert in a line being read


def _parse(raw: bytes) -> tuple[Any, bool]:
    """A journal line as JSON, and whether it holds an int too long to convert.

    A process that raised ``sys.set_int_max_str_digits`` may have written ints
    this one refuses to read: the line is read with those ints left out, so that
    the rest of the file stays usable.
    """
    try:
        return json.loads(raw), False
    except ValueError:
        too_long: list[str] = []

        def parse_int(text: str) -> Any:
            try:
                return int(text)
            except ValueError:
                too_long.append(text)
                return _TOO_LONG

        rec = json.loads(raw, parse_int=parse_int)  # the same error if it was another
        return rec, bool(too_long)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.read(fd, size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _entry_record(e: CacheEntry) -> dict[str, Any]:
    return {"t": "c", "k": e.key, "n": e.name, "at": e.created, "ttl": e.ttl, "v": e.value}


_HISTORY_KINDS = frozenset({"hs", "ht", "he"})
# What the checks of a history record raise for a malformed one.
_MALFORMED = (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError)
# Lines flowkit writes start so; those of other kinds are skipped unparsed by the
# history reader (a line in any other spelling is parsed to find its kind).
_OTHER_KINDS = (b'{"t":"c"', b'{"t":"o"', b'{"t":"run"', b'{"t":"inv"')


class _HistoryReader:
    """A read-only view of a journal's run history, kept up to date incrementally.

    It opens the file read-only (so it works on a file it may not write, and never
    creates one), takes the shared lock like any reader, and parses only history
    lines: cached results are never read into memory to list runs.
    """

    def __init__(self, store: JSONStore):
        self._store = store
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._offset = 0
        self._line_no = 1
        self._index = HistoryIndex()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def index(self) -> HistoryIndex:
        """The index, with whatever was appended to the file since the last look."""
        while True:
            if self._fd is None:
                self._fd = open_state(
                    self._store._file, write=False, shown=self._store.path, kind="state file"
                )
                if self._fd is None:
                    return HistoryIndex()  # no file yet: no runs
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_SH)
            try:
                st = os.fstat(self._fd)
                if st.st_nlink:
                    self._catch_up(st)
                    return self._index
            finally:
                if fcntl is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
            self.close()  # compacted elsewhere: the file at the path is a new one

    def _catch_up(self, st: os.stat_result) -> None:
        ident = (st.st_dev, st.st_ino)
        if ident != self._ident or st.st_size < self._offset:
            self._ident, self._offset, self._line_no = ident, 0, 1
            self._index = HistoryIndex()
        if st.st_size == self._offset:
            return
        assert self._fd is not None
        os.lseek(self._fd, self._offset, os.SEEK_SET)
        data = _read_exactly(self._fd, st.st_size - self._offset)
        end = data.rfind(b"\n") + 1  # beyond it: a line being written, or torn
        start = 0
        if self._offset == 0:
            if end == 0:
                return
            start = data.find(b"\n") + 1
            self._store._format_of(data[:start])
        for raw in data[start:end].split(b"\n")[:-1]:
            self._line_no += 1
            if raw.startswith(_OTHER_KINDS):
                continue
            rec, _ = self._store._read_record(raw, self._line_no)
            if rec["t"] in _HISTORY_KINDS:
                try:
                    self._index.apply(rec)
                except _MALFORMED as exc:
                    raise self._store._corrupt(self._line_no, str(exc)) from None
        self._offset += end
