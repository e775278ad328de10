"""Shared fixtures. flowkit's own pytest plugin is loaded here rather than through
its entry point (``-p no:flowkit`` in pyproject), so coverage sees flowkit imported."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

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


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """One LocalCluster of two single-threaded worker processes (loopback) for
    every Dask test module: starting one takes seconds.

    A worker that dies fails its call at once (``allowed-failures`` 0), so a
    killed worker surfaces as ``KilledWorker`` and flowkit's retries decide,
    instead of Dask running the call again. Its nanny starts a new worker: a
    test that kills one waits for two workers before the next test needs them
    (generously: on a busy machine a worker process takes long to start).
    """
    distributed = pytest.importorskip(
        "distributed",
        reason="dask.distributed is not installed: pip install 'dask[distributed]' "
        "(or poetry install --with dist)",
    )
    import dask

    # The cluster closes the nanny of a killed worker that is not back within
    # lost-worker-timeout (read when the worker is lost, so set while the cluster
    # lives): on a busy machine a worker process takes longer than its 15 s to start.
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "300s"}):
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # a free port: 8787 may be taken
                silence_logs=logging.CRITICAL,
            )
        try:
            yield cluster
        finally:
            cluster.close()
