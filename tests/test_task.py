"""Tasks: the decorator, options and their validation, wiring, the registry,
pickling, and the retry schedule."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import pickle
import random
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import flowkit
from flowkit import DAG, DAGValidationError, Registry, Status, Task, TaskDefinitionError, task

# --- module-level functions (importable by worker processes) -----------------


def double(rows: list[int]) -> list[int]:
    """Double every row."""
    return [r * 2 for r in rows]


def noop() -> None:
    return None


def always_fails() -> None:
    raise ConnectionError("the server hung up")


def raises_value_error() -> None:
    raise ValueError("bad input")


def flaky(counter: Path, failures: int) -> str:
    """Fail ``failures`` times (counted in a file, so it works across processes), then succeed."""
    calls = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(calls))
    if calls <= failures:
        raise ConnectionError(f"call {calls} failed")
    return f"ok after {calls} calls"


@task
def module_task() -> int:
    return 42


@task(name="renamed_module_task", retries=1)
def module_task_with_options() -> int:
    return 7


class FakeClock:
    """A clock that only moves when slept on; records every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --- declaring tasks -------------------------------------------------------------


def test_bare_decorator_makes_a_task_named_after_the_function() -> None:
    @task
    def extract() -> list[int]:
        return [1, 2, 3]

    assert isinstance(extract, Task)
    assert extract.name == "extract"
    assert extract.options == flowkit.TaskOptions()


def test_decorator_with_parentheses_and_options() -> None:
    @task(retries=3, retry_delay=0.5, timeout=60)
    def transform(rows: list[int]) -> list[int]:
        return rows

    assert transform.name == "transform"
    assert (transform.options.retries, transform.options.retry_delay) == (3, 0.5)
    assert transform.options.timeout == 60


def test_decorator_with_empty_parentheses() -> None:
    @task()
    def extract() -> int:
        return 1

    assert extract.name == "extract"
    assert extract() == 1


def test_task_class_takes_a_function_and_a_name() -> None:
    t = Task(double, name="twice", retries=2)
    assert t.name == "twice"
    assert t.fn is double
    assert t.options.retries == 2


def test_name_option_overrides_the_function_name() -> None:
    @task(name="load_rows")
    def load() -> None:
        return None

    assert load.name == "load_rows"
    assert flowkit.registry["load_rows"] is load


def test_option_defaults_match_the_documented_ones() -> None:
    options = Task(noop).options
    assert options.retries == 0
    assert options.retry_delay == 0.0
    assert options.backoff == 2.0
    assert options.max_delay is None
    assert options.jitter == 0.0
    assert options.retry_on == (Exception,)
    assert options.timeout is None
    assert options.when is None
    assert options.trigger == "all_success"
    assert options.cache_ttl is None
    assert options.cache_key is None


def test_calling_a_task_calls_the_plain_function() -> None:
    t = Task(double)
    assert t([1, 2]) == [2, 4]
    assert t.fn is double
    assert t.fn([3]) == [6]


def test_task_keeps_the_function_metadata() -> None:
    t = Task(double)
    assert t.__name__ == "double"
    assert t.__doc__ == "Double every row."
    assert t.__module__ == __name__
    assert t.__qualname__ == "double"
    assert t.__wrapped__ is double
    assert inspect.signature(t) == inspect.signature(double)
    assert Task(functools.partial(double), name="p").__name__ == "p"  # a partial has none


def test_the_task_classes_keep_their_own_metadata() -> None:
    assert Task.__name__ == "Task" and Task.__qualname__ == "Task"
    assert Task.__module__ == "flowkit.task"
    assert Task.__doc__ is not None and Task.__doc__.startswith("A function the scheduler")
    assert not hasattr(Task, "__wrapped__")
    assert "(fn: 'Callable[P, R]'" in str(inspect.signature(Task))
    mapped = Task(double).map()
    assert mapped.__doc__ == "Double every row."
    assert type(mapped).__doc__ is not None and "mapped" in type(mapped).__doc__


def test_a_task_takes_attributes_and_weak_references_like_a_function() -> None:
    t = Task(double)
    t.owner = "data team"  # type: ignore[attr-defined]
    t.__doc__ = "Double, documented again."
    assert t.owner == "data team"  # type: ignore[attr-defined]
    assert t.__doc__ == "Double, documented again."
    assert weakref.ref(t)() is t


def test_task_repr_names_it() -> None:
    assert repr(Task(noop, name="n")) == "<Task 'n'>"


