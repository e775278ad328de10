"""The ``flowkit`` command: run a workflow file, draw it, plan it, manage its state.

A workflow file is a plain Python file that defines tasks (and usually a
``DAG``). ``FILE:NAME`` picks one object of the file by its variable name: a
DAG, or a task (which runs with everything upstream of it). Without NAME the
file's DAG is used if it defines exactly one; a file with several DAGs needs
NAME; a file with none runs every task it defines.

The file is imported under its stem as module name (``etl.py`` → ``etl``) and
its directory goes first on ``sys.path``, so worker processes of the process
executor can import it again to find its tasks.

Exit codes: 0 the run succeeded, 1 a task failed, 2 a usage error or a
workflow file that cannot be loaded, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import os
import reprlib
import stat
import sys
import tempfile
import textwrap
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TextIO

from flowkit import __version__
from flowkit.dag import DAG
from flowkit.exceptions import FlowkitError, TaskExecutionError
from flowkit.logging import configure_logging
from flowkit.outcome import item_of
from flowkit.params import typed_params
from flowkit.progress import ProgressBar
from flowkit.results import RunResult
from flowkit.state import CacheInfo, StateManager
from flowkit.state.stores.base import belongs_to
from flowkit.task import Task, registry

__all__ = ["UsageError", "load_workflow", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_workflows: set[str] = set()  # module names workflow files were loaded under
_undo: list[Callable[[], None]] = []  # what restores how workflow modules are pickled
_EXECUTORS = ("thread", "process", "sync", "dask")


class UsageError(FlowkitError):
    """A command line or a workflow file the command cannot use (exit code 2).

    Attributes:
        detail: the full traceback text, shown with ``--debug``.
    """

    def __init__(self, message: str, *, detail: str | None = None):
        super().__init__(message)
        self.detail = detail


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flowkit`` command on ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    saved = _Environment()
    try:
        command: Callable[[argparse.Namespace], int] = args.command
        with registry.isolated():  # the workflow's tasks are gone afterwards
            return command(args)
    except UsageError as exc:
        if args.debug and exc.detail:
            sys.stderr.write(exc.detail)
        _complain(str(exc))
        return EXIT_USAGE
    except FlowkitError as exc:  # an unknown target, a bad state file, a bad parameter …
        if args.debug:
            traceback.print_exc()
        _complain(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("flowkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `flowkit graph ... | head`: the reader is gone, not an error
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more is written
        return EXIT_FAILED
    except OSError as exc:  # writing the output failed (a full disk, a closed stream)
        if args.debug:
            traceback.print_exc()
        _complain(f"cannot write the output: {exc}")
        return EXIT_USAGE
    finally:
        saved.restore()


def _complain(message: str) -> None:
    print(f"flowkit: error: {' '.join(message.split())}", file=sys.stderr)


# --- the parser -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowkit",
        description="Run, draw and plan flowkit workflows, and manage their state files.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(
            """\
            examples:
              flowkit run examples/etl.py
              flowkit run examples/etl.py:dag --executor process --report report.html
              flowkit graph examples/etl.py --format dot | dot -Tsvg > etl.svg
              flowkit plan examples/etl.py --targets load
              flowkit state list .flowkit-state.json
              flowkit backfill etl.py --param day=2026-11-01..2026-11-28 --state state.db
              flowkit serve etl.py --cron "0 * * * *" --state state.db

            exit codes: 0 ok, 1 a task failed, 2 usage or workflow-file error, 130 interrupted.
            Run 'flowkit COMMAND --help' for the options of a command.
            """
        ),
    )
    parser.add_argument("--version", action="version", version=f"flowkit {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _run_parser(commands)
    _graph_parser(commands)
    _plan_parser(commands)
    _state_parser(commands)
    _backfill_parser(commands)
    _serve_parser(commands)
    _history_parser(commands)
    _ui_parser(commands)
    return parser


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    examples: str,
) -> argparse.ArgumentParser:
    sub = commands.add_parser(
        name,
        help=summary,
        description=summary,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + textwrap.indent(textwrap.dedent(examples).strip(), "  "),
    )
    sub.add_argument("--debug", action="store_true", help="show full tracebacks of errors")
    return sub


def _workflow_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workflow",
        metavar="FILE[:NAME]",
        help="a Python file defining tasks; NAME picks a DAG (or a task) of the file by "
        "variable name. Without NAME: the file's DAG if it defines exactly one (with "
        "several, NAME is required), or every task the file defines if it defines none",
    )


def _targets_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--targets",
        action="append",
        metavar="A,B",
        help="only these tasks and what they depend on (comma-separated, or repeat the option)",
    )


def _run_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _command(
        commands,
        "run",
        "Run a workflow, show its progress, print a summary and the results.",
        """
        flowkit run examples/etl.py
        flowkit run examples/etl.py:dag --executor process --workers 4
        flowkit run pipeline.py --targets load,report --no-fail-fast
        flowkit run pipeline.py --state .flowkit-state.json --resume
        flowkit run pipeline.py --log-level INFO --json-logs 2> run.jsonl
        flowkit run pipeline.py --report report.html
        flowkit run pipeline.py --param day=2026-11-28 --param limit=100
        """,
    )
    _workflow_argument(sub)
    sub.add_argument(
        "--executor", choices=_EXECUTORS, default="thread", help="where tasks run (default: thread)"
    )
    sub.add_argument("--address", help="with --executor dask: the scheduler address of the cluster")
    sub.add_argument(
        "--workers", type=_positive_int, metavar="N", help="size of the thread or process pool"
    )
    _targets_argument(sub)
    sub.add_argument(
        "--param",
        action="append",
        type=_parameter_text,
        metavar="NAME=VALUE",
        help="a run parameter (repeatable). VALUE is converted to the type the receiving "
        "task parameter is annotated with (int, float, bool, str, date, datetime, Path, "
        "Decimal, an Enum, list/dict as JSON); without an annotation it is read as JSON "
        "when it is valid JSON, else taken as a string",
    )
    sub.add_argument(
        "--pool",
        action="append",
        type=_pool_size,
        metavar="NAME=SLOTS",
        help="a resource pool and its number of slots (repeatable): at most that many "
        "slots are taken at once by the tasks with pool=NAME",
    )
    sub.add_argument("--state", metavar="PATH", help="a state file for caching and --resume")
    sub.add_argument(
        "--resume",
        action="store_true",
        help="restore the tasks that succeeded in the previous run recorded in --state",
    )
    sub.add_argument(
        "--fail-fast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop at the first failure (default), or let independent branches go on",
    )
    _output_arguments(sub)
    sub.set_defaults(command=_run)


def _output_arguments(sub: argparse.ArgumentParser) -> None:
    """What ``flowkit run`` shows while and after it runs: logs, report, progress bar."""
    sub.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LEVELS,
        default="WARNING",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING (default: shows retries and failures), ERROR or CRITICAL",
    )
    sub.add_argument("--json-logs", action="store_true", help="log one JSON object per line")
    sub.add_argument("--report", metavar="PATH", help="write an HTML report of the run to PATH")
    sub.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a live progress bar on stderr (default: only when stderr is a terminal)",
    )


def _graph_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _command(
        commands,
        "graph",
        "Print the workflow's graph as Mermaid or Graphviz DOT.",
        """
        flowkit graph examples/etl.py
        flowkit graph examples/etl.py --format dot | dot -Tpng > etl.png
        """,
    )
    _workflow_argument(sub)
    sub.add_argument(
        "--format", choices=("mermaid", "dot"), default="mermaid", help="default: mermaid"
    )
    sub.set_defaults(command=_graph)


def _plan_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _command(
        commands,
        "plan",
        "Print which tasks a run would start, in which order, without running any.",
        """
        flowkit plan examples/etl.py
        flowkit plan examples/etl.py --targets to_eur
        """,
    )
    _workflow_argument(sub)
    _targets_argument(sub)
    sub.set_defaults(command=_plan)


def _state_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _command(
        commands,
        "state",
        "List, invalidate or clear the cached results in a state file.",
        """
        flowkit state list .flowkit-state.json
        flowkit state invalidate .flowkit-state.json --task load
        flowkit state invalidate .flowkit-state.json
        flowkit state clear .flowkit-state.json
        """,
    )
    sub.add_argument(
        "action",
        choices=("list", "invalidate", "clear"),
        help="list the entries; invalidate cached results (of --task, or all); clear everything",
    )
    sub.add_argument("path", metavar="PATH", help="the state file")
    sub.add_argument("--task", metavar="NAME", help="only this task's entries (list, invalidate)")
    sub.set_defaults(command=_state)


def _run_options(parser: argparse.ArgumentParser) -> None:
    """The options of each run of a backfill or a schedule (a subset of ``run``'s)."""
    parser.add_argument(
        "--executor", choices=_EXECUTORS, default="thread", help="where tasks run (default: thread)"
    )
    parser.add_argument(
        "--workers", type=_positive_int, metavar="N", help="size of the thread or process pool"
    )
    parser.add_argument(
        "--fail-fast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="within a run, stop at the first failure (default), or let independent branches go on",
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=_LEVELS,
        default="WARNING",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING (default), ERROR or CRITICAL",
    )
    parser.add_argument("--json-logs", action="store_true", help="log one JSON object per line")


def _backfill_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _command(
        commands,
        "backfill",
        "Run a workflow once per partition of its parameters, skipping those already done.",
        """
        flowkit backfill etl.py --param day=2026-11-01..2026-11-28 --state state.db
        flowkit backfill etl.py --param day=2026-11-01..2026-11-07 --param region=eu,us \\
            --parallel 4 --state state.db
        flowkit backfill etl.py --param shard=0..15 --force --state state.db
        """,
    )
    _workflow_argument(sub)
    sub.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="NAME=VALUES",
        help="a partition parameter (repeatable: the partitions are the cross product). VALUES "
        "is a range of dates by day (2026-11-01..2026-11-28), of integers (1..10), a comma "
        "list (eu,us) or one value",
    )
    sub.add_argument(
        "--parallel", type=_positive_int, default=1, metavar="N",
        help="run up to N partitions at once (default: 1)",
    )
    sub.add_argument(
        "--force", action="store_true",
        help="run every partition afresh, even those whose latest run succeeded",
    )
    sub.add_argument(
        "--state", required=True, metavar="PATH",
        help="the state file whose run history tells which partitions are done",
    )
    sub.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar over the partitions on stderr (default: only on a terminal)",
    )
    _run_options(sub)
    sub.set_defaults(command=_backfill)


