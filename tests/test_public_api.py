"""The public surface: what ``import flowkit`` offers, pinned so that any change
to it is deliberate."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import flowkit
import flowkit.exceptions

PUBLIC_NAMES = [
    "DAG",
    "SKIPPED",
    "Attempt",
    "CronError",
    "DAGCycleError",
    "DAGValidationError",
    "FlowkitError",
    "Hook",
    "MapTask",
    "Plan",
    "Registry",
    "RunContext",
    "RunResult",
    "StateError",
    "StateLockedError",
    "StateManager",
    "Status",
    "Task",
    "TaskDefinitionError",
    "TaskExecutionError",
    "TaskNotFoundError",
    "TaskOptions",
    "TaskState",
    "TaskTimeoutError",
    "UpstreamFailed",
    "__version__",
    "backoff_delay",
    "configure_logging",
    "get_run_logger",
    "registry",
    "task",
]


def test_all_is_pinned() -> None:
    assert flowkit.__all__ == PUBLIC_NAMES


def isort_style(name: str) -> tuple[int, str]:
    """Constants, then classes, then the rest, each alphabetically (ruff's RUF022 order)."""
    if name.isupper():
        return (0, name)
    if name[0].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted() -> None:
    assert flowkit.__all__ == sorted(flowkit.__all__, key=isort_style)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_every_public_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from flowkit import {name}", namespace)
    assert namespace[name] is getattr(flowkit, name)


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from flowkit import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(PUBLIC_NAMES)


def test_public_objects_have_docstrings() -> None:
    for name in PUBLIC_NAMES:
        obj = getattr(flowkit, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"flowkit.{name} has no docstring"


def test_documented_names_from_the_design() -> None:
    for name in ("task", "Task", "DAG", "RunResult", "TaskState", "Status", "SKIPPED",
                 "registry", "configure_logging", "StateManager", "FlowkitError",
                 "TaskExecutionError", "TaskTimeoutError", "DAGCycleError",
                 "TaskNotFoundError", "StateError"):
        assert name in flowkit.__all__


def test_status_members() -> None:
    final = ["SUCCESS", "FAILED", "SKIPPED", "CACHED", "UPSTREAM_FAILED", "CANCELLED"]
    assert [s.name for s in flowkit.Status if s.is_final] == final
    assert [s.name for s in flowkit.Status if s.produced_value] == ["SUCCESS", "CACHED"]
    assert flowkit.Status.SUCCESS.value == "success"
    assert str(flowkit.Status.UPSTREAM_FAILED) == "upstream_failed"


def test_skipped_is_a_falsy_singleton() -> None:
    assert not flowkit.SKIPPED
    assert repr(flowkit.SKIPPED) == "SKIPPED"
    assert type(flowkit.SKIPPED)() is flowkit.SKIPPED
    import pickle

    assert pickle.loads(pickle.dumps(flowkit.SKIPPED)) is flowkit.SKIPPED


def test_version_matches_the_package_metadata() -> None:
    try:
        installed = importlib.metadata.version("flowkit")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
        pytest.skip("flowkit is not installed")
    assert flowkit.__version__ == installed


def test_py_typed_ships_in_the_package() -> None:
    assert importlib.resources.files("flowkit").joinpath("py.typed").is_file()


def test_the_license_file_matches_the_declared_license() -> None:
    root = Path(__file__).resolve().parents[1]
    text = (root / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert 'license = "MIT"' in (root / "pyproject.toml").read_text(encoding="utf-8")


# --- exceptions ----------------------------------------------------------------------


def test_exceptions_are_re_exported() -> None:
    for name in flowkit.exceptions.__all__:
        assert getattr(flowkit, name) is getattr(flowkit.exceptions, name)


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        ("FlowkitError", (Exception,)),
        ("TaskDefinitionError", ("FlowkitError", ValueError)),
        ("DAGValidationError", ("FlowkitError", ValueError)),
        ("DAGCycleError", ("DAGValidationError", "FlowkitError", ValueError)),
        ("TaskNotFoundError", ("FlowkitError", KeyError)),
        ("StateError", ("FlowkitError",)),
        ("StateLockedError", ("StateError", "FlowkitError")),
        ("CronError", ("FlowkitError", ValueError)),
        ("TaskExecutionError", ("FlowkitError",)),
        ("TaskTimeoutError", ("TaskExecutionError", "FlowkitError", TimeoutError)),
    ],
)
def test_exception_hierarchy(error: str, bases: tuple[str | type, ...]) -> None:
    cls = getattr(flowkit.exceptions, error)
    for base in bases:
        base_cls = getattr(flowkit.exceptions, base) if isinstance(base, str) else base
        assert issubclass(cls, base_cls), f"{error} should subclass {base_cls.__name__}"


def test_independent_branches_of_the_hierarchy() -> None:
    e = flowkit.exceptions
    assert not issubclass(e.TaskExecutionError, ValueError)
    assert not issubclass(e.StateError, e.TaskExecutionError)
    assert not issubclass(e.DAGCycleError, e.TaskExecutionError)
    assert not issubclass(e.TaskNotFoundError, e.DAGValidationError)


def test_importing_flowkit_is_quiet_and_configures_no_logging() -> None:
    code = (
        "import logging, flowkit\n"
        "assert logging.getLogger().handlers == []\n"
        "handlers = logging.getLogger('flowkit').handlers\n"
        "assert all(isinstance(h, logging.NullHandler) for h in handlers), handlers\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_submodules_import_on_their_own() -> None:
    for module in ("flowkit.exceptions", "flowkit.task", "flowkit.dag", "flowkit.retry"):
        assert importlib.import_module(module).__name__ == module


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        flowkit.Nope  # noqa: B018 - the lookup is the test
    assert not hasattr(flowkit, "dag_runner")