def test_non_callable_is_refused() -> None:
    with pytest.raises(TaskDefinitionError, match="needs a function"):
        Task(42)  # type: ignore[arg-type]


def test_function_without_a_name_needs_one() -> None:
    callable_object = functools.partial(double, [1])
    with pytest.raises(TaskDefinitionError, match="name="):
        Task(callable_object)
    assert Task(callable_object, name="partial_double")() == [2]


def test_task_called_on_a_function_with_options_is_like_task_class() -> None:
    made = task(double, name="doubler", retries=2)
    assert isinstance(made, Task) and made.name == "doubler"
    assert made.options.retries == 2 and made.fn is double
    assert flowkit.registry.get("doubler") is made
    assert made([3]) == [6]
    with pytest.raises(TaskDefinitionError, match=r"'doubler'.*retries=-1"):
        task(double, name="doubler", retries=-1)


def test_jitter_is_described_as_a_fraction_of_the_delay() -> None:
    with pytest.raises(TaskDefinitionError, match="fraction of the delay") as info:
        task(noop, jitter=-1)
    assert "seconds" not in str(info.value)


# --- option validation -------------------------------------------------------

BAD_OPTIONS: list[tuple[str, Any]] = [
    ("retries", -1),
    ("retries", 1.5),
    ("retries", True),
    ("retries", "3"),
    ("retry_delay", -0.1),
    ("retry_delay", "1s"),
    ("retry_delay", math.nan),
    ("backoff", 0.5),
    ("backoff", None),
    ("max_delay", -1),
    ("max_delay", "10"),
    ("jitter", -0.5),
    ("timeout", 0),
    ("timeout", -2.0),
    ("timeout", "60"),
    ("cache_ttl", -1),
    ("cache_ttl", "1h"),
    ("when", True),
    ("when", "rows > 0"),
    ("cache_key", 3),
    ("trigger", "sometimes"),
    ("trigger", "ALL_SUCCESS"),
    ("retry_on", ValueError("not a class")),
    ("retry_on", (ValueError, int)),
    ("retry_on", "ValueError"),
    ("retry_on", [ValueError]),
]


@pytest.mark.parametrize(("option", "value"), BAD_OPTIONS)
def test_invalid_option_fails_at_decoration_time(option: str, value: Any) -> None:
    with pytest.raises(TaskDefinitionError) as info:
        task(**{option: value})(noop)
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, flowkit.FlowkitError)
    assert error.task_name == "noop"
    assert error.option == option
    assert "'noop'" in str(error)
    assert f"{option}=" in str(error)


def test_invalid_option_through_task_class_names_the_given_name() -> None:
    with pytest.raises(TaskDefinitionError, match=r"'my_task'.*retries=-1"):
        Task(noop, name="my_task", retries=-1)


def test_invalid_task_is_not_registered() -> None:
    with pytest.raises(TaskDefinitionError):
        Task(noop, timeout=0)
    assert "noop" not in flowkit.registry


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retries", 0),
        ("retry_delay", 0),
        ("backoff", 1),
        ("max_delay", 0),
        ("jitter", 1.0),
        ("timeout", 0.001),
        ("cache_ttl", 0),
        ("cache_ttl", math.inf),
        ("trigger", "none_failed"),
        ("trigger", "all_done"),
        ("when", bool),
        ("cache_key", repr),
    ],
)
def test_boundary_values_are_accepted(option: str, value: Any) -> None:
    t = task(**{option: value})(noop)
    assert getattr(t.options, option) == value


def test_retry_on_accepts_a_single_exception_class() -> None:
    t = Task(noop, retry_on=ConnectionError)
    assert t.options.retry_on == (ConnectionError,)


@pytest.mark.parametrize(
    ("option", "value"),
    [("priority", 1.5), ("priority", True), ("pool", ""), ("pool", 3), ("pool_slots", 0),
     ("pool_slots", 2.0)],
)
def test_scheduling_options_are_checked_like_the_others(option: str, value: Any) -> None:
    with pytest.raises(TaskDefinitionError) as info:
        task(**{option: value})(noop)
    assert info.value.option == option and f"'noop': option {option}=" in str(info.value)


def test_scheduling_options_take_their_documented_values() -> None:
    assert (Task(noop).options.priority, Task(noop).options.pool) == (0, None)
    assert Task(noop).options.pool_slots == 1
    t = Task(noop, priority=-3, pool="db", pool_slots=2)
    assert (t.options.priority, t.options.pool, t.options.pool_slots) == (-3, "db", 2)


