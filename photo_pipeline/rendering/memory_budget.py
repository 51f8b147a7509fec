"""A run's memory budget: render threads reserve a photo's working set before decoding it.

The pool's thread count bounds how many photos render at once, but not how much memory they take:
one 16-bit 10900x10900 PNG needs over a gigabyte. Each thread therefore reserves its photo's
estimated working set (see `rendering.estimate_memory`) here first and waits while the budget is
full; the reservation is returned when the photo's renditions are encoded. A photo larger than the
whole budget can never fit and is refused at once rather than waiting forever.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

MIB = 1024 * 1024
log = logging.getLogger(__name__)

# glibc's mallopt parameter number for the mmap threshold (malloc.h).
_M_MMAP_THRESHOLD = -3
# Pillow stores pixels in 16 MiB blocks (Image.core.get_block_size()); anything this large or
# larger is given its own mapping, which free() hands straight back to the system.
_MMAP_THRESHOLD_BYTES = 4 * MIB
_configured = False
_configure_lock = threading.Lock()


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


def return_freed_memory_promptly() -> bool:
    """Make freed image memory leave the process at once (glibc only; True when applied).

    glibc raises its mmap threshold after the first large block is freed (up to 32 MiB), after
    which Pillow's 16 MiB pixel blocks are carved from per-thread heaps that are not given back:
    measured with two render threads, each thread's heap kept its last photo's peak and the run's
    RSS reached 2.3 GB under a 1.5 GB budget. A fixed threshold keeps every block an mmap of its
    own, so RSS follows what the budget counts. Process-wide and idempotent.
    """
    global _configured
    with _configure_lock:
        if _configured:
            return True
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            mallopt = getattr(libc, "mallopt", None)
        except OSError:
            log.warning("C library %s could not be loaded; freed image memory may stay in the process", name)
            return False
        if mallopt is None:
            return False  # not glibc (macOS, musl without mallopt): nothing to tune
        _configured = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
        return _configured
