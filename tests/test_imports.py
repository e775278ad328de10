"""What ``import flowkit`` loads: the heavy parts wait until a run needs them."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Loaded only by what needs them: async tasks, a process pool, a state file,
# signed pickles, an HTML report.
LAZY = (
    "asyncio",
    "concurrent.futures.process",
    "sqlite3",
    "hmac",
    "flowkit.report",
    "flowkit.state.stores.sqlite",
    "flowkit.state.stores.journal",
    "flowkit.state.serializers",
)


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(*sys.modules, sep='\\n')\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


# Loaded by neither ``import flowkit`` nor ``from flowkit import task``: what
# only a run needs.
RUN_ONLY = ("logging", "threading", "concurrent.futures", "json", "pickle", "flowkit.dag",
            "flowkit.scheduler", "flowkit.state", "flowkit.logging", "flowkit.backends")


def test_import_flowkit_loads_no_submodule_and_none_of_the_heavy_modules() -> None:
    loaded = _loaded_after("import flowkit")
    heavy = {"inspect", "dataclasses", *LAZY, *RUN_ONLY}
    assert not loaded & heavy, sorted(loaded & heavy)
    assert not {m for m in loaded if m.startswith("flowkit.")}, sorted(loaded)


def test_defining_a_task_loads_none_of_the_run_machinery() -> None:
    code = "from flowkit import task\n@task\ndef one() -> int:\n    return 1\n"
    loaded = _loaded_after(code)
    assert "flowkit.task" in loaded
    assert not loaded & {*LAZY, *RUN_ONLY}, sorted(loaded & {*LAZY, *RUN_ONLY})


@pytest.mark.parametrize(
    "first",
    ["import flowkit.dag", "import flowkit.task", "from flowkit.testing import run_task",
     "from flowkit import DAG"],
)
def test_the_task_submodule_never_hides_the_task_decorator(first: str) -> None:
    code = (
        f"{first}\n"
        "import flowkit\n"
        "from flowkit import task\n"
        "assert flowkit.task is task and task.__module__ == 'flowkit.task', task\n"
        "@task\n"
        "def one() -> int:\n"
        "    return 1\n"
        "assert flowkit.DAG([one]).run()['one'] == 1\n"
    )
    _loaded_after(code)  # raises if an assertion fails


def test_dir_lists_the_public_names_before_they_are_loaded() -> None:
    code = (
        "import flowkit, sys\n"
        "assert set(flowkit.__all__) <= set(dir(flowkit)), dir(flowkit)\n"
        "assert 'flowkit.task' not in sys.modules\n"
    )
    _loaded_after(code)


def test_a_plain_run_on_threads_loads_none_of_them_either() -> None:
    code = (
        "from flowkit import DAG, task\n"
        "@task\n"
        "def one() -> int:\n"
        "    return 1\n"
        "assert DAG([one]).run()['one'] == 1\n"
    )
    loaded = _loaded_after(code)
    assert not loaded & set(LAZY), sorted(loaded & set(LAZY))


@pytest.mark.parametrize(
    ("code", "needed"),
    [
        ("import flowkit.stores as s; s.SQLiteStore", "sqlite3"),
        ("import flowkit; flowkit.StateManager('x.db')", "flowkit.state.stores.sqlite"),
        ("import flowkit; flowkit.StateManager('x.json')", "flowkit.state.stores.journal"),
        ("import flowkit.stores as s; s.JSONStore", "flowkit.state.stores.journal"),
        ("import flowkit; flowkit.StateManager('x.json').serializer", "flowkit.state.serializers"),
        ("import flowkit; flowkit.StateManager('x.json').serializer", "hmac"),
        (
            "import flowkit; r = flowkit.DAG([flowkit.Task(int, name='n')]).run(executor='sync');"
            " r.to_html()",
            "flowkit.report",
        ),
        (
            "import flowkit\n"
            "async def f() -> int:\n"
            "    return 1\n"
            "assert flowkit.DAG([flowkit.Task(f)]).run(executor='sync')['f'] == 1",
            "asyncio",
        ),
        (
            "import flowkit\n"
            "assert flowkit.DAG([flowkit.Task(int, name='n')]).run(executor='process')['n'] == 0",
            "concurrent.futures.process",
        ),
    ],
)
def test_each_heavy_module_loads_when_it_is_needed(code: str, needed: str) -> None:
    assert needed in _loaded_after(code)


def test_the_stores_module_still_refuses_unknown_names() -> None:
    import flowkit.stores

    assert flowkit.stores.SQLiteStore.__name__ == "SQLiteStore"
    with pytest.raises(AttributeError, match="Nope"):
        flowkit.stores.Nope  # noqa: B018 - the lookup is the test
