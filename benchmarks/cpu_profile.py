"""Where a process's CPU goes, by kind of work: a sampling profiler over every thread's own CPU clock.

Every `interval` seconds it reads each live thread's CPU clock (`pthread_getcpuclockid`) and its
Python stack (`sys._current_frames`), and charges the CPU the thread used since the last sample to
the kind of work its stack shows. CPU, not wall time: a thread waiting on a socket is charged
nothing. Sampling adds no cost to the measured threads (unlike cProfile, which slows pure-Python
code several times and so inflates exactly the overhead we look for); the sampler's own thread is
not counted, and the process's total CPU is printed beside the sum so what was not attributed
(threads that ended between two samples) shows.

Kinds, decided on the stack (innermost frame first, the first that matches wins, but a stack that
is inside `logging` or Dagster's log and event machinery is that whatever it calls, since its
database writes are the events' cost):
    rendering          Pillow, the project's rendering package
    hashing/spooling   hashlib, the download's hashing writer, tempfile
    S3 client          botocore, boto3, s3transfer, urllib3, http.client, the project's storage
    database           sqlalchemy, psycopg (the photo table's queries)
    logging/Dagster    logging, Dagster's log manager, event log and run machinery
    rest               everything else (the project's processing, the thread pools, ...)
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from types import FrameType

KINDS = ("rendering", "hashing/spooling", "S3 client", "database", "logging/Dagster", "rest")

# Path fragments of a frame's file, per kind (checked in this order for each frame).
_FILE_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rendering", ("/PIL/", "/photo_pipeline/rendering/")),
    ("hashing/spooling", ("/hashlib.py", "/tempfile.py")),
    ("S3 client", ("/botocore/", "/boto3/", "/s3transfer/", "/urllib3/", "/http/client.py", "/photo_pipeline/storage/")),
    ("database", ("/sqlalchemy/", "/psycopg/", "/psycopg_pool/", "/photo_pipeline/photos/")),
)
# Functions that are hashing or spooling although they live in processing.py.
_FUNCTION_KINDS = {"write": "hashing/spooling", "hashed_download": "hashing/spooling"}
_LOGGING = ("/logging/__init__.py", "/dagster/_core/log_manager.py", "/dagster/_core/events/", "/dagster/_core/storage/event_log/", "/dagster/_loggers/")


def our_caller(frame: FrameType | None) -> str:
    """The innermost frame of the project's own code on the stack (who asked for the work)."""
    while frame is not None:
        name = frame.f_code.co_filename
        if "/photo_pipeline/" in name and "/photo_pipeline_tests/" not in name:
            return f"{name.rsplit('/photo_pipeline/', 1)[1]}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "(not the project's code)"


def kind_of(frame: FrameType | None) -> str:
    stack: list[FrameType] = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    files = [f.f_code.co_filename for f in stack]
    if any(fragment in name for name in files for fragment in _LOGGING):
        return "logging/Dagster"
    for f, name in zip(stack, files, strict=True):
        if name.endswith("services/processing.py") and f.f_code.co_name in _FUNCTION_KINDS:
            return _FUNCTION_KINDS[f.f_code.co_name]
        for kind, fragments in _FILE_KINDS:
            if any(fragment in name for fragment in fragments):
                return kind
    if any("/dagster/" in name for name in files):
        return "logging/Dagster"
    return "rest"


class CpuProfile:
    """`with CpuProfile() as profile:` samples every thread of this process until the block ends;
    `profile.seconds` is CPU seconds per kind, `profile.process_seconds` the process's total."""

    def __init__(self, interval: float = 0.002) -> None:
        self._interval = interval
        self.seconds: Counter[str] = Counter()
        # (kind, the project's function on the stack) -> CPU seconds: who asked for the work.
        self.callers: Counter[tuple[str, str]] = Counter()
        self.process_seconds = 0.0
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-profile", daemon=True)

    def __enter__(self) -> CpuProfile:
        self._process_start = time.process_time()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.process_seconds = time.process_time() - self._process_start

    def _run(self) -> None:
        own = threading.get_ident()
        for ident in sys._current_frames():  # the CPU threads used before the block is not counted
            self._last[ident] = _thread_cpu(ident)
        while not self._stop.wait(self._interval):
            self.sample(own)

    def sample(self, own: int) -> None:
        for ident, frame in sys._current_frames().items():
            if ident == own:
                continue
            now = _thread_cpu(ident)
            if now is None:
                continue
            used = now - (self._last.get(ident) or 0.0)
            self._last[ident] = now
            if used > 0:
                kind = kind_of(frame)
                self.seconds[kind] += used
                self.callers[kind, our_caller(frame)] += used

    def minus(self, other: CpuProfile) -> CpuProfile:
        """This profile less `other` (a smaller run's): what the extra photos cost."""
        difference = CpuProfile(self._interval)
        difference.seconds = Counter({k: self.seconds[k] - other.seconds.get(k, 0.0) for k in self.seconds})
        difference.callers = Counter({k: self.callers[k] - other.callers.get(k, 0.0) for k in self.callers})
        difference.process_seconds = self.process_seconds - other.process_seconds
        return difference

    def top_callers(self, photos: int, count: int = 12) -> str:
        ranked = sorted(self.callers.items(), key=lambda item: -item[1])[:count]
        return "\n".join(f"    {1000 * seconds / photos:>7.1f} ms/photo  {kind:<16} <- {caller}" for (kind, caller), seconds in ranked)

    def report(self, photos: int) -> str:
        attributed = sum(self.seconds.values())
        lines = [f"    {'kind':<18} {'CPU s':>7} {'ms/photo':>9} {'share':>6}"]
        for kind in KINDS:
            seconds = self.seconds.get(kind, 0.0)
            lines.append(f"    {kind:<18} {seconds:>7.2f} {1000 * seconds / photos:>9.1f} {seconds / attributed:>6.1%}")
        lines.append(
            f"    {'attributed':<18} {attributed:>7.2f} {1000 * attributed / photos:>9.1f}   (process CPU over the run: "
            f"{self.process_seconds:.2f} s, {1000 * self.process_seconds / photos:.1f} ms/photo)"
        )
        return "\n".join(lines)


def _thread_cpu(ident: int) -> float | None:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (OSError, ProcessLookupError):  # the thread ended between listing and reading
        return None