def test_an_unknown_option_names_the_task_and_lists_the_options() -> None:
    advice = r"'noop': unknown option retires=.*retries,"
    with pytest.raises(TaskDefinitionError, match=advice) as info:
        task(retires=3)(noop)  # type: ignore[call-overload]
    assert info.value.option == "retires"
    assert "noop" not in flowkit.registry


def test_explicit_defaults_equal_the_default_options() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(flowkit.TaskOptions)}
    assert Task(noop, **defaults).options == Task(noop).options == flowkit.TaskOptions()


def test_the_keyword_types_follow_the_option_definition() -> None:
    from flowkit.task import TaskOptionArgs

    fields = [f.name for f in dataclasses.fields(flowkit.TaskOptions)]
    assert list(TaskOptionArgs.__annotations__) == fields


def test_the_documented_option_table_is_the_definition() -> None:
    from flowkit.task import options_table

    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    tables = [p for p in pages if p.exists() and "| option | default |" in p.read_text()]
    assert tables, "no page shows the task option table"
    for page in tables:
        text = page.read_text(encoding="utf-8")
        assert options_table() in text, f"{page.name}: regenerate with flowkit.task.options_table()"


def test_task_options_are_frozen() -> None:
    t = Task(noop)
    with pytest.raises(AttributeError):
        t.options.retries = 5  # type: ignore[misc]


# --- wiring ------------------------------------------------------------------------


def make(*names: str) -> list[Task[..., Any]]:
    return [Task(noop, name=name) for name in names]


def test_rshift_returns_the_right_hand_task() -> None:
    a, b = make("a", "b")
    assert (a >> b) is b
    assert b.upstream == (a,)
    assert a.downstream == (b,)


def test_rshift_to_a_list_returns_the_list() -> None:
    a, b, c = make("a", "b", "c")
    targets = [b, c]
    assert (a >> targets) is targets
    assert a.downstream == (b, c)
    assert b.upstream == (a,)
    assert c.upstream == (a,)


def test_list_rshift_task_returns_the_task() -> None:
    a, b, c = make("a", "b", "c")
    assert ([a, b] >> c) is c
    assert c.upstream == (a, b)


def test_lshift_is_the_mirror_of_rshift() -> None:
    a, b, c, d = make("a", "b", "c", "d")
    assert (a << b) is a
    assert a.upstream == (b,)
    assert (c << [a, b]) is c
    assert c.upstream == (a, b)
    sources = [a, b]
    assert (sources << d) is sources
    assert a.upstream == (b, d)
    assert b.upstream == (d,)


def test_chain_through_a_list_fans_out_and_in() -> None:
    a, b, c, d = make("a", "b", "c", "d")
    result = a >> [b, c] >> d
    assert result is d
    assert a.downstream == (b, c)
    assert d.upstream == (b, c)


def test_long_chain_reads_left_to_right() -> None:
    a, b, c = make("a", "b", "c")
    a >> b >> c
    assert c.upstream == (b,)
    assert b.upstream == (a,)
    assert a.upstream == ()


def test_upstream_and_downstream_keep_declaration_order() -> None:
    a, b, c, d = make("a", "b", "c", "d")
    c >> d
    a >> d
    b >> d
    assert d.upstream == (c, a, b)
    d >> b  # nonsense as a DAG, but the order of declarations is what is recorded
    assert d.downstream == (b,)


def test_duplicate_edge_is_a_no_op() -> None:
    a, b, c = make("a", "b", "c")
    a >> b
    c >> b
    a >> b
    [a, c] >> b
    assert b.upstream == (a, c)
    assert a.downstream == (b,)


def test_a_large_fan_in_keeps_each_edge_once_in_declaration_order() -> None:
    ups = list(make(*(f"u{k}" for k in range(40))))
    (join,) = make("join")
    ups[:5] >> join
    ups >> join  # the first five again, then the rest
    ups[::-1] >> join
    join << ups[7]
    assert join.upstream == tuple(ups)
    assert all(up.downstream == (join,) for up in ups)


def test_self_edge_is_refused() -> None:
    (a,) = make("a")
    with pytest.raises(TaskDefinitionError, match="'a' cannot depend on itself"):
        a >> a
    with pytest.raises(TaskDefinitionError, match="itself"):
        a << [a]
    assert a.upstream == ()


