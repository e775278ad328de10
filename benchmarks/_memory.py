"""The peak resident memory of this process over a block of code (Linux).

``with PeakRSS() as peak: ...`` then ``peak.growth`` is how far the resident
set rose above where it stood when the block began, in bytes. The kernel
keeps the peak itself (``VmHWM``), reset for the block by writing ``5`` to
``/proc/self/clear_refs``; where that is not allowed, a thread samples the
resident set every millisecond instead (it can miss a short spike).
"""

from __future__ import annotations

import os
import re
import threading
import types

__all__ = ["PeakRSS", "rss"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss() -> int:
    """This process's resident set now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def _hwm() -> int:
    with open("/proc/self/status") as status:
        found = re.search(r"VmHWM:\s+(\d+) kB", status.read())
    assert found is not None
    return int(found.group(1)) * 1024


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


class PeakRSS:
    """Measures the peak resident-set growth of this process over a ``with`` block."""

    def __init__(self) -> None:
        self.start = 0
        self.peak = 0
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.start = rss()
        if not _reset_hwm():
            self.peak = self.start
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: types.TracebackType | object) -> None:
        if self._sampler is None:
            self.peak = _hwm()
        else:
            self._stop.set()
            self._sampler.join()
            self.peak = max(self.peak, rss())

    @property
    def growth(self) -> int:
        """Bytes the resident set rose above its level at the start of the block."""
        return max(0, self.peak - self.start)
