"""Task functions that count their calls in a file, so calls made in other
processes (pool workers, Dask workers) are counted too. Importable by workers."""

from __future__ import annotations

from pathlib import Path


def bump(path: str) -> int:
    """Add one to the call count kept in ``path``/calls; return the new count."""
    counter = Path(path) / "calls"
    calls = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(calls))
    return calls


def flaky(path: str) -> str:
    """Fail the first call with ConnectionError; succeed afterwards."""
    if bump(path) == 1:
        raise ConnectionError("first attempt fails")
    return "recovered"
