"""State files that were damaged, planted or locked: every record a store reads is
checked, odd paths (FIFOs, devices) are refused before anything runs, ``state
clear`` touches only flowkit state files, and a file one may only read can be read.

The damage is a table of mutations applied to every field of every record of a
real state file, in both file stores: a field added later is covered without
touching this file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import pickle
import shutil
import signal
import sqlite3
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkit import (
    DAG,
    StateError,
    StateManager,
    Status,
    Task,
    TaskDefinitionError,
    TaskExecutionError,
    task,
)
from flowkit.cli import main

DAG_NAME = "hostile"
PARAMS = {"day": "tuesday"}
SWITCH: dict[str, bool] = {}


def source() -> list[int]:
    return [1, 2, 3]


def total(rows: list[int], day: str = "monday") -> int:
    return sum(rows)


def never(rows: list[int]) -> int:
    return 0


def flaky(rows: list[int]) -> int:
    if SWITCH.get("fail"):
        raise RuntimeError("planned failure")
    return len(rows)


def gone() -> str:
    return "gone"


def hostile_dag() -> DAG:
    """A DAG whose state holds every kind of record: cache entries, outcomes with
    and without values, a skip, a failure, run parameters and an invalidation."""
    src = Task(source, cache_ttl=math.inf)
    tot = Task(total, cache_ttl=3600)
    skip = Task(never, when=lambda rows: False)
    bad = Task(flaky)
    src >> [tot, skip, bad]
    return DAG([src, tot, skip, bad, Task(gone, cache_ttl=60)], name=DAG_NAME)


def run_all(path: Path, *, resume: bool = False) -> Any:
    return hostile_dag().run(
        executor="sync", state=StateManager(path), fail_fast=False, resume=resume,
        params=PARAMS,
    )


def make_state_file(path: Path) -> None:
    """A state file as real runs leave it: two runs, the second one resumed."""
    SWITCH["fail"] = True
    with contextlib.suppress(Exception):
        run_all(path)
    SWITCH.clear()
    StateManager(path).invalidate("gone")
    run_all(path, resume=True)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pristine")
    files = {"json": base / "state.json", "sqlite": base / "state.db"}
    for path in files.values():
        make_state_file(path)
    return files


# --- the table of mutations ------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INT = "9" * 5000  # more digits than int() accepts by default
MISSING = object()

# name -> the JSON text a field is replaced with (MISSING: the field is removed)
JSON_MUTATIONS: dict[str, Any] = {
    "missing": MISSING,
    "null": "null",
    "int": "7",
    "negative": "-1",
    "string": '"yesterday"',
    "bool": "true",
    "nan": "NaN",
    "infinity": "Infinity",
    "list": "[1, 2]",
    "object": '{"a": 1}',
    "tagged": '{"__flowkit__": "tuple", "v": 5}',
    "big-int": "1" + "0" * 400,
    "huge-int": HUGE_INT,
    "deep": DEEP,
}

# name -> the value an SQLite column is set to
SQL_MUTATIONS: dict[str, Any] = {
    "null": None,
    "int": 7,
    "negative": -1,
    "string": "yesterday",
    "infinity": math.inf,
    "big-int-text": "1" + "0" * 400,
    "blob": b"\x00\xff",
    "not-json": "{oops",
    "json-huge-int": HUGE_INT,
    "deep": DEEP,
    "tagged": '{"__flowkit__": "tuple", "v": 5}',
}


def json_cases(path: Path) -> Iterator[tuple[str, bytes]]:
    """(description, damaged line) for each field of each distinct kind of record."""
    lines = path.read_bytes().splitlines(keepends=True)
    seen: set[tuple[str, ...]] = set()
    for number, raw in enumerate(lines[1:], start=2):
        record = json.loads(raw)
        shape = (str(record.get("t")), *sorted(record))
        if shape in seen:
            continue
        seen.add(shape)
        for field in record:
            yield f"line {number} field {field!r}", field.encode()
        yield f"line {number} as a whole", b""


def mutate_json(pristine: Path, target: Path, mutation: Any) -> Iterator[tuple[str, bytes]]:
    """Write ``target`` once per damaged record; yield a description after each."""
    original = pristine.read_bytes()
    lines = original.splitlines(keepends=True)
    for where, field in json_cases(pristine):
        number = int(where.split()[1])
        record = json.loads(lines[number - 1])
        if not field:
            text = "0" if mutation is MISSING else mutation
        elif mutation is MISSING:
            del record[field.decode()]
            text = json.dumps(record)
        else:
            record[field.decode()] = "@@HERE@@"
            text = json.dumps(record).replace('"@@HERE@@"', mutation)
        damaged = [*lines[: number - 1], text.encode() + b"\n", *lines[number:]]
        target.write_bytes(b"".join(damaged))
        yield where, original


def mutate_sqlite(pristine: Path, target: Path, value: Any) -> Iterator[str]:
    """Write ``target`` once per column of each table, with the first row's cell damaged."""
    with contextlib.closing(sqlite3.connect(pristine)) as db:
        tables = [row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )]
        columns = {t: [row[1] for row in db.execute(f"PRAGMA table_info({t})")] for t in tables}
    for table in tables:
        for column in columns[table]:
            for suffix in ("-wal", "-shm"):  # of the previous case
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(target) + suffix)
            shutil.copyfile(pristine, target)
            with contextlib.closing(sqlite3.connect(target)) as db:
                row = db.execute(f"SELECT * FROM {table} LIMIT 1").fetchone()
                if row is None:
                    continue
                where = " AND ".join(f"{c} IS ?" for c in columns[table])
                try:
                    with db:
                        db.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (value, *row))
                except sqlite3.IntegrityError:  # NOT NULL, or a duplicate key
                    continue
            yield f"{table}.{column}"


