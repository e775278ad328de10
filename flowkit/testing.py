"""Helpers for testing workflows, and flowkit's pytest plugin.

The plugin (registered through the ``pytest11`` entry point) only defines the
``flowkit_registry`` fixture; importing it costs nothing beyond flowkit itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from flowkit.task import Registry, registry

__all__ = ["flowkit_registry", "isolated_registry"]


@contextlib.contextmanager
def isolated_registry() -> Iterator[Registry]:
    """Within the block, ``@task`` registers into an empty default registry."""
    with registry.isolated() as isolated:
        yield isolated


@pytest.fixture
def flowkit_registry() -> Iterator[Registry]:
    """An empty default registry for the test; the previous tasks come back afterwards."""
    with isolated_registry() as isolated:
        yield isolated
