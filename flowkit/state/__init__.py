"""State: what flowkit remembers between runs and between the tasks of one run.

- :mod:`flowkit.state.manager`: :class:`StateManager`, the one object a run talks to.
- :mod:`flowkit.state.cachekey`: what identifies a task's code and inputs.
- :mod:`flowkit.state.serializers`: how a result is written to, and read from, a store.
- :mod:`flowkit.state.stores`: where entries are kept (memory, JSON journal, SQLite).
- :mod:`flowkit.state.history`: the run history those stores keep.
"""

from flowkit.state.history import RunRecord, RunSummary, TaskRecord, TaskStats
from flowkit.state.manager import CacheInfo, StateManager

__all__ = ["CacheInfo", "RunRecord", "RunSummary", "StateManager", "TaskRecord", "TaskStats"]
