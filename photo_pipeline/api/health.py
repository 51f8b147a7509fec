"""`/healthz` answered within seconds whatever hangs, and never at the handlers' expense.

- Each part (database, bucket) is probed on the probes' own threads (an anyio CapacityLimiter of
  HEALTH_THREADS), never on the thread pool the request handlers share: a storm of probes cannot
  starve `GET /api/albums/…`.
- Concurrent requests share the check in flight, and its answer is kept HEALTH_CACHE_SECONDS: a
  load balancer polling from ten places costs one check, not ten.
- An answer waits at most HEALTH_DEADLINE_SECONDS per part. The probes' own timeouts
  (services/reachability.py) end a check sooner; the deadline covers what no client timeout can,
  a database server that accepted the connection and stopped answering. A check still running
  then keeps its thread; the next request waits for that same check rather than starting another.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
from anyio import CapacityLimiter

from photo_pipeline.services.reachability import OK, Probes, bucket_state, database_state

HEALTH_THREADS = 2  # one per part: the parts are checked side by side
HEALTH_CACHE_SECONDS = 2.0
HEALTH_DEADLINE_SECONDS = 3.0


@dataclass(frozen=True)
class Health:
    database: str
    bucket: str

    @property
    def ok(self) -> bool:
        return self.database == OK and self.bucket == OK


class SharedCheck:
    """One blocking check, run on `limiter`'s threads, shared by concurrent callers, its answer
    kept `cache_seconds`; a caller waits at most `deadline_seconds` for it."""

    def __init__(
        self,
        check: Callable[[], str],
        limiter: CapacityLimiter,
        *,
        cache_seconds: float = HEALTH_CACHE_SECONDS,
        deadline_seconds: float = HEALTH_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._limiter = limiter
        self._cache_seconds = cache_seconds
        self._deadline_seconds = deadline_seconds
        self._clock = clock
        self._answer: tuple[float, str] | None = None
        self._running: asyncio.Task[str] | None = None

    async def state(self) -> str:
        if self._answer is not None and self._clock() - self._answer[0] < self._cache_seconds:
            return self._answer[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._run())
        try:
            # shield: a caller that gives up (deadline, client gone) leaves the check to the others.
            return await asyncio.wait_for(asyncio.shield(self._running), self._deadline_seconds)
        except TimeoutError:
            return f"unreachable (no answer within {self._deadline_seconds:g} s)"

    async def _run(self) -> str:
        try:
            answer = await anyio.to_thread.run_sync(self._check, limiter=self._limiter)
            self._answer = (self._clock(), answer)
            return answer
        finally:
            self._running = None


class HealthProbe:
    """The database and the bucket, each a SharedCheck on the probes' own threads."""

    def __init__(self, probes: Probes, *, threads: int = HEALTH_THREADS) -> None:
        self.probes = probes
        limiter = CapacityLimiter(threads)
        self._database = SharedCheck(lambda: database_state(probes.repository), limiter)
        self._bucket = SharedCheck(lambda: bucket_state(probes.store), limiter)

    async def health(self) -> Health:
        database, bucket = await asyncio.gather(self._database.state(), self._bucket.state())
        return Health(database=database, bucket=bucket)

    def close(self) -> None:
        self.probes.close()
