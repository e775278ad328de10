"""What ``import flowkit`` loads: the heavy parts wait until a run needs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Loaded only by what needs them: async tasks, a process pool, a state file,
# an HTML report.
LAZY = (
    "asyncio",
    "concurrent.futures.process",
    "sqlite3",
    "flowkit.report",
    "flowkit.state.stores.sqlite",
    "flowkit.state.stores.journal",
    "flowkit.state.serializers",
)


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout))


def test_import_flowkit_loads_none_of_the_heavy_modules() -> None:
    loaded = _loaded_after("import flowkit")
    assert not loaded & set(LAZY), sorted(loaded & set(LAZY))


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