@pytest.mark.parametrize(
    "wire",
    [
        lambda a, b: a >> 3,
        lambda a, b: 3 >> a,
        lambda a, b: a << "b",
        lambda a, b: a >> noop,
        lambda a, b: a >> [b, None],
        lambda a, b: [b, 3] >> a,
        lambda a, b: a << [b, 3],
        lambda a, b: [b, "x"] << a,
        lambda a, b: a >> {b},
    ],
    ids=[
        "task>>int",
        "int>>task",
        "task<<str",
        "task>>function",
        "task>>list-with-None",
        "list-with-int>>task",
        "task<<list-with-int",
        "list-with-str<<task",
        "task>>set",
    ],
)
def test_wiring_a_non_task_is_refused_without_partial_edges(
    wire: Callable[[Task[..., Any], Task[..., Any]], object],
) -> None:
    a, b = make("a", "b")
    with pytest.raises(TaskDefinitionError, match="'a'") as info:
        wire(a, b)
    assert isinstance(info.value, flowkit.FlowkitError)
    assert "task" in str(info.value)
    assert a.upstream == a.downstream == b.upstream == b.downstream == ()


# --- the registry -------------------------------------------------------------


def test_every_task_registers_itself_by_name() -> None:
    a, b = make("a", "b")
    assert flowkit.registry.names() == ["a", "b"]
    assert flowkit.registry["a"] is a
    assert flowkit.registry.get("b") is b
    assert flowkit.registry.get("zzz") is None
    assert "a" in flowkit.registry
    assert list(flowkit.registry) == [a, b]
    assert len(flowkit.registry) == 2


def test_redefining_a_task_replaces_it() -> None:
    @task
    def extract() -> int:
        return 1

    first = extract

    @task  # a notebook cell run twice
    def extract() -> int:
        return 2

    assert flowkit.registry["extract"] is extract
    assert flowkit.registry["extract"] is not first
    assert len(flowkit.registry) == 1
    assert flowkit.DAG().run(executor="sync")["extract"] == 2


def test_isolated_registry_starts_empty_and_is_restored() -> None:
    (outer,) = make("outer")
    with flowkit.registry.isolated() as inner_registry:
        assert inner_registry is flowkit.registry
        assert len(flowkit.registry) == 0
        make("inner")
        assert flowkit.registry.names() == ["inner"]
    assert flowkit.registry.names() == ["outer"]
    assert flowkit.registry["outer"] is outer


def test_isolated_registry_is_restored_after_an_error() -> None:
    make("outer")
    with pytest.raises(RuntimeError), flowkit.registry.isolated():
        make("inner")
        raise RuntimeError
    assert flowkit.registry.names() == ["outer"]


def test_clear_forgets_every_task() -> None:
    make("a", "b")
    flowkit.registry.clear()
    assert len(flowkit.registry) == 0
    assert flowkit.registry.names() == []


def test_custom_registry_keeps_tasks_out_of_the_default_one() -> None:
    mine = flowkit.Registry()

    @task(registry=mine)
    def extract() -> list[int]:
        return [5]

    Task(double, name="transform", registry=mine)
    extract >> mine["transform"]
    assert mine.names() == ["extract", "transform"]
    assert "extract" not in flowkit.registry
    assert repr(mine) == "<Registry of 2 tasks>"
    run = flowkit.DAG(registry=mine).run(executor="sync")
    assert run["transform"] == [10]


# --- pickling ------------------------------------------------------------------


def test_module_level_task_pickles_by_name() -> None:
    data = pickle.dumps(module_task)
    assert b"module_task" in data
    assert pickle.loads(data) is module_task


def test_task_with_a_custom_name_still_pickles_by_its_module_attribute() -> None:
    assert pickle.loads(pickle.dumps(module_task_with_options)) is module_task_with_options


def test_task_not_reachable_by_name_cannot_be_pickled() -> None:
    t = Task(double, name="local_double")  # the module attribute ``double`` is the function
    with pytest.raises(pickle.PicklingError) as info:
        pickle.dumps(t)
    message = str(info.value)
    assert "'local_double'" in message
    assert "module level" in message
    assert "executor='thread'" in message


def test_task_defined_in_a_function_cannot_be_pickled() -> None:
    @task
    def inner() -> int:
        return 1

    with pytest.raises(pickle.PicklingError, match="'inner'"):
        pickle.dumps(inner)


