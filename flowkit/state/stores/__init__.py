"""State backends: the :class:`Store` interface and its three implementations.

- :class:`MemoryStore`: the default; results stay Python objects in this process.
- :class:`JSONStore`: one JSON-lines file; simple, readable, fine up to tens of
  thousands of entries and a few processes at a time.
- :class:`SQLiteStore`: an SQLite database; for large states and many
  concurrent processes.
"""

from typing import TYPE_CHECKING, Any

from flowkit.state.stores.base import CacheEntry, Outcome, Store
from flowkit.state.stores.memory import MemoryStore

if TYPE_CHECKING:  # pragma: no cover - loaded on first use, below
    from flowkit.state.stores.journal import JSONStore
    from flowkit.state.stores.sqlite import SQLiteStore

__all__ = ["CacheEntry", "JSONStore", "MemoryStore", "Outcome", "SQLiteStore", "Store"]


def __getattr__(name: str) -> Any:
    # The file stores (and sqlite3, tempfile) take a while to import and most
    # states live in memory: load each on first use.
    if name == "JSONStore":
        from flowkit.state.stores.journal import JSONStore

        return JSONStore
    if name == "SQLiteStore":
        from flowkit.state.stores.sqlite import SQLiteStore

        return SQLiteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
