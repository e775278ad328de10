"""The documentation: every Python example runs, every public name is in the reference.

Examples: every ```python block of README.md and docs/**/*.md runs. The blocks
of one page run in order in one fresh interpreter, from the repository root, as
``__main__``, so a block may build on the blocks before it on the same page and
pages cannot leak tasks into each other. Everything outside the blocks is
blanked rather than dropped, so a traceback's line numbers are the page's own.

Reference: every name exported by ``flowkit``, ``flowkit.testing``,
``flowkit.stores`` and ``flowkit.serializers`` has a docstring and a
``::: path`` entry (which mkdocstrings renders) in docs/reference/. The path
is usually ``flowkit.Name``; where a submodule has the same name as a function
(``flowkit.task``), the entry names the function inside it (``flowkit.task.task``),
since the renderer would document the module.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import itertools
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
PUBLIC_MODULES = ("flowkit", "flowkit.testing", "flowkit.stores", "flowkit.serializers")

# Runs a page: keeps only its python blocks, at their own line numbers.
_RUNNER = """
import re, sys
path = sys.argv[1]
lines, inside = [], False
for line in open(path, encoding="utf-8").read().splitlines():
    if not inside and re.fullmatch(r"```python\\s*", line):
        inside = True
        lines.append("")
    elif inside and line.strip() == "```":
        inside = False
        lines.append("")
    else:
        lines.append(line if inside else "")
code = compile("\\n".join(lines), path, "exec")
exec(code, sys.modules["__main__"].__dict__)
"""


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a page, in order."""
    blocks: list[str] = []
    block: list[str] | None = None
    for line in page.read_text(encoding="utf-8").splitlines():
        if block is None and re.fullmatch(r"```python\s*", line):
            block = []
        elif block is not None and line.strip() == "```":
            blocks.append("\n".join(block))
            block = None
        elif block is not None:
            block.append(line)
    return blocks


RUNNABLE = [page for page in PAGES if python_blocks(page)]


def _id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def test_the_documentation_has_runnable_examples() -> None:
    assert len(RUNNABLE) >= 10
    assert ROOT / "README.md" in RUNNABLE


def _needs_dask(page: Path) -> bool:
    return "dask" in "\n".join(python_blocks(page))


def _run_page(page: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, str(page)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def page_runs(
    request: pytest.FixtureRequest,
) -> Iterator[dict[Path, Future[subprocess.CompletedProcess[str]]]]:
    """The selected pages' runs, two at a time, the slow (Dask) pages first.

    A page starting a Dask cluster takes most of this module's time; the other
    pages run beside it instead of after it.
    """
    selected = [
        item.callspec.params["page"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_page_examples_run"
    ]
    if not _has("distributed"):
        selected = [page for page in selected if not _needs_dask(page)]
    selected.sort(key=lambda page: not _needs_dask(page))
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {page: pool.submit(_run_page, _id(page)) for page in selected}


@pytest.mark.parametrize("page", RUNNABLE, ids=_id)
def test_page_examples_run(
    page: Path, page_runs: dict[Path, Future[subprocess.CompletedProcess[str]]]
) -> None:
    if page not in page_runs:
        pytest.skip("dask.distributed is not installed (poetry install --with dist)")
    result = page_runs[page].result()
    assert result.returncode == 0, f"an example in {_id(page)} failed:\n{result.stderr}"


def test_the_runner_reports_the_page_and_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n```python\nx = 1\n```\n\ntext\n\n```python\nassert x == 2\n```\n")
    result = _run_page(page)
    assert result.returncode != 0
    assert f'File "{page}", line 10' in result.stderr


def public_names() -> list[tuple[str, str]]:
    """(module, name) for every exported name of the public modules."""
    pairs = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        pairs += [(module_name, name) for name in module.__all__]
    return pairs


def reference_entries() -> set[str]:
    entries = set()
    for page in (ROOT / "docs" / "reference").glob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines():
            match = re.fullmatch(r":::\s+([\w.]+)\s*", line)
            if match:
                entries.add(match.group(1))
    return entries


def resolve(path: str) -> Any:
    """The object a ``:::`` entry names: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(path)


def test_every_public_name_is_in_the_reference() -> None:
    documented = [resolve(entry) for entry in reference_entries()]
    missing = [
        f"{module}.{name}"
        for module, name in public_names()
        if not any(obj is getattr(importlib.import_module(module), name) for obj in documented)
    ]
    assert not missing, f"add a '::: NAME' line to a page of docs/reference/ for: {missing}"


def test_the_reference_names_only_what_exists() -> None:
    for entry in reference_entries():
        resolve(entry)


@pytest.mark.parametrize(("module", "name"), public_names(), ids=lambda part: str(part))
def test_every_public_name_has_a_docstring(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    if inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj):
        doc = inspect.getdoc(obj)
    else:  # a constant or an instance: the string literal below its assignment
        doc = attribute_docstring(name)
    assert doc and doc.strip(), f"{module}.{name} has no docstring"


def test_the_readme_lists_every_public_name() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    import flowkit

    missing = [name for name in flowkit.__all__ if f"`{name}`" not in readme]
    assert not missing, f"add these names to the README's table of the public API: {missing}"


def attribute_docstring(name: str) -> str | None:
    """The docstring of a module-level assignment to ``name`` anywhere in flowkit."""
    for path in sorted((ROOT / "flowkit").rglob("*.py")):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        for statement, following in itertools.pairwise(body):
            if _assigns(statement, name) and _is_string(following):
                return str(following.value.value)  # type: ignore[attr-defined]
    return None


def _assigns(statement: ast.stmt, name: str) -> bool:
    if isinstance(statement, ast.Assign):
        targets: list[Any] = statement.targets
    elif isinstance(statement, ast.AnnAssign):
        targets = [statement.target]
    else:
        return False
    return any(isinstance(target, ast.Name) and target.id == name for target in targets)


def _is_string(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
