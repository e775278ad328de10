"""The order of starts: priorities, the critical path, learned durations, resource pools."""

from __future__ import annotations

import functools
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowkit import DAG, DAGValidationError, StateManager, Status, Task, TaskExecutionError, task
from flowkit.cli import main
from flowkit.context import RunContext
from flowkit.outcome import TaskState


class StartOrder:
    """A hook that notes the order in which tasks start."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.waits: list[tuple[str, str]] = []

    def on_task_start(self, run: RunContext, state: TaskState) -> None:
        self.order.append(state.name)

    def on_task_wait(self, run: RunContext, state: TaskState, pool: str) -> None:
        self.waits.append((state.name, pool))


class Concurrency:
    """Counts how many calls run at once, overall and at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __call__(self, seconds: float) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(seconds)
        with self.lock:
            self.now -= 1


def noop(*inputs: Any) -> int:
    return len(inputs)


def make(name: str, **options: Any) -> Task[..., Any]:
    return Task(noop, name=name, **options)


def test_higher_priority_starts_first() -> None:
    root = make("root")
    low, high, mid = make("low"), make("high", priority=5), make("mid", priority=1)
    root >> [low, high, mid]
    hook = StartOrder()
    dag = DAG()
    dag.run(executor="sync", hooks=[hook])
    assert hook.order == ["root", "high", "mid", "low"]
    assert dag.plan().order == hook.order


def test_the_longest_remaining_path_starts_first_and_ties_keep_declaration_order() -> None:
    root = make("root")
    short, long_head, long_tail = make("short"), make("long_head"), make("long_tail")
    twin = make("twin")
    root >> [short, long_head, twin]
    long_head >> long_tail
    hook = StartOrder()
    DAG().run(executor="sync", hooks=[hook])
    # long_head leads a path of 2; short and twin (1 each) keep their declaration order.
    assert hook.order[:2] == ["root", "long_head"]
    assert hook.order.index("short") < hook.order.index("twin")


def test_priority_outranks_the_critical_path() -> None:
    root = make("root")
    short, long_head = make("short", priority=1), make("long_head")
    root >> [short, long_head] >> make("end")
    long_head >> make("after")
    assert DAG().plan().order[:3] == ["root", "short", "long_head"]


def test_durations_learned_from_history_reorder_the_next_run(tmp_path: Path) -> None:
    @task
    def quick() -> None:
        pass

    @task
    def slow() -> None:
        time.sleep(0.05)

    state = StateManager(tmp_path / "state.json")
    dag = DAG([quick, slow], name="learn")
    first, second = StartOrder(), StartOrder()
    dag.run(executor="sync", state=state, hooks=[first])
    assert first.order == ["quick", "slow"]  # nothing known yet: declaration order
    dag.run(executor="sync", state=state, hooks=[second])
    assert second.order == ["slow", "quick"]  # the longer one leads the critical path now
    assert dag.plan().order == ["quick", "slow"]  # the DAG's own state has no history of it


def test_a_pool_limits_how_many_of_its_tasks_run_at_once() -> None:
    in_pool, overall = Concurrency(), Concurrency()

    def limited(seconds: float) -> None:
        overall(0)
        in_pool(seconds)

    tasks = [Task(functools.partial(limited, 0.03), name=f"api{i}", pool="api") for i in range(6)]
    free = [Task(functools.partial(overall, 0.05), name=f"free{i}") for i in range(3)]
    dag = DAG([*tasks, *free])
    with pytest.raises(DAGValidationError):  # a pool the run does not define
        dag.run(executor="thread", max_workers=8)
    hook = StartOrder()
    run = dag.run(executor="thread", max_workers=8, pools={"api": 2}, hooks=[hook])
    assert run.ok
    assert in_pool.most == 2
    assert overall.most > 2  # everything else runs at full width
    assert {pool for _, pool in hook.waits} == {"api"}


def test_a_pool_covers_the_items_of_a_mapped_task() -> None:
    seen = Concurrency()

    @task
    def items() -> list[float]:
        return [0.02] * 6

    @task(pool="db")
    def write(seconds: float) -> float:
        seen(seconds)
        return seconds

    items >> write.map()
    run = DAG().run(executor="thread", max_workers=4, pools={"db": 1})
    assert run["write"] == [0.02] * 6
    assert seen.most == 1


def test_pool_slots_take_several_slots() -> None:
    seen = Concurrency()
    wide = Task(lambda: seen(0.03), name="wide", pool="db", pool_slots=2)
    narrow = [Task(lambda: seen(0.03), name=f"narrow{i}", pool="db") for i in range(2)]
    run = DAG([wide, *narrow]).run(executor="thread", max_workers=4, pools={"db": 2})
    assert run.ok
    assert seen.most == 2  # never wide beside a narrow one


