"""Every ```python block of the README runs.

Blocks are grouped by their ``##`` section and each section runs in a fresh
interpreter from the repository root, so a block may build on the blocks
before it in the same section, and sections cannot leak tasks into each other.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_sections() -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    title = "(preamble)"
    inside = False
    block: list[str] = []
    for line in README.read_text(encoding="utf-8").splitlines():
        if not inside and line.startswith("## "):
            title = line[3:].strip()
        elif not inside and re.fullmatch(r"```python\s*", line):
            inside, block = True, []
        elif inside and line.strip() == "```":
            inside = False
            sections.setdefault(title, []).append("\n".join(block))
        elif inside:
            block.append(line)
    return {name: "\n\n".join(blocks) for name, blocks in sections.items()}


SECTIONS = python_sections()


def test_the_readme_has_runnable_examples() -> None:
    assert len(SECTIONS) >= 5


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_readme_section_runs(section: str) -> None:
    if "dask" in SECTIONS[section] and not _has("distributed"):
        pytest.skip("dask.distributed is not installed (poetry install --with dist)")
    result = subprocess.run(
        [sys.executable, "-c", SECTIONS[section]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"README section {section!r} failed:\n{result.stderr}"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