# --- the retry schedule --------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"retry_delay": 1.0, "backoff": 2.0}, [1, 2, 4, 8, 16]),
        ({"retry_delay": 1.0, "backoff": 2.0, "max_delay": 5}, [1, 2, 4, 5, 5]),
        ({"retry_delay": 0.5, "backoff": 3.0}, [0.5, 1.5, 4.5, 13.5, 40.5]),
        ({"retry_delay": 2.0, "backoff": 1.0}, [2, 2, 2, 2, 2]),
        ({"retry_delay": 0.0, "backoff": 2.0}, [0, 0, 0, 0, 0]),
        ({"retry_delay": 3.0, "backoff": 2.0, "max_delay": 0}, [0, 0, 0, 0, 0]),
        ({"retry_delay": 10.0, "backoff": 2.0, "max_delay": 1}, [1, 1, 1, 1, 1]),
    ],
)
def test_backoff_delay_table(kwargs: dict[str, Any], expected: list[float]) -> None:
    assert [flowkit.backoff_delay(k, **kwargs) for k in range(1, 6)] == expected


@pytest.mark.parametrize(
    ("draw", "expected"),
    [(0.0, [1, 2, 4, 5]), (0.5, [1.25, 2.5, 5, 6.25]), (1.0, [1.5, 3, 6, 7.5])],
)
def test_backoff_delay_jitter_adds_up_to_jitter_times_the_capped_delay(
    draw: float, expected: list[float]
) -> None:
    delays = [
        flowkit.backoff_delay(
            k, retry_delay=1.0, backoff=2.0, max_delay=5, jitter=0.5, random=lambda: draw
        )
        for k in range(1, 5)
    ]
    assert delays == expected