def _serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _command(
        commands,
        "serve",
        "Run a workflow for every interval of a schedule, until stopped (SIGTERM, Ctrl-C).",
        """
        flowkit serve etl.py --cron "0 * * * *" --state state.db
        flowkit serve etl.py:dag --cron "30 6 * * mon-fri" --tz Europe/Berlin --state state.db
        flowkit serve etl.py --every 10m --catchup --state state.db
        flowkit serve etl.py --every 1h --max-runs 1 --state state.db
        """,
    )
    _workflow_argument(sub)
    when = sub.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="a cron expression: '0 * * * *', '@daily'")
    when.add_argument(
        "--every", metavar="DURATION", help="a fixed period: 30s, 10m, 2h, 1d, 1h30m"
    )
    sub.add_argument("--tz", metavar="ZONE", help="the cron's time zone (default: UTC)")
    sub.add_argument(
        "--catchup", action="store_true",
        help="after downtime, run every missed interval in order (default: the latest only)",
    )
    sub.add_argument(
        "--max-runs", type=_positive_int, metavar="N",
        help="stop after N runs; the exit code is then 1 if one failed",
    )
    sub.add_argument(
        "--wait", action="store_true",
        help="if another process serves this workflow on this state, wait for it to stop "
        "(default: refuse)",
    )
    sub.add_argument(
        "--param",
        action="append",
        type=_parameter_text,
        metavar="NAME=VALUE",
        help="a run parameter for every run (repeatable), typed as for 'flowkit run'",
    )
    sub.add_argument(
        "--state", required=True, metavar="PATH",
        help="the state file: run history, where the schedule resumes after a restart, the lock",
    )
    _run_options(sub)
    sub.set_defaults(command=_serve)


