"""Compatibility path: cache keys live in :mod:`flowkit.state.cachekey`."""

from flowkit.state.cachekey import UncacheableInput, cache_key, code_hash, input_hash, task_version

__all__ = ["UncacheableInput", "cache_key", "code_hash", "input_hash", "task_version"]