# --- what is done with a damaged file ------------------------------------------------------


def op_list(path: Path) -> object:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["state", "list", str(path)])
    assert code in (0, 2), code
    return code


def op_latest(path: Path) -> object:
    return StateManager(path).latest_run(DAG_NAME, PARAMS)


def op_history(path: Path) -> object:
    state = StateManager(path)
    return (state.runs(), state.run_index(), state.task_stats("total"),
            state.expected_durations(DAG_NAME))


def op_run(path: Path) -> object:
    return run_all(path)


def op_resume(path: Path) -> object:
    return run_all(path, resume=True)


def op_invalidate(path: Path) -> object:
    return StateManager(path).invalidate("total")


OPERATIONS: list[Callable[[Path], object]] = [
    op_list, op_latest, op_history, op_resume, op_run, op_invalidate,
]


def check_operations(path: Path, where: str, failures: list[str]) -> None:
    """Each operation succeeds or raises StateError naming the file — nothing else.
    An operation that fails leaves the file as it found it. (A run may also fail
    the ordinary way: a damaged but well-formed value can make a task raise.)"""
    for op in OPERATIONS:
        before = path.read_bytes()
        try:
            op(path)
        except StateError as exc:
            if str(path) not in str(exc) and exc.path != str(path):
                failures.append(f"{where}: {op.__name__}: StateError without the path: {exc}")
            if op is not op_list and path.read_bytes() != before:
                failures.append(f"{where}: {op.__name__}: failed and changed the file")
        except TaskExecutionError:
            if op not in (op_run, op_resume):
                failures.append(f"{where}: {op.__name__}: TaskExecutionError")
        except BaseException as exc:  # any other type is the bug looked for
            failures.append(f"{where}: {op.__name__}: {type(exc).__name__}: {str(exc)[:200]}")


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="flowkit")
    SWITCH.clear()


