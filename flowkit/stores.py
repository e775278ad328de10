"""Public path of the stores, which live in :mod:`flowkit.state.stores`."""

from typing import TYPE_CHECKING, Any

from flowkit.state import stores as _stores
from flowkit.state.stores import CacheEntry, MemoryStore, Outcome, Store

if TYPE_CHECKING:  # pragma: no cover - loaded on first use, below
    from flowkit.state.stores.journal import JSONStore
    from flowkit.state.stores.sqlite import SQLiteStore

__all__ = ["CacheEntry", "JSONStore", "MemoryStore", "Outcome", "SQLiteStore", "Store"]


def __getattr__(name: str) -> Any:
    return getattr(_stores, name)  # the file stores, loaded on first use