def test_a_retry_wait_holds_no_slot() -> None:
    times: dict[str, list[float]] = {"flaky": [], "other": []}
    start = time.monotonic()

    @task(pool="db", retries=1, retry_delay=0.3)
    def flaky() -> None:
        times["flaky"].append(time.monotonic() - start)
        if len(times["flaky"]) == 1:
            raise ConnectionError("try again")

    @task(pool="db", priority=-1)
    def other() -> None:
        times["other"].append(time.monotonic() - start)

    run = DAG().run(executor="thread", max_workers=2, pools={"db": 1})
    assert run.states["flaky"].attempts == 2
    # ``other`` ran while flaky waited for its retry, not after it.
    assert times["flaky"][0] < times["other"][0] < times["flaky"][1]


def test_pool_errors_are_found_before_anything_runs() -> None:
    calls: list[str] = []
    needy = Task(lambda: calls.append("x"), name="needy", pool="db", pool_slots=3)
    dag = DAG([needy])
    with pytest.raises(DAGValidationError, match=r"needy.*3 slots.*only 2"):
        dag.run(pools={"db": 2})
    with pytest.raises(DAGValidationError, match=r"'needy' runs in pool 'db'.*pools=\{'db': N\}"):
        dag.run(pools={"other": 1})
    with pytest.raises(DAGValidationError, match="positive whole number"):
        dag.run(pools={"db": 0})
    with pytest.raises(DAGValidationError, match="mapping"):
        dag.run(pools=["db"])  # type: ignore[arg-type]
    assert calls == []


def test_a_wait_for_a_pool_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    first = Task(lambda: time.sleep(0.05), name="first", pool="db")
    second = Task(lambda: None, name="second", pool="db")
    with caplog.at_level(logging.DEBUG, logger="flowkit"):
        DAG([first, second]).run(executor="thread", max_workers=2, pools={"db": 1})
    waits = [r for r in caplog.records if getattr(r, "event", None) == "task.wait"]
    assert [(r.task, r.pool) for r in waits] == [("second", "db")]  # type: ignore[attr-defined]


def test_fail_fast_cancels_tasks_waiting_for_a_pool() -> None:
    @task(pool="db")
    def bad() -> None:
        raise ValueError("no")

    @task(pool="db")
    def later() -> None:
        pass

    with pytest.raises(TaskExecutionError) as info:
        DAG().run(executor="thread", max_workers=2, pools={"db": 1})
    result = info.value.result
    assert result is not None
    assert result.states["later"].status is Status.CANCELLED


POOLED = """
    from flowkit import task

    @task(pool="db")
    def one() -> int:
        return 1

    @task(pool="db")
    def two() -> int:
        return 2
"""


def test_cli_pool_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "flow.py"
    path.write_text(POOLED.replace("\n    ", "\n"), encoding="utf-8")
    assert main(["run", str(path), "--pool", "db=1"]) == 0
    capsys.readouterr()
    assert main(["run", str(path)]) == 2
    assert "--pool db=N" in capsys.readouterr().err
    assert main(["run", str(path), "--pool", "db=none"]) == 2
    assert "NAME=SLOTS" in capsys.readouterr().err


@pytest.mark.parametrize("executor", ["sync", "thread"])
def test_a_task_ready_later_overtakes_tied_tasks_that_have_not_started(executor: str) -> None:
    # x1..x3 tie (one key) and only one may run at a time: the others wait in
    # the start queue, not in the executor's, so "urgent", ready once x1 ends,
    # still starts before x2 and x3.
    root = make("root")
    xs = [make(f"x{k}") for k in (1, 2, 3)]
    urgent, y2, y3 = make("urgent", priority=5), make("y2"), make("y3")
    root >> xs
    xs[0] >> urgent  # each x leads a path of 2: they tie
    xs[1] >> y2
    xs[2] >> y3
    hook = StartOrder()
    dag = DAG()
    result = dag.run(executor=executor, max_workers=1, hooks=[hook])
    assert hook.order == ["root", "x1", "urgent", "x2", "x3", "y2", "y3"]
    assert result.start_order == hook.order
    assert dag.plan().order == hook.order


def test_a_longer_path_ready_later_overtakes_tied_tasks_that_have_not_started() -> None:
    # Two workers. "long" and "a1" start first; when a1 ends, a2..a4 tie and
    # only a2 has a worker: a3 and a4 wait in the start queue, so "l2" (a path
    # of 2), ready once "long" ends (after a2 started), starts before them.
    a2_started, l2_started = threading.Event(), threading.Event()
    long = Task(lambda: a2_started.wait(10), name="long")
    l2 = Task(lambda _: l2_started.set(), name="l2")
    l3 = make("l3")
    a1 = make("a1")

    def busy_until_l2_started() -> None:
        a2_started.set()
        l2_started.wait(10)

    a2 = Task(busy_until_l2_started, name="a2")
    a3, a4 = make("a3"), make("a4")
    long >> l2 >> l3
    hook = StartOrder()
    DAG([long, a1, a2, a3, a4, l3]).run(executor="thread", max_workers=2, hooks=[hook])
    assert hook.order[:2] == ["long", "a1"]
    assert hook.order.index("l2") < min(hook.order.index("a3"), hook.order.index("a4"))
