"""`pending_photo_sensor`: albums with pending rows whose original has arrived get a run; so do
albums whose photos' claims expired (a crashed run), whose silent run is then marked failed.
"""

import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from photo_pipeline.defs.renditions.jobs import IN_FLIGHT, process_album
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.defs.sensors.album_runs import (
    PARTITION_TAG,
    PENDING_ALBUMS_PER_TICK,
    PENDING_PROBES_PER_ALBUM,
    SETTINGS,
    album_run_request,
    albums_with_runs_in_flight,
    labelled,
    new_album_partitions,
)
from photo_pipeline.photos.repository import (
    PhotoRecord,
    PhotoRepository,
    utc_now,
)
from photo_pipeline.services import discovery
from photo_pipeline.storage import ObjectStore


@sensor(
    name="pending_photo_sensor",
    job=process_album,
    minimum_interval_seconds=max(5, SETTINGS.sensor_interval_seconds // 2),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Finds albums with pending photos whose original is in the bucket and requests a "
        "process_album run for each (cursor = the newest change already requested per album)."
    ),
)
def pending_photo_sensor(context: SensorEvaluationContext, photo_pipeline: PhotoPipelineResource) -> SensorResult:
    repository = photo_pipeline.repository()
    store = photo_pipeline.store()
    cursor = discovery.PendingCursor.from_json(context.cursor)
    pending = repository.pending_albums(limit=PENDING_ALBUMS_PER_TICK)
    news = discovery.albums_with_news(pending, cursor)
    busy = albums_with_runs_in_flight(context) if news else set()
    ready = [album for album in news if str(album.album_id) not in busy]
    arrived = albums_with_arrived_originals(repository, store, [a.album_id for a in ready])
    requests = [
        album_run_request(
            album.album_id, discovery.run_key("pending", album.album_id, [discovery.pending_marker(album)]), "pending_photo_sensor"
        )
        for album in ready
        if album.album_id in arrived
    ]
    next_cursor = discovery.next_pending_cursor(pending, cursor, [a.album_id for a in ready if a.album_id in arrived])
    lease = photo_pipeline.settings().claim_lease_seconds
    expired = expired_claim_requests(context, repository, lease, skip={r.partition_key or "" for r in requests})
    requests += expired
    partitions = new_album_partitions(context, [*arrived, *(uuid.UUID(r.partition_key or "") for r in expired)])
    # The albums this tick names, titled in one query.
    requested = [uuid.UUID(r.partition_key or "") for r in requests]
    titles = repository.album_titles({*(a.album_id for a in pending), *requested}) if pending or requested else {}
    if not requests:
        reason = discovery.pending_skip_reason(
            [a.album_id for a in pending], [a.album_id for a in news], {a.album_id for a in news} - {a.album_id for a in ready}, titles
        )
        return SensorResult(skip_reason=SkipReason(reason), cursor=next_cursor.to_json(), dynamic_partitions_requests=partitions)
    context.log.info("process_album requested for %s", discovery.named_albums(requested, titles, limit=len(requested)))
    return SensorResult(run_requests=labelled(requests, titles), cursor=next_cursor.to_json(), dynamic_partitions_requests=partitions)


def albums_with_arrived_originals(
    repository: PhotoRepository, store: ObjectStore, album_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Albums with at least one pending photo whose original is in the bucket: the albums' newest
    pending rows in one query, then per album HEADs newest first until one is found (usually the
    first), the albums in parallel."""
    probes = repository.pending_in_albums(album_ids, PENDING_PROBES_PER_ALBUM)
    if not probes:
        return set()

    def arrived(photos: list[PhotoRecord]) -> bool:
        return any(store.exists(photo.original_key) for photo in photos)

    albums = list(probes)
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe") as pool:
        found = list(pool.map(lambda album_id: arrived(probes[album_id]), albums))
    return {album_id for album_id, exists in zip(albums, found, strict=True) if exists}


def expired_claim_requests(
    context: SensorEvaluationContext, repository: PhotoRepository, lease_seconds: int, skip: set[str]
) -> list[RunRequest]:
    """A `process_album` run for each album with claims older than the lease (its run crashed or
    hung): the run's claim_batch takes them back. One grouped query; no row is written here.

    A run recorded as in progress whose claims expired and whose event log has been silent for a
    lease is dead (a run killed with -9 stays STARTED forever, and keeps its album's concurrency
    slot): it is marked failed, so the album's next run is not queued behind it forever."""
    expired = repository.expired_claim_tokens(utc_now() - timedelta(seconds=lease_seconds), limit=PENDING_ALBUMS_PER_TICK)
    if not expired:
        return []
    in_flight = {r.dagster_run.run_id: r for r in context.instance.get_run_records(RunsFilter(statuses=IN_FLIGHT), limit=10_000)}
    holders = {discovery.worker_of(token) for tokens in expired.values() for token in tokens} & in_flight.keys()
    silence = {run_id: seconds_since_last_event(context, run_id) for run_id in holders}
    for run_id in discovery.stalled_runs(expired, silence, lease_seconds):
        record = in_flight.pop(run_id)
        message = (
            f"run {run_id} stopped renewing its photo claims and wrote no event for {silence[run_id]:.0f}s "
            f"(lease {lease_seconds}s): presumed dead (killed or crashed); its photos are handed to a new run"
        )
        context.log.warning(message)
        context.instance.report_run_failed(record.dagster_run, message)
    busy = skip | {
        r.dagster_run.tags[PARTITION_TAG]
        for r in in_flight.values()
        if r.dagster_run.job_name == process_album.name and PARTITION_TAG in r.dagster_run.tags
    }
    requests = [
        album_run_request(album_id, discovery.expired_claims_run_key(album_id, tokens), "expired_claims")
        for album_id, tokens in expired.items()
        if str(album_id) not in busy
    ]
    if requests:
        context.log.info("expired claims in %d album(s): requesting their runs", len(expired))
    return requests


def seconds_since_last_event(context: SensorEvaluationContext, run_id: str) -> float:
    records = context.instance.get_records_for_run(run_id, limit=1, ascending=False).records
    if not records:
        return float("inf")
    return time.time() - records[0].event_log_entry.timestamp