def _history_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _command(
        commands,
        "history",
        "List the runs recorded in a state file, or show one run's tasks.",
        """
        flowkit history .flowkit-state.json
        flowkit history state.db --dag nightly --limit 5
        flowkit history state.db --json
        flowkit history state.db 20261128T020000.000000-a1b2c3
        """,
    )
    sub.add_argument("path", metavar="STATE", help="the state file")
    sub.add_argument("run_id", metavar="RUN_ID", nargs="?", help="show this run's tasks")
    sub.add_argument("--dag", metavar="NAME", help="only the runs of this DAG")
    sub.add_argument(
        "--limit", type=_positive_int, default=20, metavar="N", help="newest N runs (default 20)"
    )
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.set_defaults(command=_history)


def _ui_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub = _command(
        commands,
        "ui",
        "Serve a local, read-only web UI of the runs recorded in a state file.",
        """
        flowkit ui .flowkit-state.json
        flowkit ui state.db --port 9000 --open
        flowkit ui state.db --host 0.0.0.0 --allow-remote
        """,
    )
    sub.add_argument("path", metavar="STATE", help="the state file")
    sub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sub.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0: any free)")
    sub.add_argument("--open", action="store_true", help="open the UI in a web browser")
    sub.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than this machine's loopback: anyone who can reach it "
        "sees the runs, their parameters and errors",
    )
    sub.set_defaults(command=_ui)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def _parameter_text(text: str) -> tuple[str, str]:
    """``"NAME=VALUE"`` → ``(NAME, VALUE)``; the value is typed later (``flowkit.params``)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


def _pool_size(text: str) -> tuple[str, int]:
    """``"NAME=SLOTS"`` → ``(NAME, SLOTS)``, SLOTS a positive whole number."""
    name, sep, value = text.partition("=")
    try:
        slots = int(value)
    except ValueError:
        slots = 0
    if not sep or not name.strip() or slots < 1:
        raise argparse.ArgumentTypeError(
            f"expected NAME=SLOTS with SLOTS a positive whole number, like db=2; got {text!r}"
        )
    return name.strip(), slots


def _targets(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


# --- loading a workflow file -----------------------------------------------------------


def load_workflow(spec: str) -> DAG:
    """The DAG that ``FILE[:NAME]`` designates (see the module docstring).

    Raises:
        UsageError: the file is missing, does not import, has no such NAME, or
            defines several DAGs and NAME does not say which (the message lists them).
    """
    path, name = _split(spec)
    before = set(registry)
    module = _import_file(path)
    stem = module.__name__
    if name is not None:
        chosen = getattr(module, name, None)
        if isinstance(chosen, DAG):
            return chosen
        if isinstance(chosen, Task):
            return DAG([chosen], name=stem)
        if chosen is None:
            raise UsageError(f"{path} defines no {name!r}; {_contents(module)}")
        raise UsageError(
            f"{path}:{name} is a {type(chosen).__name__}, not a DAG or a task; {_contents(module)}"
        )
    dags = _dags_of(module)
    if len(dags) == 1:
        return next(iter(dags.values()))
    if dags:
        choices = ", ".join(f"{path}:{name}" for name in dags)
        raise UsageError(
            f"{path} defines {len(dags)} DAGs; say which one to use: {choices}"
        )
    defined = [t for t in registry if t not in before]
    if not defined:
        raise UsageError(
            f"{path} defines no DAG and no task: decorate functions with @flowkit.task "
            "(and wire them with >>) or create a flowkit.DAG in it"
        )
    return DAG(defined, name=stem)


def _load_to_run(args: argparse.Namespace) -> DAG:
    """The workflow to run; on Dask, the file's own code travels to the workers by value."""
    dag = load_workflow(args.workflow)
    if args.executor == "dask":
        # Loaded only for Dask runs. A cluster of its own cannot import the
        # file under its module name, so its functions go as code.
        from flowkit.backends.dask_code import ship_by_value

        _undo.append(ship_by_value(sys.modules[_module_name(_split(args.workflow)[0])]))
    return dag


