"""What `/metrics` reads from the table, at most once per few seconds however often it is
scraped: the health snapshot (`services/health.py`'s aggregate queries), the latest
reconciliation plan's findings, and upload -> first completion as a histogram.

The histogram counts photos first completed since this process started, like any Prometheus
histogram (cumulative counters, reset by a restart, which `rate()` understands): each refresh
reads only the rows first completed since the previous one (a range on
ix_photos_first_completed_at), never the whole table. A window-based histogram rebuilt every
scrape would go down as photos leave the window, which counters must not. Rows are re-read
OVERLAP back from the newest one seen and counted once by id, so a completion whose transaction
commits a little after its timestamp is not missed; one that commits later than that is.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine

from photo_pipeline.photos.models import Photo
from photo_pipeline.photos.repository import utc_now
from photo_pipeline.services.health import HealthSnapshot, HealthThresholds, ReconciliationFindings, collect_health

# Upload -> first completion, seconds: from a photo served at once to one that waited a day.
LATENCY_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
CACHE_SECONDS = 5.0
OVERLAP = timedelta(seconds=60)
# Rows one refresh reads at most (the overlap's included): a refresh stays bounded in a burst.
ROWS_PER_REFRESH = 20_000


@dataclass
class LatencyHistogram:
    """Cumulative bucket counts of upload -> first completion, for photos first completed at or
    after `since`, fed incrementally from the table."""

    since: datetime
    buckets: Sequence[float] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; last: over the largest
    total_seconds: float = 0.0
    newest: datetime | None = None
    # Ids counted within OVERLAP of `newest`: read again, never counted twice.
    recent: dict[uuid.UUID, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    @property
    def read_from(self) -> datetime:
        return self.since if self.newest is None else max(self.since, self.newest - OVERLAP)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as Prometheus wants them, +Inf last."""
        running, pairs = 0, []
        for bound, count in zip([*map(_bound_text, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs

    def add(self, rows: Sequence[tuple[uuid.UUID, datetime, datetime]]) -> None:
        """Rows (id, created_at, first_completed_at) read from `read_from` on, in time order."""
        for photo_id, created, first in rows:
            if first < self.since or photo_id in self.recent:
                continue
            seconds = max((first - created).total_seconds(), 0.0)
            self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self.total_seconds += seconds
            self.recent[photo_id] = first
            self.newest = first if self.newest is None else max(self.newest, first)
        if self.newest is not None:
            horizon = self.newest - OVERLAP
            self.recent = {i: t for i, t in self.recent.items() if t >= horizon}


def _bound_text(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{int(bound)}.0"


def first_completions(engine: Engine, read_from: datetime, limit: int = ROWS_PER_REFRESH) -> list[tuple[uuid.UUID, datetime, datetime]]:
    query = (
        select(Photo.id, Photo.created_at, Photo.first_completed_at)
        .where(Photo.first_completed_at >= read_from)
        .order_by(Photo.first_completed_at)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [(row[0], row[1], row[2]) for row in conn.execute(query)]


@dataclass(frozen=True)
class TableFigures:
    snapshot: HealthSnapshot
    reconciliation: ReconciliationFindings | None
    # The histogram as it was at this read: (le, cumulative count) pairs, and the sum.
    latency_buckets: tuple[tuple[str, int], ...]
    latency_sum: float


class CachedFigures:
    """The figures, read again only once CACHE_SECONDS have passed (one reader at a time; the
    others wait for its answer instead of querying too)."""

    def __init__(
        self,
        engine: Engine,
        lease_seconds: float,
        findings: Callable[[], ReconciliationFindings | None],
        *,
        clock: Callable[[], datetime] = utc_now,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._engine = engine
        self._lease_seconds = lease_seconds
        self._findings = findings
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._latency = LatencyHistogram(since=clock())
        self._figures: TableFigures | None = None
        self._read_at: datetime | None = None
        self.reads = 0  # how many times the table was read (the cache's effect, for tests)

    def get(self) -> TableFigures:
        with self._lock:
            now = self._clock()
            fresh = self._read_at is not None and (now - self._read_at).total_seconds() < self._cache_seconds
            if self._figures is None or not fresh:
                self._figures = self._read(now)
                self._read_at = now
            return self._figures

    def _read(self, now: datetime) -> TableFigures:
        snapshot = collect_health(self._engine, now, HealthThresholds(), self._lease_seconds)
        self._latency.add(first_completions(self._engine, self._latency.read_from))
        self.reads += 1
        latency = self._latency
        return TableFigures(snapshot, self._findings(), tuple(latency.cumulative()), latency.total_seconds)
