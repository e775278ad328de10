"""State backends: the :class:`Store` interface and its three implementations.

- :class:`MemoryStore`: the default; results stay Python objects in this process.
- :class:`JSONStore`: one JSON-lines file; simple, readable, fine up to tens of
  thousands of entries and a few processes at a time.
- :class:`SQLiteStore`: an SQLite database; for large states and many
  concurrent processes.
"""

from flowkit.state.stores.base import CacheEntry, Outcome, Store
from flowkit.state.stores.journal import JSONStore
from flowkit.state.stores.memory import MemoryStore
from flowkit.state.stores.sqlite import SQLiteStore

__all__ = ["CacheEntry", "JSONStore", "MemoryStore", "Outcome", "SQLiteStore", "Store"]