def _dags_of(module: ModuleType) -> dict[str, DAG]:
    """The module's DAGs by variable name (a DAG bound to two names counts once)."""
    found: dict[int, tuple[str, DAG]] = {}
    for name, value in vars(module).items():
        if isinstance(value, DAG):
            found.setdefault(id(value), (name, value))
    return dict(found.values())


def _split(spec: str) -> tuple[str, str | None]:
    """``"dir/file.py:dag"`` → ``("dir/file.py", "dag")``; a bare path has no name."""
    path, sep, name = spec.rpartition(":")
    if sep and path and name.isidentifier():
        return path, name
    return spec, None


def _contents(module: ModuleType) -> str:
    dags = sorted(k for k, v in vars(module).items() if isinstance(v, DAG))
    tasks = sorted(k for k, v in vars(module).items() if isinstance(v, Task))
    return f"it has DAGs: {', '.join(dags) or 'none'}; tasks: {', '.join(tasks) or 'none'}"


def _import_file(path: str) -> ModuleType:
    if not os.path.exists(path):
        raise UsageError(f"no such workflow file: {path}")
    if not os.path.isfile(path):
        raise UsageError(f"{path} is not a file: give the path of a Python file")
    absolute = os.path.abspath(path)
    stem = _module_name(path)
    taken = sys.modules.get(stem)
    if taken is not None and stem not in _workflows and _file_of(taken) != absolute:
        raise UsageError(
            f"{path}: its module name {stem!r} is already taken by {taken!r}; "
            "rename the workflow file"
        )
    spec = importlib.util.spec_from_file_location(stem, absolute)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path} cannot be imported as Python (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    # Importable by name while it runs: the process executor pickles tasks as
    # ``module.name``, and its worker processes find the file on sys.path.
    directory = os.path.dirname(absolute)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    sys.modules[stem] = module
    _workflows.add(stem)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(stem, None)
        where = path if exc.filename in (absolute, path, None) else exc.filename
        raise UsageError(
            f"{where}:{exc.lineno}: {exc.msg}", detail=_traceback_text(exc)
        ) from exc
    except Exception as exc:
        sys.modules.pop(stem, None)
        line = _line_in(exc, absolute)
        raise UsageError(
            f"{path}{f':{line}' if line else ''}: {type(exc).__name__}: {exc} "
            "(--debug shows the traceback)",
            detail=_traceback_text(exc),
        ) from exc
    return module


def _module_name(path: str) -> str:
    """The module name a workflow file is imported under: its file name's stem."""
    return os.path.splitext(os.path.basename(os.path.abspath(path)))[0]


def _file_of(module: ModuleType) -> str | None:
    file = getattr(module, "__file__", None)
    return os.path.abspath(file) if isinstance(file, str) else None


def _line_in(exc: BaseException, filename: str) -> int | None:
    """The line of ``filename`` where ``exc`` was raised (its deepest frame there)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    return line


def _traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


# --- run ------------------------------------------------------------------------------


class _Keep:
    """A hook that keeps the run's result, even when the run ends with Ctrl-C."""

    result: RunResult | None = None

    def on_dag_end(self, run: object, result: RunResult) -> None:
        self.result = result


def _run(args: argparse.Namespace) -> int:
    if args.resume and not args.state:
        raise UsageError("--resume needs --state PATH: the state file of the run to resume")
    if args.address and args.executor != "dask":
        raise UsageError("--address is the address of a Dask cluster: use it with --executor dask")
    dag = _load_to_run(args)
    targets = _targets(args.targets)
    params = typed_params(dag.tasks, dict(args.param or ()))
    if args.report:  # found now, not after every task has run
        _check_writable(args.report, "the report")
    state = StateManager(args.state) if args.state else None  # opens it: checked too
    bar = ProgressBar(sys.stderr, enabled=args.progress)
    configure_logging(args.log_level, json=args.json_logs, stream=bar.wrap(sys.stderr))
    keep = _Keep()
    try:
        result = dag.run(
            executor=args.executor,
            max_workers=args.workers,
            fail_fast=args.fail_fast,
            targets=targets,
            state=state,
            resume=args.resume,
            hooks=[bar, keep],
            params=params,
            pools=dict(args.pool or ()),
            address=args.address,
        )
    except TaskExecutionError as exc:
        if exc.result is None:
            raise
        result = exc.result
    except KeyboardInterrupt:
        bar.close()
        if keep.result is not None:
            _finish(keep.result, args, targets)
        raise
    finally:
        bar.close()
        if state is not None:
            state.close()
    return _finish(result, args, targets)


def _check_writable(path: str, what: str) -> None:
    """Raise ``UsageError`` unless ``path`` can be written as a file (without changing it)."""
    problem = None
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            problem = f"its directory {directory} does not exist"
        else:  # a real probe: permissions, a read-only file system, root's rights
            try:
                with tempfile.TemporaryFile(dir=directory):
                    pass
            except OSError as exc:
                problem = f"its directory does not take new files ({exc.strerror or exc})"
    except OSError as exc:
        problem = exc.strerror or str(exc)
    else:
        if stat.S_ISDIR(mode):
            problem = "it is a directory; give a file name"
        elif stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            problem = "it is not a regular file"
        elif stat.S_ISREG(mode):
            try:
                with open(path, "ab"):  # appends nothing: the file stays as it is
                    pass
            except OSError as exc:
                problem = exc.strerror or str(exc)
    if problem is not None:
        raise UsageError(f"cannot write {what} to {path}: {problem}. Nothing was run.")


def _finish(result: RunResult, args: argparse.Namespace, targets: list[str] | None) -> int:
    """Print the summary and results, write the report; the exit code of the run."""
    out = sys.stdout
    print(result.summary(), file=out)
    _print_results(result, targets, out)
    if args.report:
        try:
            result.to_html(args.report)
        except OSError as exc:
            raise UsageError(f"cannot write the report to {args.report}: {exc.strerror or exc}") \
                from exc
        print(f"\nreport: {args.report}", file=out)
    out.flush()
    failed = result.failed
    for state in failed[:_FAILURES_SHOWN]:
        if args.debug and state.error is not None:
            sys.stderr.write(_traceback_text(state.error))
        how = f"after {state.attempts} attempt(s)" if state.attempts else "before it ran"
        error = f"{type(state.error).__name__}: {state.error}" if state.error else state.reason
        print(f"flowkit: task {state.name!r} failed {how}: {error}", file=sys.stderr)
    if len(failed) > _FAILURES_SHOWN:
        print(f"flowkit: … and {len(failed) - _FAILURES_SHOWN:,} more failed task(s): "
              "run.failed in Python lists every one", file=sys.stderr)
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


_FAILURES_SHOWN = 10  # failure lines on stderr; a map of 100,000 items can fail them all

_repr = reprlib.Repr()
_repr.maxstring = 100
_repr.maxother = 100
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 8
_repr.maxlevel = 3


def _print_results(result: RunResult, targets: list[str] | None, out: TextIO) -> None:
    if targets:
        names = [name for name in targets if name in result.states]
    else:
        upstream = {up for ups in result.graph.values() for up in ups}
        names = [name for name in result.graph if name not in upstream]
    if not names:
        return
    print("\nresults:" if not targets else "\nresults of the targets:", file=out)
    width = max(len(name) for name in names)
    for name in names:
        state = result.states[name]
        if state.status.produced_value:
            shown = _repr.repr(result[name])  # fetched, if it stayed on a cluster
        else:
            shown = f"(no value: {state.status.name})"
        print(f"  {name.ljust(width)}  {shown}", file=out)


# --- backfill, serve ---------------------------------------------------------------------


def _backfill(args: argparse.Namespace) -> int:
    from flowkit import backfill  # loaded on first use, like every command's own module

    dag = _load_to_run(args)
    partitions = [typed_params(dag.tasks, p) for p in backfill.expand_params(args.param)]
    progress = backfill.PartitionProgress(dag.name, len(partitions), sys.stderr,
                                          enabled=args.progress)
    configure_logging(args.log_level, json=args.json_logs, stream=progress.wrap(sys.stderr))
    state = StateManager(args.state)
    try:
        result = dag.backfill(
            partitions, parallel=args.parallel, state=state, executor=args.executor,
            max_workers=args.workers, fail_fast=args.fail_fast, force=args.force,
            hooks=[progress],
        )
    except KeyboardInterrupt as exc:
        progress.close()
        done: backfill.BackfillResult | None = getattr(exc, "result", None)
        if done is not None:
            print(done.summary())
        raise
    finally:
        progress.close()
        state.close()
    print(result.summary())
    for failed in result.failed:
        print(f"flowkit: partition {failed.label} {failed.status}: {failed.note}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def _serve(args: argparse.Namespace) -> int:
    from flowkit import schedule  # loaded on first use, like every command's own module
    from flowkit.backfill import PartitionPrinter

    dag = _load_to_run(args)
    every = schedule.parse_duration(args.every) if args.every is not None else None
    configure_logging(args.log_level, json=args.json_logs)
    with StateManager(args.state) as state:
        result = dag.serve(
            args.cron, every=every, tz=args.tz, catchup=args.catchup, max_runs=args.max_runs,
            wait=args.wait, params=typed_params(dag.tasks, dict(args.param or ())), state=state,
            executor=args.executor,
            max_workers=args.workers, fail_fast=args.fail_fast,
            hooks=[PartitionPrinter(sys.stdout)],
        )
    print(f"served {result.runs} run(s), {result.failed} failed; stopped by {result.stopped_by}")
    if args.max_runs is not None and result.stopped_by == "max_runs" and not result.ok:
        return EXIT_FAILED
    return EXIT_OK


# --- graph, plan, state ------------------------------------------------------------------


def _graph(args: argparse.Namespace) -> int:
    dag = load_workflow(args.workflow)
    sys.stdout.write(dag.to_dot() if args.format == "dot" else dag.to_mermaid())
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    dag = load_workflow(args.workflow)
    plan = dag.plan(_targets(args.targets))
    print(f"DAG {dag.name!r}: {len(plan.order)} of {len(dag)} task(s) would run, in this order:")
    print(plan)
    return EXIT_OK


def _state(args: argparse.Namespace) -> int:
    if not os.path.exists(args.path):
        raise UsageError(f"no state file at {args.path}")
    if args.action == "clear" and args.task:
        raise UsageError("clear empties the whole file; to drop one task, use invalidate --task")
    with StateManager(args.path) as manager:
        if args.task is not None:
            _check_task_name(manager, args.task, args.path)
        if args.action == "list":
            entries = [e for e in manager.entries() if belongs_to(e.name, args.task)]
            _print_entries(entries, args.path)
        elif args.action == "invalidate":
            count = manager.invalidate(args.task)
            which = f"task {args.task!r}" if args.task else "every task"
            print(f"invalidated {count} cached result(s) of {which} in {args.path}")
        else:
            manager.clear()
            print(f"cleared {args.path}")
    return EXIT_OK


def _check_task_name(manager: StateManager, name: str, path: str) -> None:
    """``--task NAME`` must name a task the state knows (a map's name covers its items)."""
    known = manager.task_names()
    item = item_of(name)  # one item of a mapped task: fine if the map is known
    if name not in known and (item is None or item[0] not in known):
        shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
        raise UsageError(
            f"{path} has no task {name!r}: no cached result and no recorded run of it; "
            f"the tasks it knows: {shown or 'none'}"
        )


def _history(args: argparse.Namespace) -> int:
    from flowkit.ui import text  # presentation: loaded when asked for

    if not os.path.exists(args.path):
        raise UsageError(f"no state file at {args.path}")
    with StateManager(args.path) as manager:
        if args.run_id is not None:
            record = manager.get_run(args.run_id)
            if record is None:
                raise UsageError(
                    f"no run {args.run_id!r} in {args.path}; `flowkit history {args.path}` "
                    "lists the recorded runs"
                )
            print(json.dumps(text.run_data(record), indent=2) if args.json
                  else text.run_text(record))
            return EXIT_OK
        records = manager.runs(dag=args.dag, limit=args.limit)
    if args.json:
        print(json.dumps([text.run_data(r, tasks=False) for r in records], indent=2))
    elif not records:
        which = f" of DAG {args.dag!r}" if args.dag else ""
        print(f"no runs{which} recorded in {args.path}")
    else:
        print(text.runs_table(records))
    return EXIT_OK


def _ui(args: argparse.Namespace) -> int:
    from flowkit.ui import server  # presentation: loaded when asked for

    if not os.path.exists(args.path):
        raise UsageError(f"no state file at {args.path}")
    server.serve(
        args.path, host=args.host, port=args.port, open_browser=args.open,
        allow_remote=args.allow_remote,
    )
    return EXIT_OK


def _print_entries(entries: Sequence[CacheInfo], path: str) -> None:
    if not entries:
        print(f"no cached results in {path}")
        return
    rows = [("task", "key", "age", "expires in", "size")]
    for entry in entries:
        expires = "never" if entry.expires_in is None else (
            "expired" if entry.expires_in <= 0 else _age(entry.expires_in)
        )
        size = "-" if entry.size is None else _size(entry.size)
        rows.append((entry.name, entry.key[:16], _age(entry.age), expires, size))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} in {path}")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _size(size: int) -> str:
    for unit, scale in (("MB", 1 << 20), ("kB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


# --- leaving no trace in the calling process -------------------------------------------------


class _Environment:
    """What a command changes in the process (``sys.path``, the workflow module,
    the ``flowkit`` logger), saved so that ``main`` can be called in-process, e.g.
    by tests, and leave nothing behind (the registry is isolated separately)."""

    def __init__(self) -> None:
        self.path = list(sys.path)
        self.modules = {name: sys.modules.get(name) for name in _workflows}
        logger = logging.getLogger("flowkit")
        self.handlers = list(logger.handlers)
        self.level = logger.level
        self.propagate = logger.propagate

    def restore(self) -> None:
        while _undo:
            _undo.pop()()
        sys.path[:] = self.path
        for name in list(_workflows):
            before = self.modules.get(name)
            if before is None:
                sys.modules.pop(name, None)
                _workflows.discard(name)
            else:
                sys.modules[name] = before
        logger = logging.getLogger("flowkit")
        for handler in list(logger.handlers):
            if handler not in self.handlers:
                logger.removeHandler(handler)
                handler.close()
        for handler in self.handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(self.level)
        logger.propagate = self.propagate
