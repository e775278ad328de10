"""Mapping a task over the items of an upstream result: task.map()."""

from __future__ import annotations

from pathlib import Path

import pytest

import flowkit
from flowkit import DAG, SKIPPED, Status, Task, TaskExecutionError, task


def numbers() -> list[int]:
    return [1, 2, 3, 4]


def square(x: int) -> int:
    return x * x


def total(values: list[int]) -> int:
    return sum(values)


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is bad")
    return x


def test_map_calls_the_task_once_per_item_in_order(executor: str) -> None:
    source = Task(numbers, name="numbers")
    mapped = Task(square, name="square").map()
    join = Task(total, name="total")
    source >> mapped >> join
    run = DAG([join]).run(executor=executor)
    assert run["square"] == [1, 4, 9, 16]
    assert run["total"] == 30
    assert [run.states[f"square[{k}]"].status for k in range(4)] == [Status.SUCCESS] * 4
    assert run["square[2]"] == 9
    assert run.ok


def test_each_item_is_its_own_unit_with_retries(tmp_path: Path) -> None:
    marker = tmp_path / "failed-once"

    @task(retries=2)
    def flaky(x: int) -> int:
        if x == 2 and not marker.exists():
            marker.touch()
            raise ConnectionError("first try fails")
        return x

    @task
    def items() -> list[int]:
        return [1, 2, 3]

    items >> flaky.map()
    run = DAG().run(executor="thread")
    assert run["flaky"] == [1, 2, 3]
    assert run.states["flaky[1]"].attempts == 2
    assert run.states["flaky[0]"].attempts == 1


def nothing() -> list[int]:
    return []


def count(values: list[int]) -> int:
    return len(values)


def test_empty_list_maps_to_empty_list(executor: str) -> None:
    after = Task(count, name="after")
    Task(nothing, name="nothing") >> Task(square, name="square").map() >> after
    run = DAG().run(executor=executor)
    assert run["square"] == []
    assert run["after"] == 0


def test_progress_total_grows_when_a_map_expands() -> None:
    totals: list[int] = []

    class Watch:
        def on_task_success(self, run: flowkit.RunContext, state: flowkit.TaskState) -> None:
            totals.append(run.total)

    Task(numbers, name="numbers") >> Task(square, name="square").map()
    DAG().run(executor="sync", hooks=[Watch()])
    assert totals[0] == 2  # before the expansion: the source and the map node
    assert totals[-1] == 6  # then 4 items more


def test_failed_item_follows_fail_fast() -> None:
    Task(numbers, name="numbers") >> Task(fail_on_three, name="check").map() >> Task(
        total, name="total"
    )
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="sync")
    assert info.value.task_name == "check[2]"
    run = info.value.result
    assert run is not None
    assert run.states["check[2]"].status is Status.FAILED
    assert run.states["check"].status is Status.UPSTREAM_FAILED
    assert run.states["check"].cause == "check[2]"
    assert run.states["total"].status is Status.UPSTREAM_FAILED
    assert run.states["check[3]"].status is Status.CANCELLED


def test_failed_item_without_fail_fast_lets_other_items_finish() -> None:
    Task(numbers, name="numbers") >> Task(fail_on_three, name="check").map()
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="thread", fail_fast=False)
    run = info.value.result
    assert run is not None
    assert [run.states[f"check[{k}]"].status for k in range(4)] == [
        Status.SUCCESS,
        Status.SUCCESS,
        Status.FAILED,
        Status.SUCCESS,
    ]
    assert run.states["check"].status is Status.UPSTREAM_FAILED


def test_map_whose_upstream_fails_is_upstream_failed() -> None:
    @task
    def broken() -> list[int]:
        raise RuntimeError("no items")

    broken >> Task(square, name="square").map()
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="sync")
    run = info.value.result
    assert run is not None
    assert run.states["square"].status is Status.UPSTREAM_FAILED
    assert not any(name.startswith("square[") for name in run.states)


def test_map_inside_a_skipped_branch_is_skipped() -> None:
    @task(when=lambda: False)
    def branch() -> list[int]:
        return [1, 2]

    @task(trigger="none_failed")
    def join(values: object) -> object:
        return values

    branch >> Task(square, name="square").map() >> join
    run = DAG().run(executor="sync")
    assert run.states["square"].status is Status.SKIPPED
    assert run.states["square"].cause == "branch"
    assert run["join"] is SKIPPED


def test_mapping_over_a_non_iterable_fails_clearly() -> None:
    @task
    def one() -> int:
        return 1

    one >> Task(square, name="square").map()
    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="sync")
    assert "not an iterable" in str(info.value)
    assert info.value.task_name == "square"


def test_when_is_evaluated_per_item() -> None:
    @task(when=lambda x: x % 2 == 0)
    def even_only(x: int) -> int:
        return x

    Task(numbers, name="numbers") >> even_only.map()
    run = DAG().run(executor="sync")
    assert run["even_only"] == [SKIPPED, 2, SKIPPED, 4]
    assert run.states["even_only[0]"].status is Status.SKIPPED


def test_each_item_has_its_own_cache_entry() -> None:
    calls: list[int] = []

    @task(cache_ttl=60)
    def slow_square(x: int) -> int:
        calls.append(x)
        return x * x

    @task
    def items() -> list[int]:
        return [2, 3, 2]

    items >> slow_square.map()
    dag = DAG()
    assert dag.run(executor="sync")["slow_square"] == [4, 9, 4]
    first_calls = list(calls)
    second = dag.run(executor="sync")
    assert second["slow_square"] == [4, 9, 4]
    assert calls == first_calls  # every item was a cache hit the second time
    assert {second.states[f"slow_square[{k}]"].status for k in range(3)} == {Status.CACHED}


def test_map_needs_an_upstream() -> None:
    Task(square, name="square").map()
    with pytest.raises(flowkit.DAGValidationError, match="square"):
        DAG()


def test_extra_upstreams_are_passed_unchanged() -> None:
    @task
    def items() -> list[int]:
        return [1, 2]

    @task
    def factor() -> int:
        return 10

    @task
    def times(x: int, f: int) -> int:
        return x * f

    [items, factor] >> times.map()
    assert DAG().run(executor="sync")["times"] == [10, 20]


def test_map_node_can_be_called_directly_for_unit_tests() -> None:
    mapped = Task(square, name="square").map(name="squares")
    assert mapped.name == "squares"
    assert mapped([1, 2, 3]) == [1, 4, 9]


def test_only_plain_tasks_can_be_mapped() -> None:
    mapped = Task(square, name="square").map()
    with pytest.raises(flowkit.TaskDefinitionError):
        flowkit.MapTask(mapped)  # type: ignore[arg-type]