@pytest.mark.parametrize("mutation", list(JSON_MUTATIONS))
def test_a_damaged_journal_record_is_a_state_error_or_skipped(
    mutation: str, pristine: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "state.json"
    failures: list[str] = []
    cases = 0
    for where, _ in mutate_json(pristine["json"], target, JSON_MUTATIONS[mutation]):
        check_operations(target, f"{mutation} at {where}", failures)
        cases += 1
    assert cases >= 25  # every kind of record was damaged
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("mutation", list(SQL_MUTATIONS))
def test_a_damaged_database_row_is_a_state_error_or_skipped(
    mutation: str, pristine: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "state.db"
    failures: list[str] = []
    cases = 0
    for where in mutate_sqlite(pristine["sqlite"], target, SQL_MUTATIONS[mutation]):
        check_operations(target, f"{mutation} at {where}", failures)
        cases += 1
    # every column of every table (NULL only where no NOT NULL constraint forbids it)
    assert cases >= (3 if SQL_MUTATIONS[mutation] is None else 15)
    assert not failures, "\n".join(failures)


def test_the_pristine_files_are_read_back_whole(pristine: dict[str, Path]) -> None:
    for path in pristine.values():
        latest = StateManager(path).latest_run(DAG_NAME, PARAMS)
        assert latest is not None
        assert latest[1] == {
            "source": Status.CACHED, "total": Status.CACHED, "never": Status.SKIPPED,
            "flaky": Status.SUCCESS, "gone": Status.SUCCESS,
        }
        assert {e.name for e in StateManager(path).entries()} == {"source", "total", "gone"}


def _created_yesterday(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE cache SET created = 'yesterday'")


def _undecodable_value(path: Path) -> None:
    text = path.read_text()
    path.write_text(text.replace('"v":1}', '"v":{"__flowkit__":"tuple","v":5}}', 1))


@pytest.mark.parametrize(
    ("suffix", "damage"), [("state.db", _created_yesterday), ("state.json", _undecodable_value)]
)
def test_a_damaged_cache_entry_is_a_miss_with_a_warning(
    suffix: str, damage: Callable[[Path], None], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / suffix
    calls: list[int] = []

    @task(cache_ttl=math.inf)
    def cached() -> int:
        calls.append(1)
        return 1

    DAG([cached], name="c").run(executor="sync", state=StateManager(path))
    damage(path)
    caplog.set_level(logging.WARNING, logger="flowkit")
    run = DAG([cached], name="c").run(executor="sync", state=StateManager(path))
    assert run.states["cached"].status is Status.SUCCESS
    assert len(calls) == 2
    assert any("cannot be read" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records)
    again = DAG([cached], name="c").run(executor="sync", state=StateManager(path))
    assert again.states["cached"].status is Status.CACHED  # the new entry replaced it


def test_a_journal_value_too_deep_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    make_state_file(path)
    with path.open("ab") as f:
        f.write(b'{"t":"c","k":"x","n":"source","at":1.0,"ttl":null,"v":' + DEEP.encode() + b"}\n")
    with pytest.raises(StateError, match="corrupt at line") as error:
        run_all(path)
    assert str(path) in str(error.value)


# --- huge integers (the int-to-text limit) ----------------------------------------------


def big(n: int) -> int:
    return n % 1000


def test_a_huge_int_input_does_not_fail_a_cached_task(tmp_path: Path) -> None:
    calls: list[int] = []

    def counted(n: int) -> int:
        calls.append(1)
        return n % 1000

    for state in (StateManager(), StateManager(tmp_path / "s.json"),
                  StateManager(tmp_path / "s.db")):
        calls.clear()
        huge = Task(lambda: 10**10_000, name="huge")
        mod = Task(counted, name="mod", cache_ttl=math.inf)
        huge >> mod
        dag = DAG([huge, mod], name="huge")
        first = dag.run(executor="sync", state=state)
        assert first["mod"] == 10**10_000 % 1000
        second = dag.run(executor="sync", state=state)
        assert second.states["mod"].status is Status.CACHED  # hashed exactly, without text
        assert calls == [1]


def test_a_huge_int_result_is_stored_and_read_back(tmp_path: Path) -> None:
    value = -(10**9000) + 7
    for path in (tmp_path / "s.json", tmp_path / "s.db"):
        made = Task(lambda: value, name="made", cache_ttl=math.inf)
        DAG([made], name="h").run(executor="sync", state=StateManager(path))
        run = DAG([made], name="h").run(executor="sync", state=StateManager(path))
        assert run.states["made"].status is Status.CACHED
        assert run["made"] == value


_LIMIT = getattr(sys, "get_int_max_str_digits", lambda: 0)()


@pytest.mark.skipif(not _LIMIT, reason="no int-to-text limit in this Python")
@pytest.mark.parametrize("suffix", ["state.json", "state.db"])
def test_a_file_written_with_a_raised_int_limit_is_readable(
    suffix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / suffix
    value = 10**6000
    made = Task(lambda: value, name="made", cache_ttl=math.inf)
    small = Task(lambda: 5, name="small", cache_ttl=math.inf)
    # Another process with a raised limit writes huge ints as plain JSON digits.
    DAG([made, small], name="h").run(executor="sync", state=StateManager(path))
    if suffix.endswith(".db"):
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.execute("UPDATE blobs SET value = ? WHERE value LIKE '%int%'", (HUGE_INT,))
    else:
        text = path.read_text()
        start = text.index('{"__flowkit__":"int"')
        end = text.index("}", start) + 1
        path.write_text(text[:start] + HUGE_INT + text[end:])
    caplog.set_level(logging.WARNING, logger="flowkit")
    run = DAG([made, small], name="h").run(executor="sync", state=StateManager(path))
    assert run.states["small"].status is Status.CACHED  # the rest of the file is fine
    assert run.states["made"].status is Status.SUCCESS  # the unreadable entry: a miss
    assert run["made"] == value
    assert any("cannot be read" in r.getMessage() for r in caplog.records)
    again = DAG([made, small], name="h").run(executor="sync", state=StateManager(path))
    assert again.states["made"].status is Status.CACHED


# --- reserved names -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["<params>", "<run>", "<input 1>", "m[3]", "x[0]"])
def test_names_flowkit_uses_for_its_own_records_are_refused(name: str) -> None:
    with pytest.raises(TaskDefinitionError, match="reserved") as error:
        Task(source, name=name)
    assert error.value.task_name == name


@pytest.mark.parametrize(
    "name", ["<lambda>", "params", "m[x]", "a[1]b", "[3]", "<script>alert(1)</script>", "<>",
             "<Params>"],
)
def test_names_near_the_reserved_ones_are_fine(name: str) -> None:
    assert Task(source, name=name).name == name


# --- paths that are not regular files --------------------------------------------------------


def not_regular(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.state"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "device-link":
        # Never the real /dev/null: a bug would replace it, as root, for everyone.
        device = tmp_path / "null-device"
        if os.geteuid() == 0:
            os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        else:  # cannot make a device node; nor replace the real one
            device.symlink_to(os.devnull)
        path.symlink_to(device)
    elif kind == "fifo-link":
        os.mkfifo(tmp_path / "real-fifo")
        path.symlink_to(tmp_path / "real-fifo")
    return path


NOT_REGULAR = ["fifo", "directory", "device-link", "fifo-link"]


@pytest.fixture
def deadline() -> Iterator[None]:
    """A hang (blocked on a FIFO) fails the test instead of the whole suite."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError("the test hung for 30 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("backend", ["json", "sqlite"])
@pytest.mark.parametrize("kind", NOT_REGULAR)
def test_a_state_path_that_is_not_a_regular_file_is_refused_before_any_task(
    kind: str, backend: str, tmp_path: Path, deadline: None
) -> None:
    path = not_regular(kind, tmp_path)
    ran: list[int] = []
    first = Task(lambda: ran.append(1), name="first")
    with pytest.raises(StateError, match="not a regular file") as error:
        DAG([first], name="fifo").run(
            executor="thread", state=StateManager(path, backend=backend)  # type: ignore[arg-type]
        )
    assert str(path) in str(error.value)
    assert ran == []
    assert stat.S_ISREG(os.stat(path).st_mode) is False


@pytest.mark.parametrize("action", ["clear", "invalidate", "list"])
@pytest.mark.parametrize("kind", NOT_REGULAR)
def test_state_commands_never_replace_what_is_not_a_state_file(
    kind: str, action: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], deadline: None
) -> None:
    path = not_regular(kind, tmp_path)
    before = os.lstat(path)
    assert main(["state", action, str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a regular file" in err and str(path) in err
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert not stat.S_ISREG(os.stat(path).st_mode)  # what it points to is untouched too


@pytest.mark.parametrize("name", ["notes.json", "notes.db"])
def test_state_clear_refuses_a_file_that_is_not_flowkit_state(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    path.write_text("my precious notes\n" * 100)
    assert main(["state", "clear", str(path)]) == 2
    assert "not a flowkit state" in capsys.readouterr().err
    assert path.read_text() == "my precious notes\n" * 100


def test_state_clear_follows_a_symlink_to_a_state_file(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    make_state_file(real)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["state", "clear", str(link)]) == 0
    assert link.is_symlink()
    assert StateManager(real).entries() == []


def test_state_clear_empties_a_damaged_state_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "state.json"
    make_state_file(path)
    with path.open("ab") as f:
        f.write(b'{"t":"c","k":5}\n')
    assert main(["state", "list", str(path)]) == 2
    assert "corrupt at line" in capsys.readouterr().err
    assert main(["state", "clear", str(path)]) == 0
    assert StateManager(path).entries() == []
    assert run_all(path).ok


# --- leftovers of a compaction killed half-way -----------------------------------------------


def test_the_next_writer_removes_abandoned_compaction_files(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    make_state_file(path)
    # A process killed while compacting leaves its new file under a temporary name.
    abandoned = [tmp_path / ".state.json.compacting-ab_12cd3.tmp",
                 tmp_path / ".state.json.compacting-zzzzzzzz.tmp"]
    for leftover in abandoned:
        leftover.write_bytes(path.read_bytes())
    # Those of another state file in the same directory may be in use right now.
    kept = [tmp_path / ".other.json.compacting-ab_12cd3.tmp",
            tmp_path / ".state.json.compacting-notmine.tmp.bak",
            tmp_path / "state.json.compacting-ab_12cd3.tmp"]
    for other in kept:
        other.write_bytes(b"")
    StateManager(path).entries()  # a reader removes nothing
    assert all(p.exists() for p in abandoned)
    run_all(path)  # the next writer does
    assert not any(p.exists() for p in abandoned)
    assert all(p.exists() for p in kept)
    assert StateManager(path).latest_run(DAG_NAME, PARAMS) is not None


def test_a_compaction_uses_the_name_the_next_writer_sweeps(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = StateManager(path)
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    make_state_file(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", spy)
        state.clear()  # rewrites the file through a compaction file
    assert len(seen) == 1
    assert seen[0].startswith(".state.json.compacting-") and seen[0].endswith(".tmp")
    assert len(seen[0]) == len(".state.json.compacting-") + 8 + len(".tmp")


# --- files one may only read ------------------------------------------------------------------


def as_reader(path: Path, work: Callable[[], Any]) -> Any:
    """Run ``work`` where ``path`` and its directory can be read but not written:
    as another user when running as root (who may write anything), else after chmod."""
    directory = path.parent
    if os.geteuid() != 0:
        modes = {p: stat.S_IMODE(os.stat(p).st_mode) for p in (directory, path)}
        os.chmod(path, 0o444)
        os.chmod(directory, 0o555)
        try:
            return work()
        finally:
            for p, mode in modes.items():
                os.chmod(p, mode)
    os.chmod(directory, 0o755)
    os.chmod(path, 0o644)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read)
        try:
            os.setgid(65534)
            os.setuid(65534)
            outcome: Any = ("ok", work())
        except BaseException as exc:
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        with os.fdopen(write, "wb") as out:
            out.write(pickle.dumps(outcome))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)  # our own child's answer
    if kind == "error":
        raise AssertionError(value)
    return value


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's own tmp_path is private)."""
    directory = Path(tempfile.mkdtemp(prefix="flowkit-ro-"))
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("name", ["state.json", "state.db"])
def test_a_state_file_one_may_only_read_can_be_listed_and_read(
    name: str, shared_dir: Path
) -> None:
    path = shared_dir / name
    make_state_file(path)
    sqlite3.connect(":memory:").close()  # loaded before the child drops its rights

    def read() -> tuple[int, str, list[str], Any]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(["state", "list", str(path)])
        state = StateManager(path)
        names = sorted(e.name for e in state.entries())
        latest = state.latest_run(DAG_NAME, PARAMS)
        return code, out.getvalue(), names, latest and sorted(latest[1])

    code, output, names, latest = as_reader(path, read)
    assert code == 0, output
    assert "source" in output and "3 entries" in output
    assert names == ["gone", "source", "total"]
    assert latest == ["flaky", "gone", "never", "source", "total"]
    assert sorted(os.listdir(shared_dir)) == [name]  # nothing created beside it


@pytest.mark.parametrize("name", ["state.json", "state.db"])
def test_writing_to_a_file_one_may_only_read_is_a_state_error(
    name: str, shared_dir: Path
) -> None:
    path = shared_dir / name
    make_state_file(path)
    sqlite3.connect(":memory:").close()

    def write() -> str:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                run_all(path)
        except StateError as exc:
            return str(exc)
        return "no error"

    message = as_reader(path, write)
    assert str(path) in message
