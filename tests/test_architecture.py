"""The layers of ARCHITECTURE.md: module-level imports only point up the table."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "flowkit"

# Rank of each layer of ARCHITECTURE.md: a module imports only lower ranks (or
# its own module). Modules missing here are not checked.
LAYERS: dict[str, int] = {
    "flowkit.exceptions": 0,
    "flowkit.retry": 0,
    "flowkit.context": 0,
    "flowkit.cron": 1,
    "flowkit.task": 1,
    "flowkit.outcome": 2,
    "flowkit.results": 2,
    "flowkit.graph": 2,
    "flowkit.params": 2,
    "flowkit.ready": 2,
    "flowkit.mapping": 2,
    "flowkit.run_options": 2,
    "flowkit.executors": 0,
    "flowkit.state": 3,
    "flowkit.logging": 3,
    "flowkit.hooks": 3,
    "flowkit.render": 3,
    "flowkit.worker": 3,
    "flowkit.backends": 3,
    "flowkit.transitions": 4,
    "flowkit.scheduler": 4,
    "flowkit.dag": 5,
    "flowkit.report": 6,
    "flowkit.progress": 6,
    "flowkit.backfill": 6,
    "flowkit.schedule": 6,
    "flowkit.testing": 6,
    "flowkit.cli": 6,
    "flowkit.ui": 6,
}


def _rank(module: str) -> int | None:
    while module:
        if module in LAYERS:
            return LAYERS[module]
        module = module.rpartition(".")[0]
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module) -> list[str]:
    """flowkit modules imported at module level, outside ``if TYPE_CHECKING:``."""
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flowkit"):
            if node.module == "flowkit":  # from flowkit import render: a submodule
                found.extend(f"flowkit.{alias.name}" for alias in node.names)
            else:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if a.name.startswith("flowkit"))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _rank(_module_name(p)) is not None)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_module_level_imports_point_up_the_layers(path: Path) -> None:
    name = _module_name(path)
    rank = _rank(name)
    assert rank is not None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wrong = [
        imported
        for imported in _top_level_imports(tree)
        if (other := _rank(imported)) is not None
        and other > rank
        and not imported.startswith(name)  # its own submodules
    ]
    assert not wrong, f"{name} (layer {rank}) imports {wrong} from a lower layer"


def test_results_are_data_without_presentation_at_import() -> None:
    tree = ast.parse((PACKAGE / "results.py").read_text(encoding="utf-8"))
    assert not [m for m in _top_level_imports(tree) if m != "flowkit.outcome"]
