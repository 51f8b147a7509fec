"""Sensors that notice uploads and turn them into per-album `process_album` runs.

Both are idempotent: run keys absorb overlapping ticks, and an album that already has a queued
or running `process_album` run gets no second one. The one side effect, creating rows for raw
objects that have none, is an idempotent insert, so a "preview tick" in the UI repeats it safely.
"""


import time
import uuid
from collections.abc import Iterable, Sequence
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

from photo_pipeline.defs.renditions.assets import albums_partitions
from photo_pipeline.defs.renditions.jobs import IN_FLIGHT, process_album
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.repository import (
    NewPhoto,
    PhotoRecord,
    PhotoRepository,
    isolate_refused_rows,
    utc_now,
)
from photo_pipeline.services import discovery
from photo_pipeline.settings import Settings
from photo_pipeline.storage import ObjectInfo, ObjectStore, keys

PARTITION_TAG = "dagster/partition"
LIST_PAGE_SIZE = 1000
# Listing time a raw_object_sensor tick may spend (whole pages): keeps ticks well under 2 s.
LIST_BUDGET_SECONDS = 0.8
# How many of an album's pending rows a tick checks for an arrived original.
PENDING_PROBES_PER_ALBUM = 20
PENDING_ALBUMS_PER_TICK = 200
# On run requests of a tick that skipped keys the table cannot hold: how many.
UNHOLDABLE_TAG = "photo_pipeline/unholdable_keys"

_settings = Settings.from_env()


def albums_with_runs_in_flight(context: SensorEvaluationContext) -> set[str]:
    """Albums whose `process_album` run is queued or running, in one query."""
    records = context.instance.get_run_records(
        RunsFilter(job_name=process_album.name, statuses=IN_FLIGHT), limit=10_000
    )
    return {r.dagster_run.tags[PARTITION_TAG] for r in records if PARTITION_TAG in r.dagster_run.tags}


def album_run_request(album_id: uuid.UUID, key: str, trigger: str) -> RunRequest:
    return RunRequest(
        run_key=key,
        partition_key=str(album_id),
        tags={"photo_pipeline/trigger": trigger},
    )


def new_album_partitions(context: SensorEvaluationContext, album_ids: Iterable[uuid.UUID]):
    wanted = list(dict.fromkeys(str(a) for a in album_ids))
    if not wanted:
        return []
    # One read of the partition set rather than one query per album (hundreds per tick).
    known = set(context.instance.get_dynamic_partitions(albums_partitions.name))
    missing = [a for a in wanted if a not in known]
    return [albums_partitions.build_add_request(missing)] if missing else []


@sensor(
    name="raw_object_sensor",
    job=process_album,
    minimum_interval_seconds=_settings.sensor_interval_seconds,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Sweeps raw/ a slice per tick (cursor = last key seen), creates pending rows for objects "
        "that have none, adds their album partitions and requests one run per album."
    ),
)
def raw_object_sensor(context: SensorEvaluationContext, photo_pipeline: PhotoPipelineResource) -> SensorResult:
    settings = photo_pipeline.settings()
    store = photo_pipeline.store()
    repository = photo_pipeline.repository()
    cursor = discovery.RawSweepCursor.from_json(context.cursor)

    objects, reached_end = list_slice(store, cursor.after, settings.sensor_max_keys_per_tick)
    holdable, skipped = discovery.split_listing(objects)
    if skipped:
        # Left in the bucket and reported, never looked up or inserted: one such key would fail
        # the whole batch, every tick, and the cursor would never move past it.
        context.log.warning("raw_object_sensor: %s", discovery.describe_skipped(skipped))
    rows = repository.find_by_original_keys([o.key for o in holdable])
    candidates = discovery.photos_to_adopt(holdable, rows)
    created = set(isolate_refused_rows(candidates, repository.adopt, refused_logger(context)))
    by_album = discovery.group_by_album(candidates, created)
    if created:
        context.log.info("created pending rows for %d raw object(s) without a row", len(created))

    busy = albums_with_runs_in_flight(context) if by_album else set()
    requests = [
        with_skipped_tag(
            album_run_request(album_id, discovery.run_key("raw", album_id, map(str, ids)), "raw_object_sensor"), skipped
        )
        for album_id, ids in by_album.items()
        if str(album_id) not in busy
    ]
    next_cursor = cursor.advanced(objects[-1].key if objects else cursor.after, reached_end)
    if not requests:
        unholdable = f"; {discovery.describe_skipped(skipped)}" if skipped else ""
        return SensorResult(
            skip_reason=SkipReason(f"looked at {len(objects)} raw object(s); none without a row{unholdable}"),
            cursor=next_cursor.to_json(),
            dynamic_partitions_requests=new_album_partitions(context, by_album),
        )
    return SensorResult(
        run_requests=requests,
        cursor=next_cursor.to_json(),
        dynamic_partitions_requests=new_album_partitions(context, by_album),
    )


def refused_logger(context: SensorEvaluationContext):  # type: ignore[no-untyped-def]
    def refused(photo: NewPhoto, exc: Exception) -> None:
        # Left for reconciliation to report; the tick and the rest of its slice go on.
        context.log.error(
            "raw_object_sensor: the photo table refused a row for %s: %s",
            keys.display_key(photo.original_key),
            keys.display_key(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, limit=300),
        )

    return refused


def with_skipped_tag(request: RunRequest, skipped: Sequence[keys.SkippedKey]) -> RunRequest:
    """Runs requested by a tick that skipped keys say how many, so the run page shows it."""
    if not skipped:
        return request
    return request.with_replaced_attrs(tags={**request.tags, UNHOLDABLE_TAG: str(len(skipped))})


def list_slice(
    store: ObjectStore, after: str | None, max_keys: int, budget_seconds: float = LIST_BUDGET_SECONDS
) -> tuple[list[ObjectInfo], bool]:
    """Up to max_keys objects under raw/ after `after`; True when the listing's end was reached.
    Stops early, after a whole page, once `budget_seconds` of listing are spent: a slow store
    (or a large bucket on a slow server) makes the slice shorter, not the tick longer; the
    cursor carries on from the last key next tick."""
    objects: list[ObjectInfo] = []
    position = after
    started = time.monotonic()
    while len(objects) < max_keys:
        if objects and time.monotonic() - started >= budget_seconds:
            return objects, False
        limit = min(LIST_PAGE_SIZE, max_keys - len(objects))
        page = store.list_page(keys.RAW_PREFIX, start_after=position, limit=limit)
        objects.extend(page)
        if len(page) < limit:
            return objects, True
        position = page[-1].key
    return objects, False


@sensor(
    name="pending_photo_sensor",
    job=process_album,
    minimum_interval_seconds=max(5, _settings.sensor_interval_seconds // 2),
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
    if not requests:
        reason = (
            f"{len(pending)} album(s) with pending photos; {len(news)} changed, "
            f"{len(news) - len(ready)} already running, none with an arrived original"
        )
        return SensorResult(skip_reason=SkipReason(reason), cursor=next_cursor.to_json(), dynamic_partitions_requests=partitions)
    return SensorResult(run_requests=requests, cursor=next_cursor.to_json(), dynamic_partitions_requests=partitions)


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
        context.log.info(
            "expired claims in %d album(s): requesting runs for %s",
            len(expired),
            ", ".join(r.partition_key or "" for r in requests),
        )
    return requests


def seconds_since_last_event(context: SensorEvaluationContext, run_id: str) -> float:
    records = context.instance.get_records_for_run(run_id, limit=1, ascending=False).records
    if not records:
        return float("inf")
    return time.time() - records[0].event_log_entry.timestamp
