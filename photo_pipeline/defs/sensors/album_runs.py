"""What both sensors share: how an album's `process_album` run is requested, and which albums
already have one in flight.

Both sensors are idempotent: run keys absorb overlapping ticks, and an album that already has a
queued or running `process_album` run gets no second one.
"""

import uuid
from collections.abc import Iterable, Mapping, Sequence

from dagster import (
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
)

from photo_pipeline.defs.renditions.assets import albums_partitions
from photo_pipeline.defs.renditions.jobs import IN_FLIGHT, process_album
from photo_pipeline.services import discovery
from photo_pipeline.settings import Settings

PARTITION_TAG = "dagster/partition"
LIST_PAGE_SIZE = 1000
# Listing time a raw_object_sensor tick may spend (whole pages): keeps ticks well under 2 s.
LIST_BUDGET_SECONDS = 0.8
# How many of an album's pending rows a tick checks for an arrived original.
PENDING_PROBES_PER_ALBUM = 20
PENDING_ALBUMS_PER_TICK = 200
# On run requests of a tick that skipped keys the table cannot hold: how many.
UNHOLDABLE_TAG = "photo_pipeline/unholdable_keys"
# On every run request: the album by title and short id ("Holidays (3f2a9c1e…)").
ALBUM_TAG = "photo_pipeline/album"

# Read when the code location loads: sensor intervals are fixed at definition time.
SETTINGS = Settings.from_env()


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


def labelled(requests: Sequence[RunRequest], titles: Mapping[uuid.UUID, str]) -> list[RunRequest]:
    """The requests with their album's title and short id as a tag: the runs list names the album."""
    named = []
    for request in requests:
        album_id = uuid.UUID(request.partition_key or "")
        label = discovery.album_label(album_id, titles.get(album_id))
        named.append(request.with_replaced_attrs(tags={**request.tags, ALBUM_TAG: label}))
    return named


def new_album_partitions(context: SensorEvaluationContext, album_ids: Iterable[uuid.UUID]):
    wanted = list(dict.fromkeys(str(a) for a in album_ids))
    if not wanted:
        return []
    # One read of the partition set rather than one query per album (hundreds per tick).
    known = set(context.instance.get_dynamic_partitions(albums_partitions.name))
    missing = [a for a in wanted if a not in known]
    return [albums_partitions.build_add_request(missing)] if missing else []