def test_backoff_delay_with_a_seeded_random_is_reproducible() -> None:
    def schedule(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [
            flowkit.backoff_delay(k, retry_delay=1.0, backoff=2.0, jitter=1.0, random=rng.random)
            for k in range(1, 6)
        ]

    assert schedule(3) == schedule(3)
    assert schedule(3) != schedule(4)
    for k, delay in enumerate(schedule(3), start=1):
        assert 2 ** (k - 1) <= delay <= 2**k


def test_backoff_delay_without_random_has_no_jitter() -> None:
    assert flowkit.backoff_delay(2, retry_delay=1.0, backoff=2.0, jitter=1.0) == 2.0


def test_backoff_delay_survives_a_huge_retry_number() -> None:
    assert flowkit.backoff_delay(100_000, retry_delay=1.0, backoff=2.0, max_delay=60) == 60
    assert flowkit.backoff_delay(100_000, retry_delay=1.0, backoff=2.0) == math.inf


def test_backoff_delay_retry_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        flowkit.backoff_delay(0, retry_delay=1.0, backoff=2.0)


# --- retries in a run ------------------------------------------------------------


def test_retry_waits_follow_the_schedule_without_real_sleeping(executor: str) -> None:
    clock = FakeClock()
    t = Task(always_fails, name="fetch", retries=4, retry_delay=1.0, backoff=2.0, max_delay=5)
    with pytest.raises(flowkit.TaskExecutionError) as info:
        flowkit.DAG([t]).run(executor=executor, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [1, 2, 4, 5]
    state = info.value.result.states["fetch"]  # type: ignore[union-attr]
    assert state.status is Status.FAILED
    assert state.attempts == 5
    assert len(state.history) == 5
    assert isinstance(state.error, ConnectionError)


def test_retries_until_success(tmp_path: Path, executor: str) -> None:
    clock = FakeClock()
    t = Task(functools.partial(flaky, tmp_path / "calls", 2), name="fetch", retries=3,
             retry_delay=0.5)
    run = flowkit.DAG([t]).run(executor=executor, clock=clock, sleep=clock.sleep)
    assert run["fetch"] == "ok after 3 calls"
    assert run.states["fetch"].attempts == 3
    assert run.states["fetch"].status is Status.SUCCESS
    assert run.states["fetch"].error is None
    assert clock.sleeps == [0.5, 1.0]


def test_a_state_tells_each_attempt_and_their_total_duration(tmp_path: Path) -> None:
    clock = FakeClock()
    once = Task(noop, name="once")
    twice = Task(functools.partial(flaky, tmp_path / "calls", 1), name="twice", retries=1)
    run = flowkit.DAG([once, twice]).run(executor="sync", clock=clock, sleep=clock.sleep)
    for name, count in (("once", 1), ("twice", 2)):
        state = run.states[name]
        assert [a.number for a in state.history] == list(range(1, count + 1))
        assert state.history[-1].error is None and state.history[0].worker == "MainThread"
        assert state.duration == sum(a.duration for a in state.history) >= 0
        assert (state.started_at, state.finished_at) == (
            state.history[0].started_at, state.history[-1].finished_at,
        )
    assert isinstance(run.states["twice"].history[0].error, ConnectionError)


def jittered_sleeps(seed: int) -> list[float]:
    clock = FakeClock()
    t = Task(always_fails, name="fetch", retries=3, retry_delay=1.0, backoff=2.0, jitter=0.5)
    with pytest.raises(flowkit.TaskExecutionError):
        flowkit.DAG([t]).run(
            executor="sync", clock=clock, sleep=clock.sleep, rng=random.Random(seed)
        )
    return clock.sleeps


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    draws = random.Random(11)
    expected = [base * (1 + 0.5 * draws.random()) for base in (1.0, 2.0, 4.0)]
    assert jittered_sleeps(11) == pytest.approx(expected, rel=1e-12)
    assert jittered_sleeps(11) == jittered_sleeps(11)
    assert jittered_sleeps(12) != jittered_sleeps(11)


def test_zero_retry_delay_retries_at_once() -> None:
    clock = FakeClock()
    t = Task(always_fails, name="fetch", retries=2)
    with pytest.raises(flowkit.TaskExecutionError) as info:
        flowkit.DAG([t]).run(executor="sync", clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []
    assert info.value.attempts == 3


def test_retry_on_limits_which_exceptions_are_retried() -> None:
    clock = FakeClock()
    t = Task(raises_value_error, name="parse", retries=3, retry_delay=1.0,
             retry_on=(ConnectionError,))
    with pytest.raises(flowkit.TaskExecutionError) as info:
        flowkit.DAG([t]).run(executor="sync", clock=clock, sleep=clock.sleep)
    assert info.value.attempts == 1
    assert clock.sleeps == []
    assert isinstance(info.value.__cause__, ValueError)


def test_retry_on_retries_subclasses_of_the_listed_exceptions() -> None:
    clock = FakeClock()
    t = Task(always_fails, name="fetch", retries=2, retry_on=OSError)  # ConnectionError ⊂ OSError
    with pytest.raises(flowkit.TaskExecutionError) as info:
        flowkit.DAG([t]).run(executor="sync", clock=clock, sleep=clock.sleep)
    assert info.value.attempts == 3


def test_attempts_is_zero_for_a_task_that_never_ran() -> None:
    a = Task(always_fails, name="a")
    b = Task(noop, name="b")
    a >> b
    with pytest.raises(flowkit.TaskExecutionError) as info:
        flowkit.DAG([b]).run(executor="sync")
    states = info.value.result.states  # type: ignore[union-attr]
    assert states["a"].attempts == 1
    assert states["b"].attempts == 0
    assert states["b"].history == []


@pytest.mark.parametrize("first", ["plain", "defaulted"])
def test_functions_of_one_code_with_other_defaults_have_their_own_signature(first: str) -> None:
    def make() -> Callable[..., Any]:
        def load(a: int, b: int) -> tuple[int, int]:
            return (a, b)

        return load

    plain, defaulted = make(), make()
    defaulted.__defaults__ = (0,)  # the same code, but ``b`` is optional now
    registry = Registry()
    source = Task(lambda: 1, name="source", registry=registry)
    fns = {"plain": plain, "defaulted": defaulted}
    order = [first, "defaulted" if first == "plain" else "plain"]
    tasks = {kind: Task(fns[kind], name=kind, registry=registry) for kind in order}
    for t in tasks.values():
        source >> t
    assert DAG([tasks["defaulted"]], name="ok").run(executor="sync")["defaulted"] == (1, 0)
    with pytest.raises(DAGValidationError, match="'plain' needs a value for its parameter 'b'"):
        DAG([tasks["plain"]], name="bad").run(executor="sync")


def test_wrappers_of_one_decorator_each_have_the_signature_they_wrap() -> None:
    def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        return wrapper

    @logged
    def one(x: int) -> int:
        return x

    @logged
    def two(x: int, y: int) -> int:
        return x + y

    registry = Registry()
    a, b = (Task(lambda: 1, name=n, registry=registry) for n in ("a", "b"))
    first, second = Task(one, registry=registry), Task(two, registry=registry)
    a >> first
    [a, b] >> second
    assert DAG([first, second], name="wrapped").run(executor="sync")["two"] == 2
