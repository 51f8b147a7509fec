"""`raw_object_sensor`: new originals under `raw/` become rows (if they have none) and album runs.

The one side effect, creating rows for raw objects that have none, is an idempotent insert, so a
"preview tick" in the UI repeats it safely. Keys the table cannot hold are skipped and reported,
and the cursor moves past them.
"""

import time
from collections.abc import Sequence

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from photo_pipeline.defs.renditions.jobs import process_album
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.defs.sensors.album_runs import (
    LIST_BUDGET_SECONDS,
    LIST_PAGE_SIZE,
    SETTINGS,
    UNHOLDABLE_TAG,
    album_run_request,
    albums_with_runs_in_flight,
    labelled,
    new_album_partitions,
)
from photo_pipeline.photos.repository import (
    NewPhoto,
    isolate_refused_rows,
)
from photo_pipeline.services import discovery
from photo_pipeline.storage import ObjectInfo, ObjectStore, keys


@sensor(
    name="raw_object_sensor",
    job=process_album,
    minimum_interval_seconds=SETTINGS.sensor_interval_seconds,
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
    # The albums this tick names, titled in one query.
    titles = repository.album_titles(by_album) if by_album else {}
    if created:
        context.log.info(
            "created pending rows for %d raw object(s) without a row, in %s",
            len(created),
            discovery.named_albums(list(by_album), titles),
        )

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
        return SensorResult(
            skip_reason=SkipReason(discovery.raw_skip_reason(len(objects), by_album, titles, skipped)),
            cursor=next_cursor.to_json(),
            dynamic_partitions_requests=new_album_partitions(context, by_album),
        )
    return SensorResult(
        run_requests=labelled(requests, titles),
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
