"""Public path of the stores, which live in :mod:`flowkit.state.stores`."""

from flowkit.state.stores import CacheEntry, JSONStore, MemoryStore, Outcome, SQLiteStore, Store

__all__ = ["CacheEntry", "JSONStore", "MemoryStore", "Outcome", "SQLiteStore", "Store"]
