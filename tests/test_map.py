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


# --- a big map in the output: folded into one row ------------------------------------


def _big_map_run(count: int, bad: set[int]) -> flowkit.RunResult:
    @task
    def items() -> list[int]:
        return list(range(count))

    @task
    def work(i: int) -> int:
        if i in bad:
            raise ValueError(f"bad item {i}")
        return i

    @task
    def after() -> str:
        return "independent"

    node = items >> work.map()
    with pytest.raises(TaskExecutionError) as caught:
        DAG([node, after], name="big").run(executor="sync", fail_fast=False)
    assert caught.value.result is not None
    return caught.value.result


def test_summary_folds_the_items_of_a_map_into_one_row() -> None:
    run = _big_map_run(2_000, {5, 77, 900, 901, 902, 903, 1999})
    lines = run.summary().splitlines()
    assert len(lines) == 2 + 3 + 5 + 1 + 1  # header, 3 tasks, 5 failed items, "more", verdict
    node = next(line for line in lines if line.startswith("work "))
    assert node.split()[:3] == ["work", "UPSTREAM_FAILED", "2,000"]  # attempts of its items
    assert node.endswith("2,000 items: 1,993 success, 7 failed")
    listed = [line.split()[0] for line in lines if line.startswith("  work[")]
    assert listed == ["work[5]", "work[77]", "work[900]", "work[901]", "work[902]"]
    assert "ValueError: bad item 5" in lines[lines.index(node) + 1]
    assert any(line.strip() == "… and 2 more failed" for line in lines)
    assert lines[-1].endswith(
        "(2 success, 1 upstream_failed; 2,000 items: 1,993 success, 7 failed)"
    )
    assert len(run.map_items("work")) == 2_000 and run.map_items("items") == []
    assert run.map_items("work")[77].status is Status.FAILED


def test_summary_rows_of_a_small_or_clean_map() -> None:
    source = Task(numbers, name="numbers")
    node = source >> Task(square, name="square").map()
    run = DAG([node]).run(executor="sync")
    rows = run.summary_rows()
    assert [r.name for r in rows] == ["numbers", "square"]
    assert (rows[1].status, rows[1].attempts, rows[1].cause) == (
        Status.SUCCESS, 4, "4 items: 4 success"
    )
    assert run.summary().splitlines()[-1].endswith("(2 success; 4 items: 4 success)")


def test_the_html_report_folds_a_big_map(tmp_path: Path) -> None:
    run = _big_map_run(3_000, set(range(0, 3_000, 100)))  # 30 failed items
    page = run.to_html()
    table = page[page.index('<table class="summary">'):page.index("</table>")]
    assert table.count("<tr") == 1 + 3 + 5 + 1  # head, tasks, listed items, "more"
    assert "3,000 items: 2,970 success, 30 failed" in table
    assert "… and 25 more failed" in table
    assert "3 tasks and 3,000 mapped items" in page
    timeline = page[page.index('class="timeline"'):page.index("</svg>")]
    assert timeline.count('class="bar') < 10  # one bar per worker for the map's items
    assert "3,000 item attempts on" in timeline
    errors = page[page.index("<h2>Errors</h2>"):]
    assert errors.count("<details>") == 20 and "… and 10 more failed task(s)" in errors


def test_the_command_line_folds_a_big_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flowkit.cli import main

    path = tmp_path / "bigmap.py"
    path.write_text(
        "from flowkit import DAG, task\n\n"
        "@task\ndef items() -> list[int]:\n    return list(range(5_000))\n\n"
        "@task\ndef work(i: int) -> int:\n"
        "    if i % 250 == 0:\n        raise ValueError(f'bad item {i}')\n    return i\n\n"
        "dag = DAG([items >> work.map()], name='big')\n",
        encoding="utf-8",
    )
    code = main(["run", str(path), "--executor", "sync", "--no-fail-fast", "--log-level",
                 "CRITICAL"])
    out, err = capsys.readouterr()
    assert code == 1
    assert len(out.splitlines()) < 20 and "5,000 items: 4,980 success, 20 failed" in out
    lines = err.splitlines()
    assert len(lines) == 11 and lines[-1].startswith("flowkit: … and 10 more failed task(s)")


def test_the_progress_bar_folds_running_items_at_100_000() -> None:
    import io

    from flowkit.progress import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = ProgressBar(Terminal(), width=100, clock=lambda: 0.0)
    run = flowkit.RunContext("huge", "r1", 100_002, "thread")
    bar.on_dag_start(run)
    try:
        node = Task(square, name="square").map()
        for k in range(100_000):
            state = flowkit.TaskState(node)
            state.name = f"square[{k}]"
            bar.on_task_start(run, state)
        bar.on_task_start(run, flowkit.TaskState(Task(numbers, name="numbers")))
        run.done = 98_765
        text = bar.render()
        assert "98,765/100,002  99%" in text
        assert "running: square (100,000 items), numbers |" in text
        assert len(text) <= 99
    finally:
        bar.close()
