"""`GET /metrics` over real HTTP (uvicorn on loopback, PostgreSQL), parsed with prometheus-client's
own parser: every figure equal to what the table and the latest plan hold, the histogram of
upload -> first completion counting each photo once, the API's requests by route template, the
token, the cache. And the deploy/ dashboard and alert rules reference only metrics that exist."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml
from dagster import DagsterInstance, MetadataValue
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import func, select

from photo_pipeline.defs.reconcile.assets import MISSING_ROWS, ORPHAN_OBJECTS, OUTCOME, PLAN_TAKEN_AT, STORAGE_RECONCILIATION
from photo_pipeline.photos.models import Photo, PhotoStatus
from photo_pipeline.services.metrics import LatencyHistogram, OVERLAP
from photo_pipeline.storage import LocalObjectStore
from photo_pipeline_tests.alerts.test_alert_sensors import record_materialization
from photo_pipeline_tests.api.conftest import ApiServer, api_settings, requester_on, serve_in_thread
from photo_pipeline_tests.conftest import ROOT
from photo_pipeline_tests.services.test_health import Table

METRICS_TOKEN = "metrics-token-" + "m" * 30
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}
LATENCIES = (3.0, 20.0, 100.0, 4000.0)


def scrape(api: ApiServer) -> dict[str, list]:  # type: ignore[type-arg]
    answer = requests.get(api.url("/metrics"), headers=SCRAPE, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(answer.text)}


def value(samples: list, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    (found,) = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    return found


@pytest.fixture
def served(photo_db: str, tmp_path: Path, instance: DagsterInstance):  # type: ignore[no-untyped-def]
    settings = api_settings(tmp_path, photo_db, None, metrics_token=SecretStr(METRICS_TOKEN))
    with serve_in_thread(settings, requester_on(instance), store=LocalObjectStore(tmp_path / "objects")) as api:
        api.instance = instance
        yield api


def test_metrics_equal_what_the_table_and_the_latest_plan_hold(served: ApiServer, photo_db: str) -> None:
    now = datetime.now(UTC)
    table = Table(photo_db, now)
    table.pending(now - timedelta(hours=3))
    table.pending(now - timedelta(minutes=5))
    table.failed(now - timedelta(minutes=20), now - timedelta(minutes=10))
    table.claimed(now - timedelta(hours=1), now - timedelta(minutes=30))  # past the 120 s lease
    table.missing(now - timedelta(days=2))
    for latency in LATENCIES:  # first completed after the API started: in the histogram
        table.completed(now - timedelta(seconds=latency), now)
    table.completed(now - timedelta(days=1), now - timedelta(hours=20))  # before it started: not
    planned = now - timedelta(minutes=7)
    record_materialization(
        served.instance,  # type: ignore[arg-type]
        STORAGE_RECONCILIATION,
        planned,
        {
            ORPHAN_OBJECTS: MetadataValue.int(7),
            MISSING_ROWS: MetadataValue.int(3),
            OUTCOME: MetadataValue.text("applied"),
            PLAN_TAKEN_AT: MetadataValue.timestamp(planned),
        },
    )

    families = scrape(served)
    scraped_at = datetime.now(UTC)

    with table.repository.engine.connect() as conn:
        by_status = dict(conn.execute(select(Photo.status, func.count()).group_by(Photo.status)).all())
        oldest = conn.execute(select(func.min(Photo.created_at)).where(Photo.status == "pending")).scalar_one()
    photos = families["photo_pipeline_photos"]
    for status in PhotoStatus:  # every status, from the enum: a new one shows up by itself
        assert value(photos, "photo_pipeline_photos", status=status.value) == by_status.get(status.value, 0)
    age = value(families["photo_pipeline_oldest_pending_age_seconds"], "photo_pipeline_oldest_pending_age_seconds")
    assert (now - oldest).total_seconds() - 1 <= age <= (scraped_at - oldest).total_seconds() + 1
    assert value(families["photo_pipeline_expired_claims"], "photo_pipeline_expired_claims") == 1
    finished = families["photo_pipeline_photos_finished_last_hour"]
    assert value(finished, "photo_pipeline_photos_finished_last_hour", outcome="completed") == len(LATENCIES)
    assert value(finished, "photo_pipeline_photos_finished_last_hour", outcome="failed") == 1
    assert value(families["photo_pipeline_failure_rate_last_hour"], "photo_pipeline_failure_rate_last_hour") == pytest.approx(1 / 5)
    assert value(families["photo_pipeline_reconciliation_orphan_objects"], "photo_pipeline_reconciliation_orphan_objects") == 7
    assert value(families["photo_pipeline_reconciliation_missing_rows"], "photo_pipeline_reconciliation_missing_rows") == 3
    plan_at = value(families["photo_pipeline_reconciliation_plan_timestamp_seconds"], "photo_pipeline_reconciliation_plan_timestamp_seconds")
    assert plan_at == pytest.approx(planned.timestamp())

    histogram = families["photo_pipeline_upload_to_first_completion_seconds"]
    name = "photo_pipeline_upload_to_first_completion_seconds"
    expected = {"1.0": 0, "5.0": 1, "15.0": 1, "30.0": 2, "60.0": 2, "120.0": 3, "3600.0": 3, "7200.0": 4, "+Inf": 4}
    for le, count in expected.items():
        assert value(histogram, f"{name}_bucket", le=le) == count, le
    assert value(histogram, f"{name}_count") == len(LATENCIES)
    assert value(histogram, f"{name}_sum") == pytest.approx(sum(LATENCIES))


def test_api_requests_are_counted_by_route_template_never_by_id(served: ApiServer) -> None:
    albums = [uuid.uuid4() for _ in range(3)]
    for album in albums:
        assert served.get(f"/api/albums/{album}").status_code == 200
    assert served.get("/api/albums/not-a-uuid").status_code == 400
    assert requests.get(served.url(f"/no/such/{albums[0]}"), timeout=30).status_code == 404
    assert requests.get(served.url("/api/albums/x"), timeout=30).status_code == 401  # no API token

    answer = requests.get(served.url("/metrics"), headers=SCRAPE, timeout=30)
    families = {f.name: f.samples for f in text_string_to_metric_families(answer.text)}
    counts = families["photo_pipeline_api_requests"]
    route = "/api/albums/{album_id}"
    assert value(counts, "photo_pipeline_api_requests_total", method="GET", route=route, status="200") == 3
    assert value(counts, "photo_pipeline_api_requests_total", method="GET", route=route, status="400") == 1
    assert value(counts, "photo_pipeline_api_requests_total", method="GET", route=route, status="401") == 1
    assert value(counts, "photo_pipeline_api_requests_total", method="GET", route="<unmatched>", status="404") == 1
    durations = families["photo_pipeline_api_request_duration_seconds"]
    assert value(durations, "photo_pipeline_api_request_duration_seconds_count", method="GET", route=route) == 5
    for album in albums:
        assert str(album) not in answer.text


def test_metrics_need_their_own_token(served: ApiServer, photo_db: str, tmp_path: Path, instance: DagsterInstance) -> None:
    assert requests.get(served.url("/metrics"), timeout=30).status_code == 401
    api_token = {"Authorization": "Bearer " + served.settings.api_token.get_secret_value()}  # type: ignore[union-attr]
    assert requests.get(served.url("/metrics"), headers=api_token, timeout=30).status_code == 401

    off = replace(served.settings, metrics_token=None)
    with serve_in_thread(off, requester_on(instance), store=LocalObjectStore(tmp_path / "objects2")) as api:
        answer = requests.get(api.url("/metrics"), headers=SCRAPE, timeout=30)
    assert answer.status_code == 404 and "PHOTO_METRICS_TOKEN" in answer.json()["error"]


def test_scrapes_within_the_cache_time_read_the_table_once(served: ApiServer) -> None:
    metrics = served.server.config.app.state.metrics  # type: ignore[attr-defined]
    before = metrics.figures.reads
    for _ in range(5):
        scrape(served)
    assert metrics.figures.reads - before == 1


def test_the_histogram_counts_each_photo_once_across_overlapping_reads() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    histogram = LatencyHistogram(since=start)
    first = [(uuid.uuid4(), start, start + timedelta(seconds=10)), (uuid.uuid4(), start, start + timedelta(seconds=70))]
    histogram.add(first)
    assert histogram.read_from == start + timedelta(seconds=70) - OVERLAP
    # The next read starts OVERLAP back: the second row again, and a late commit stamped before it.
    late = (uuid.uuid4(), start, start + timedelta(seconds=40))
    histogram.add([late, first[1], (uuid.uuid4(), start, start + timedelta(seconds=200))])
    assert histogram.count == 4
    assert histogram.total_seconds == pytest.approx(10 + 70 + 40 + 200)
    histogram.add([(uuid.uuid4(), start - timedelta(hours=1), start - timedelta(seconds=1))])  # before `since`
    assert histogram.count == 4


# -- deploy/: the dashboard and the rules ---------------------------------------------------------

METRIC_NAME = re.compile(r"\bphoto_pipeline_[a-z_]+\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def referenced_metrics() -> set[str]:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus-alerts.yml").read_text())
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert all(rule["alert"] and rule.get("annotations", {}).get("summary") for g in rules["groups"] for rule in g["rules"])
    return {name for expression in expressions for name in METRIC_NAME.findall(expression)}


def test_the_dashboard_and_the_alert_rules_use_only_metrics_that_exist(served: ApiServer, photo_db: str) -> None:
    now = datetime.now(UTC)
    table = Table(photo_db, now)
    table.failed(now - timedelta(minutes=2), now - timedelta(minutes=1))  # the failure rate has a sample
    record_materialization(served.instance, STORAGE_RECONCILIATION, now, {ORPHAN_OBJECTS: MetadataValue.int(0)})  # type: ignore[arg-type]
    served.get(f"/api/albums/{uuid.uuid4()}")

    families = scrape(served)
    exposed = {sample.name for samples in families.values() for sample in samples}

    referenced = referenced_metrics()
    assert len(referenced) >= 10
    missing = {name for name in referenced if name not in exposed}
    assert missing == set(), f"referenced but not on /metrics: {missing}"
    assert {name for name in referenced if not name.endswith(SUFFIXES)} <= set(families)
