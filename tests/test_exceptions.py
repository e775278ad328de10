"""Exceptions: their attributes, their pickling, and messages that say what
went wrong, where, and what to do."""

from __future__ import annotations

import functools
import pickle
from typing import Any

import pytest

import flowkit
from flowkit import (
    DAG,
    DAGCycleError,
    DAGValidationError,
    FlowkitError,
    StateError,
    Task,
    TaskDefinitionError,
    TaskExecutionError,
    TaskNotFoundError,
    TaskTimeoutError,
)


def const(value: Any) -> Any:
    return value


def broken(*inputs: Any) -> None:
    raise KeyError("customer_id")


# --- attributes ------------------------------------------------------------------


def test_task_definition_error_attributes() -> None:
    error = TaskDefinitionError("bad", task_name="load", option="retries")
    assert (error.task_name, error.option, str(error)) == ("load", "retries", "bad")
    assert TaskDefinitionError("bad").task_name is None
    assert TaskDefinitionError("bad").option is None


def test_dag_validation_error_attributes() -> None:
    error = DAGValidationError("two tasks named x", task_name="x")
    assert error.task_name == "x"
    assert str(error) == "two tasks named x"


def test_dag_cycle_error_shows_the_cycle_and_a_fix() -> None:
    error = DAGCycleError(["a", "b", "c", "a"])
    assert error.cycle == ["a", "b", "c", "a"]
    assert error.task_name == "a"
    message = str(error)
    assert "a -> b -> c -> a" in message
    assert "remove one of these edges" in message
    assert "'c' >> 'a'" in message


def test_task_not_found_error_lists_the_known_names() -> None:
    error = TaskNotFoundError("lod", ["extract", "load"])
    assert error.task_name == "lod"
    assert error.known == ["extract", "load"]
    assert str(error).startswith("no task named 'lod'")  # not quoted like a plain KeyError
    assert "'extract', 'load'" in str(error)
    assert "Check the spelling" in str(error)


def test_task_not_found_error_shortens_a_long_list() -> None:
    error = TaskNotFoundError("x", [f"t{n}" for n in range(25)])
    assert "'t9'" in str(error)
    assert "'t10'" not in str(error)
    assert "and 15 more" in str(error)
    assert "(none)" in str(TaskNotFoundError("x", []))


def test_state_error_names_the_path() -> None:
    error = StateError("corrupt state file", path="state.json")
    assert error.path == "state.json"
    assert StateError("no path").path is None


def test_task_execution_error_attributes() -> None:
    error = TaskExecutionError("failed", task_name="load", attempts=3)
    assert (error.task_name, error.attempts, error.result) == ("load", 3, None)
    defaults = TaskExecutionError("failed")
    assert (defaults.task_name, defaults.attempts, defaults.result) == (None, 0, None)


def test_task_timeout_error_attributes() -> None:
    error = TaskTimeoutError("slow", task_name="load", attempts=2, timeout=1.5)
    assert (error.task_name, error.attempts, error.timeout) == ("load", 2, 1.5)
    assert isinstance(error, TimeoutError)


# --- pickling (errors travel back from worker processes) ---------------------------


def test_task_execution_error_pickles_with_its_attributes_but_not_the_result() -> None:
    Task(functools.partial(const, 1), name="a")
    run = DAG().run(executor="sync")
    error = TaskExecutionError("failed", task_name="load", attempts=3, result=run)
    error.add_note("in worker 12")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TaskExecutionError
    assert str(copy) == "failed"
    assert (copy.task_name, copy.attempts, copy.result) == ("load", 3, None)
    assert copy.__notes__ == ["in worker 12"]


def test_task_timeout_error_pickles_with_its_timeout() -> None:
    copy = pickle.loads(pickle.dumps(TaskTimeoutError("slow", task_name="t", timeout=0.5)))
    assert type(copy) is TaskTimeoutError
    assert (copy.task_name, copy.timeout, str(copy)) == ("t", 0.5, "slow")


@pytest.mark.parametrize(
    "error",
    [
        TaskDefinitionError("bad", task_name="t", option="retries"),
        DAGValidationError("bad", task_name="t"),
        DAGCycleError(["a", "b", "a"]),
        TaskNotFoundError("x", ["y"]),
        StateError("bad", path="p"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_pickle(error: FlowkitError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


# --- messages from real situations say what to do -----------------------------------


def test_run_failure_message_names_the_task_the_error_and_where_to_look() -> None:
    a = Task(functools.partial(const, 1), name="extract")
    b = Task(broken, name="enrich", retries=1)
    a >> b
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="sync")
    message = str(info.value)
    assert "'enrich'" in message
    assert "after 2 attempt(s)" in message
    assert "KeyError" in message and "customer_id" in message
    assert ".result" in message
    assert isinstance(info.value.__cause__, KeyError)


def test_condition_failure_message_says_the_task_never_ran() -> None:
    def predicate() -> bool:
        raise RuntimeError("no config")

    Task(functools.partial(const, 1), name="guarded", when=predicate)
    with pytest.raises(TaskExecutionError, match=r"'guarded' failed before it ran.*no config"):
        DAG().run(executor="sync")


@pytest.mark.parametrize(
    ("build", "error_type", "advice"),
    [
        (lambda: Task(const, name="t", retries=-1), TaskDefinitionError, "must be an integer >= 0"),
        (lambda: Task(const, name="t", trigger="any"), TaskDefinitionError, "use one of"),
        (lambda: Task(const, name="t") >> 3, TaskDefinitionError, "use a task or a list"),
    ],
    ids=["retries", "trigger", "wiring"],
)
def test_definition_errors_say_what_to_do(build: Any, error_type: type[Exception],
                                          advice: str) -> None:
    with pytest.raises(error_type, match=advice):
        build()


def test_validation_errors_say_what_to_do() -> None:
    a, b = Task(const, name="a"), Task(const, name="b")
    a >> b >> a
    with pytest.raises(DAGCycleError, match="A DAG must be acyclic"):
        DAG()
    flowkit.registry.clear()

    x1 = Task(functools.partial(const, 1), name="x")
    x2 = Task(functools.partial(const, 2), name="x")
    join = Task(lambda *v: v, name="join")
    [x1, x2] >> join
    with pytest.raises(DAGValidationError, match="Give each task a unique name"):
        DAG([join])


def test_arity_error_says_how_to_fix_the_function() -> None:
    a, b = Task(functools.partial(const, 1), name="a"), Task(functools.partial(const, 2), name="b")
    one = Task(const, name="one")
    [a, b] >> one
    with pytest.raises(DAGValidationError) as info:
        DAG()
    assert info.value.task_name == "one"
    assert "one parameter per upstream task" in str(info.value)
    assert "no parameters at all" in str(info.value)


def test_unpicklable_task_error_says_what_to_do() -> None:
    Task(lambda: 1, name="anonymous")
    with pytest.raises(FlowkitError) as info:
        DAG().run(executor="process")
    message = str(info.value)
    assert "'anonymous'" in message
    assert "module level" in message
    assert "executor='thread'" in message
