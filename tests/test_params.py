"""Run parameters: dag.run(params=...) fills, by name, the parameters no upstream task feeds."""

from __future__ import annotations

import pytest

import flowkit
from flowkit import DAG, DAGValidationError, FlowkitError, Task, task


def greet(day: str, greeting: str = "hello") -> str:
    return f"{greeting} {day}"


def shout(text: str, *, suffix: str = "!") -> str:
    return text.upper() + suffix


def test_parameters_fill_unfed_names_and_defaults_apply(executor: str) -> None:
    g = Task(greet, name="greet")
    s = Task(shout, name="shout")
    g >> s
    run = DAG([s]).run(executor=executor, params={"day": "monday"})
    assert run["greet"] == "hello monday"
    assert run["shout"] == "HELLO MONDAY!"

    run = DAG([s]).run(executor=executor, params={"day": "tue", "greeting": "hi", "suffix": "?"})
    assert run["shout"] == "HI TUE?"


def test_upstream_values_are_positional_and_parameters_keyword() -> None:
    @task
    def rows() -> list[int]:
        return [1, 2, 3]

    @task
    def scale(values: list[int], factor: int) -> list[int]:
        return [v * factor for v in values]

    rows >> scale
    assert DAG().run(executor="sync", params={"factor": 10})["scale"] == [10, 20, 30]


def test_missing_required_parameter_is_found_before_anything_runs() -> None:
    calls: list[str] = []

    @task
    def first() -> int:
        calls.append("first")
        return 1

    @task
    def needs(x: int, day: str) -> str:
        return f"{x} {day}"

    first >> needs
    with pytest.raises(DAGValidationError) as info:
        DAG().run(executor="sync")
    message = str(info.value)
    assert "'needs'" in message and "'day'" in message and "params=" in message
    assert info.value.task_name == "needs"
    assert calls == []


def test_unknown_run_parameter_is_a_typo_error() -> None:
    @task
    def report(day: str) -> str:
        return day

    with pytest.raises(FlowkitError) as info:
        DAG().run(executor="sync", params={"day": "x", "dya": "y"})
    assert "'dya'" in str(info.value)
    assert "day" in str(info.value)


def test_parameters_are_part_of_the_cache_key() -> None:
    calls: list[str] = []

    @task(cache_ttl=60)
    def fetch(day: str) -> str:
        calls.append(day)
        return day * 2

    dag = DAG()
    assert dag.run(executor="sync", params={"day": "a"})["fetch"] == "aa"
    second = dag.run(executor="sync", params={"day": "a"})
    assert second.states["fetch"].status is flowkit.Status.CACHED
    assert dag.run(executor="sync", params={"day": "b"})["fetch"] == "bb"
    assert calls == ["a", "b"]


def test_parameters_are_visible_to_hooks() -> None:
    seen: list[object] = []

    class Hook:
        def on_dag_start(self, run: flowkit.RunContext) -> None:
            seen.append(dict(run.params))

    @task
    def use(day: str) -> str:
        return day

    DAG().run(executor="sync", params={"day": "d"}, hooks=[Hook()])
    assert seen == [{"day": "d"}]


def test_a_parameter_of_a_task_outside_targets_is_no_typo() -> None:
    @task
    def first(day: str) -> str:
        return day

    @task
    def second(limit: int) -> int:
        return limit

    run = DAG().run(executor="sync", targets=["first"], params={"day": "d", "limit": 3})
    assert run["first"] == "d" and "second" not in run.states
    with pytest.raises(DAGValidationError, match="'dya'"):
        DAG().run(executor="sync", targets=["first"], params={"day": "d", "dya": 1})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["day"], "params must be a mapping of parameter name to value"),
        ("day=monday", "params must be a mapping"),
        ({1: "monday"}, "parameter name must be a string"),
    ],
)
def test_params_that_are_no_mapping_of_names_are_refused(params: object, message: str) -> None:
    calls: list[str] = []

    @task
    def use(day: str) -> str:
        calls.append(day)
        return day

    with pytest.raises(FlowkitError, match=message):
        DAG().run(executor="sync", params=params)  # type: ignore[arg-type]
    assert calls == []
