"""The retry schedule: how long to wait before each retry.

A pure function of the retry number, so the schedule can be read (and tested)
as a table. Randomness comes in only through the ``random`` callable, which the
scheduler gets from ``DAG.run(rng=...)`` — seed it to reproduce jitter.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def backoff_delay(
    retry: int,
    *,
    retry_delay: float,
    backoff: float,
    max_delay: float | None = None,
    jitter: float = 0.0,
    random: Callable[[], float] | None = None,
) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first retry).

    The base delay is ``min(max_delay, retry_delay * backoff ** (retry - 1))``;
    jitter adds a uniform random extra of up to ``jitter * base`` seconds.

    Examples:
        >>> [backoff_delay(k, retry_delay=1.0, backoff=2.0, max_delay=5) for k in (1, 2, 3, 4)]
        [1.0, 2.0, 4.0, 5]
        >>> backoff_delay(1, retry_delay=2.0, backoff=2.0, jitter=0.5, random=lambda: 1.0)
        3.0
    """
    if retry < 1:
        raise ValueError(f"retry numbers start at 1, got {retry}")
    if retry_delay == 0:
        delay = 0.0  # however many retries: 0 * inf would be nan
    else:
        try:
            delay = retry_delay * backoff ** (retry - 1)
        except OverflowError:  # a huge retry count with backoff > 1: past any cap
            delay = math.inf
    if max_delay is not None and delay > max_delay:
        delay = max_delay
    if jitter and delay and random is not None:
        extra = jitter * random()
        if extra:  # inf * 0 would be nan
            delay += extra * delay
    return delay
