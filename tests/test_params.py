"""Run parameters: dag.run(params=...) fills, by name, the parameters no upstream task feeds."""

from __future__ import annotations

import datetime as dt
import enum
import re
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest

import flowkit
from flowkit import DAG, DAGValidationError, FlowkitError, Task, task
from flowkit.cli import main
from flowkit.params import from_text, typed_params


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


# --- typed values from the command line (flowkit.params) ---------------------------------


class Colour(enum.Enum):
    RED = "red"
    GREEN = 2


@pytest.mark.parametrize(
    ("text", "annotation", "value"),
    [
        ("42", int, 42),
        ("0.25", float, 0.25),
        ("3", float, 3.0),
        ("yes", bool, True),
        ("OFF", bool, False),
        ("007", str, "007"),
        ("[1, 2]", str, "[1, 2]"),
        ("2026-11-28", dt.date, dt.date(2026, 11, 28)),
        ("2026-11-28T06:30:00+00:00", dt.datetime,
         dt.datetime(2026, 11, 28, 6, 30, tzinfo=dt.UTC)),
        ("data/in.csv", Path, Path("data/in.csv")),
        ("12.50", Decimal, Decimal("12.50")),
        ("RED", Colour, Colour.RED),
        ("red", Colour, Colour.RED),
        ("2", Colour, Colour.GREEN),
        ("[1, 2]", list[int], [1, 2]),
        ('["2026-11-28"]', list[dt.date], [dt.date(2026, 11, 28)]),
        ('{"a": 1.5}', dict[str, Decimal], {"a": Decimal("1.5")}),
        ("[1, 2]", tuple[int, ...], (1, 2)),
        ('{"x": [1]}', dict, {"x": [1]}),
        ("7", int | None, 7),
        ("null", int | None, None),
        ("b", Literal["a", "b"], "b"),
        ("3", Any, 3),
        ("text", Any, "text"),
    ],
)
def test_text_converts_by_annotation(text: str, annotation: Any, value: Any) -> None:
    converted = from_text(text, annotation)
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize(
    ("text", "annotation", "message"),
    [
        ("abc", float, "a number"),
        ("1.5", int, "an integer"),
        ("maybe", bool, "true/false"),
        ("28/11/2026", dt.date, "ISO date"),
        ("tomorrow", dt.datetime, "ISO datetime"),
        ("1,5", Decimal, "decimal"),
        ("BLUE", Colour, "RED, GREEN"),
        ("1, 2", list[int], "JSON"),
        ('{"a": 1}', list[int], "JSON array"),
        ('["x"]', list[int], "an integer"),
        ("[true]", list[int], "expected an int"),
        ("[1, 2]", dict[str, int], "JSON object"),
        ("[1]", tuple[int, int], "2 items"),
        ("c", Literal["a", "b"], "one of 'a', 'b'"),
    ],
)
def test_text_that_does_not_convert_says_what_was_expected(
    text: str, annotation: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        from_text(text, annotation)


TYPED = """
    import datetime as dt
    import enum
    from decimal import Decimal
    from pathlib import Path

    from flowkit import task

    class Mode(enum.Enum):
        FAST = "fast"
        SAFE = "safe"

    @task
    def report(fail_rate: float, day: dt.date, out: Path, price: Decimal, mode: Mode,
               dry_run: bool, ids: list[int], note: str = "", anything=None) -> str:
        values = (fail_rate, day, out, price, mode, dry_run, ids, note, anything)
        return " ".join(type(v).__name__ for v in values)
"""

GOOD = ["fail_rate=0.5", "day=2026-11-28", "out=x.html", "price=9.99", "mode=safe",
        "dry_run=no", "ids=[1, 2]", "note=007", "anything=[3]"]


def _argv(path: str, params: list[str]) -> list[str]:
    return ["run", path, "--executor", "sync", *(a for p in params for a in ("--param", p))]


def test_command_line_parameters_arrive_typed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "typed.py"
    path.write_text(textwrap.dedent(TYPED), encoding="utf-8")
    assert main(_argv(str(path), GOOD)) == 0
    out = capsys.readouterr().out
    assert "'float date PosixPath Decimal Mode bool list str list'" in out


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("fail_rate=abc", "fail_rate='abc' does not fit task 'report', which takes fail_rate "
                          "as a float: expected a number"),
        ("day=yesterday", "takes day as a date: expected an ISO date"),
        ("mode=quick", "takes mode as a Mode: expected one of FAST, SAFE"),
        ("ids=1,2", "takes ids as list\\[int\\]: expected JSON"),
    ],
)
def test_a_parameter_that_does_not_convert_exits_2_before_anything_runs(
    bad: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "typed.py"
    path.write_text(textwrap.dedent(TYPED), encoding="utf-8")
    name = bad.partition("=")[0]
    params = [p for p in GOOD if not p.startswith(name + "=")] + [bad]
    assert main(_argv(str(path), params)) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no summary: nothing ran
    assert re.search(message, " ".join(err.split())), err


def test_two_tasks_that_type_one_parameter_differently_are_refused() -> None:
    @task
    def first(day: dt.date) -> str:
        return str(day)

    @task
    def second(day: str | None = None) -> str:
        return str(day)

    @task
    def third(day) -> str:  # type: ignore[no-untyped-def]  # no annotation: takes any
        return str(day)

    with pytest.raises(
        DAGValidationError, match=r"as a date by task 'first' but as str \| None by task 'second'"
    ):
        typed_params(DAG().tasks, {"day": "2026-11-28"})
    assert typed_params([first, third], {"day": "2026-11-28", "other": "[1]"}) == {
        "day": dt.date(2026, 11, 28), "other": [1]
    }


def test_unresolvable_annotations_leave_the_value_as_json_or_text() -> None:
    def odd(limit: Undefined) -> int:  # type: ignore[name-defined]  # noqa: F821
        return 0

    t = Task(odd, name="odd")
    assert typed_params([t], {"limit": "3"}) == {"limit": 3}
    assert typed_params([t], {"limit": "three"}) == {"limit": "three"}
