"""`GET /metrics`: the pipeline's figures and the API's own, in Prometheus' text format.

A registry of its own (never prometheus-client's global one, which would mix in whatever else
the process registers): a collector that turns the cached table figures (`services/metrics.py`)
into metric families at each scrape, and the API's request counter and duration histogram,
labelled by route template (`/api/albums/{album_id}`, never the raw path) and status. No label
carries an album or photo id: their number is unbounded.

Protected by its own bearer token, PHOTO_METRICS_TOKEN (Prometheus' `authorization`
credentials): the API token can upload and delete, a scraper needs neither. Unset, the endpoint
answers 404, so an API exposed to browsers does not publish its figures by accident.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from photo_pipeline.api.http import ApiError, token_matches
from photo_pipeline.services.health import ReconciliationFindings
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.services.metrics import CachedFigures, TableFigures

METRICS_PATH = "/metrics"
PREFIX = "photo_pipeline"
UNMATCHED_ROUTE = "<unmatched>"  # 404s: one label value, whatever path was asked for
# API request durations: from a cached JSON answer to a slow album page.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class TableCollector(Collector):
    """The table's figures, read through the cache at each scrape."""

    def __init__(self, figures: Callable[[], TableFigures]) -> None:
        self._figures = figures

    def describe(self) -> list[Metric]:
        # Without it the registry would call collect() at registration, reading the table (and
        # filling the cache) before the app serves anything.
        return []

    def collect(self) -> Iterator[Metric]:
        figures = self._figures()
        snapshot = figures.snapshot
        photos = GaugeMetricFamily(f"{PREFIX}_photos", "Photos in the table by status.", labels=["status"])
        for status in PhotoStatus:
            photos.add_metric([status.value], snapshot.count(status))
        yield photos
        yield GaugeMetricFamily(
            f"{PREFIX}_oldest_pending_age_seconds",
            "Seconds since the oldest pending photo was uploaded (0: nothing pending).",
            value=snapshot.oldest_pending_age_seconds or 0.0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_expired_claims",
            "Processing photos whose claim was not renewed for a lease (their run died or hangs).",
            value=snapshot.expired_claims,
        )
        finished = GaugeMetricFamily(
            f"{PREFIX}_photos_finished_last_hour", "Photos completed or failed in the last hour.", labels=["outcome"]
        )
        finished.add_metric(["completed"], snapshot.completed_last_window)
        finished.add_metric(["failed"], snapshot.failed_last_window)
        yield finished
        rate = GaugeMetricFamily(
            f"{PREFIX}_failure_rate_last_hour",
            "Share of the photos finished in the last hour that failed (absent when none finished).",
        )
        if snapshot.completed_last_window + snapshot.failed_last_window:
            rate.add_metric([], snapshot.failure_rate_last_window)
        yield rate
        yield from self._reconciliation(figures)
        yield HistogramMetricFamily(
            f"{PREFIX}_upload_to_first_completion_seconds",
            "Upload to first completion of the photos first completed since this process started (re-renders excluded).",
            buckets=list(figures.latency_buckets),
            sum_value=figures.latency_sum,
        )

    def _reconciliation(self, figures: TableFigures) -> Iterator[Metric]:
        """From the latest plan; absent before the first one (unknown is not zero)."""
        found = figures.reconciliation
        families = {
            "orphan_objects": ("Objects without a row, in the latest reconciliation plan.", found and found.orphan_objects),
            "missing_rows": ("Rows whose original is gone, in the latest reconciliation plan.", found and found.missing_rows),
            "plan_timestamp_seconds": (
                "When the latest reconciliation plan was made (Unix time).",
                found and found.planned_at.timestamp(),
            ),
        }
        for name, (documentation, value) in families.items():
            family = GaugeMetricFamily(f"{PREFIX}_reconciliation_{name}", documentation)
            if found is not None:
                family.add_metric([], float(value or 0))
            yield family


class LatestPlan:
    """The latest reconciliation plan's findings, from the Dagster instance the app holds open
    while it runs (its lifespan sets `read`); nothing before."""

    def __init__(self) -> None:
        self.read: Callable[[], ReconciliationFindings | None] | None = None

    def __call__(self) -> ReconciliationFindings | None:
        return self.read() if self.read is not None else None


class Metrics:
    """The registry and what feeds it, held by the app."""

    def __init__(self, figures: CachedFigures, token: SecretStr | None) -> None:
        self.token = token
        self.figures = figures
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(TableCollector(figures.get))
        self.requests = Counter(
            f"{PREFIX}_api_requests",
            "API requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.durations = Histogram(
            f"{PREFIX}_api_request_duration_seconds",
            "Time to answer API requests, by method and route template.",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.durations.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """Counts and times every request by its route template: the route Starlette's router
    matched, or, for a request refused before routing (a 401), the route it would have matched."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def route_of(self, scope: Scope) -> str:
        routed = getattr(scope.get("route"), "path", None)
        if routed is not None:
            return str(routed)
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", UNMATCHED_ROUTE))
        return UNMATCHED_ROUTE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe(scope["method"], self.route_of(scope), status, time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus' text format; the bearer token of PHOTO_METRICS_TOKEN, or nothing at all."""
    metrics: Metrics = request.app.state.metrics
    if metrics.token is None:
        raise ApiError(404, "metrics are off: set PHOTO_METRICS_TOKEN and give it to Prometheus as its bearer token")
    if not token_matches(request.headers.get("authorization"), metrics.token):
        raise ApiError(401, "missing or wrong bearer token (PHOTO_METRICS_TOKEN)", headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body = await run_in_threadpool(metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
