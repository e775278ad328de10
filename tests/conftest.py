"""Shared fixtures. flowkit's own pytest plugin is loaded here rather than through
its entry point (``-p no:flowkit`` in pyproject), so coverage sees flowkit imported."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowkit import Registry

pytest_plugins = ["flowkit.testing"]


@pytest.fixture(autouse=True)
def _isolated_registry(flowkit_registry: Registry) -> Iterator[Registry]:
    """Every test starts with an empty default registry and leaks no task."""
    yield flowkit_registry


@pytest.fixture(params=["sync", "thread", "process"])
def executor(request: pytest.FixtureRequest) -> str:
    """The built-in executors: behaviour must not depend on which one runs."""
    return str(request.param)
