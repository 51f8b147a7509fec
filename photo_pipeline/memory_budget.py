"""A run's memory budget: render threads reserve a photo's working set before decoding it.

The pool's thread count bounds how many photos render at once, but not how much memory they take:
one 16-bit 10900x10900 PNG needs over a gigabyte. Each thread therefore reserves its photo's
estimated working set (see `rendering.estimate_memory`) here first and waits while the budget is
full; the reservation is returned when the photo's renditions are encoded. A photo larger than the
whole budget can never fit and is refused at once rather than waiting forever.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

MIB = 1024 * 1024


class BudgetExceeded(ValueError):
    """The request alone is larger than the whole budget: waiting cannot help."""

    def __init__(self, requested: int, total: int) -> None:
        super().__init__(f"needs {_mib(requested)} MiB, more than the whole budget of {_mib(total)} MiB")
        self.requested = requested
        self.total = total


class MemoryBudget:
    """A counting semaphore over bytes: `reserve(n)` blocks until n bytes are free."""

    def __init__(self, total_bytes: int) -> None:
        if total_bytes < 1:
            raise ValueError(f"a memory budget needs at least 1 byte, got {total_bytes}")
        self.total_bytes = total_bytes
        self._in_use = 0
        self._peak = 0
        self._condition = threading.Condition()

    @property
    def in_use(self) -> int:
        with self._condition:
            return self._in_use

    @property
    def peak(self) -> int:
        """The most ever reserved at once (never above `total_bytes`)."""
        with self._condition:
            return self._peak

    def acquire(self, nbytes: int) -> None:
        """Wait for room and take `nbytes`; BudgetExceeded at once if it can never fit."""
        if nbytes < 0:
            raise ValueError(f"cannot reserve a negative amount ({nbytes})")
        if nbytes > self.total_bytes:
            raise BudgetExceeded(nbytes, self.total_bytes)
        with self._condition:
            self._condition.wait_for(lambda: self._in_use + nbytes <= self.total_bytes)
            self._in_use += nbytes
            self._peak = max(self._peak, self._in_use)

    def release(self, nbytes: int) -> None:
        with self._condition:
            if nbytes > self._in_use:
                raise ValueError(f"releasing {nbytes} bytes but only {self._in_use} are reserved")
            self._in_use -= nbytes
            # Several small requests may fit where one was freed: wake every waiter.
            self._condition.notify_all()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` for the duration of the block, returned even when the block raises."""
        self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(nbytes)


def _mib(nbytes: int) -> str:
    return f"{nbytes / MIB:,.0f}"
