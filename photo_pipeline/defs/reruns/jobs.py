"""`reprocess_failed_photos`: an operator's re-run of failed (optionally missing) photos of an
album, partitioned by album like the renditions: the operator picks the album in the launchpad's
partition picker (or backfills several from the job's Partitions tab) and its id fills the
required `album_id`; `photo_ids` narrows the run to some of its photos. With no album chosen the
launchpad reports the missing `album_id` and launches nothing.
The rules live in `services/reruns.py`; the ops below only wire and report.
"""


import uuid
from typing import Any

from dagster import (
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    PartitionedConfig,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from photo_pipeline.defs.renditions.assets import (
    ALBUMS,
    NO_FAILED_PHOTOS_IN_ALBUM,
    TRANSIENT_RETRY,
    album_rendition_events,
    albums_partitions,
    render_album,
)
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.services import reruns

# Photos listed one by one in a step's metadata; the rest are counted.
MAX_LISTED_PHOTOS = 50


class ReprocessFailedConfig(Config):
    album_id: str = Field(
        description=(
            "The album whose failed photos are re-run. Filled in when you pick the album in the "
            "launchpad's partition picker (or backfill several albums from the job's Partitions tab)."
        ),
    )
    photo_ids: list[str] = Field(
        default_factory=list,
        description=(
            "Only these photos of the album (ids as the no_failed_photos_in_album check lists them). Empty: "
            "every failed photo of the album. Photos that are not failed (or missing, with "
            "include_missing) are listed in the step's metadata with why."
        ),
    )
    include_missing: bool = Field(
        default=False,
        description=(
            "Also requeue photos flagged `missing` (their original was gone past the grace period): "
            "use it once the files are back in the bucket."
        ),
    )


REQUEUE_OP = "requeue_failed"


def config_for_album(album: str) -> dict[str, Any]:
    """The launchpad's config once an album partition is picked: every option shown, album filled."""
    return {"ops": {REQUEUE_OP: {"config": {"album_id": album, "photo_ids": [], "include_missing": False}}}}


reprocess_partitioned_config = PartitionedConfig(
    partitions_def=albums_partitions, run_config_for_partition_key_fn=config_for_album
)


# The run's tag saying what the re-run changed (the runs list shows it).
RERUN_RESULT_TAG = "photo_pipeline/rerun_result"
# What `requeue_failed` hands `render_albums`: album -> photo -> the error it had failed with.
FailuresBefore = dict[str, dict[str, str | None]]


@op(
    name=REQUEUE_OP,
    description=(
        "Put the chosen failed (and optionally missing) photos back to pending; outputs the albums touched "
        "and each photo's failure, to compare the re-run with."
    ),
    tags={"kind": "requeue"},
)
def requeue_failed(
    context: OpExecutionContext, config: ReprocessFailedConfig, photo_pipeline: PhotoPipelineResource
) -> FailuresBefore:
    try:
        selection = reruns.parse_selection(config.album_id, config.photo_ids, config.include_missing)
    except reruns.InvalidRerunSelection as exc:
        # A config mistake: retrying cannot help, the operator relaunches with a fixed config.
        raise Failure(description=f"invalid config: {exc}", allow_retries=False) from exc
    picked = context.partition_key if context.has_partition_key else None
    if picked is not None and selection.album_id is not None and picked != str(selection.album_id):
        # The picked partition and an album_id edited by hand disagree: the config is what runs.
        context.log.warning("album partition %s picked, but album_id is %s: re-running %s", picked, selection.album_id, selection.album_id)
    outcome = reruns.requeue(photo_pipeline.repository(), selection)
    context.log.info(
        "requeued %d photo(s) in %d album(s) (%s)", outcome.count, len(outcome.albums), selection.describe()
    )
    for photo_id, reason in outcome.not_requeued.items():
        context.log.warning("photo %s not requeued: %s", photo_id, reason)
    context.add_output_metadata(requeue_metadata(outcome))
    return {
        str(album): {str(photo): error for photo, error in failures.items()}
        for album, failures in outcome.failures_before().items()
    }


def requeue_metadata(outcome: reruns.RequeueOutcome) -> dict[str, MetadataValue]:
    albums = ["| album | photos requeued |", "|---|---|"]
    albums += [f"| `{album}` | {count} |" for album, count in outcome.per_album.items()]
    metadata: dict[str, MetadataValue] = {
        "photos_requeued": MetadataValue.int(outcome.count),
        "albums": MetadataValue.int(len(outcome.albums)),
        "requeued_by_album": MetadataValue.md("\n".join(albums)),
        "photos_not_requeued": MetadataValue.int(len(outcome.not_requeued)),
    }
    if outcome.not_requeued:
        listed = list(outcome.not_requeued.items())[:MAX_LISTED_PHOTOS]
        lines = ["| photo | why not |", "|---|---|"] + [f"| `{p}` | {why} |" for p, why in listed]
        metadata["not_requeued"] = MetadataValue.md("\n".join(lines))
    return metadata


@op(
    name="render_albums",
    description=(
        "Render each touched album's pending photos and record the thumbnails/previews "
        "materializations and the failed-photo checks for that album partition; say what the "
        "re-run changed for each photo (fixed, or failed again with the same reason)."
    ),
    retry_policy=TRANSIENT_RETRY,
    tags={"kind": "rendering"},
)
def render_albums(context: OpExecutionContext, photo_pipeline: PhotoPipelineResource, albums: FailuresBefore) -> None:
    rendered = failed = 0
    results: list[reruns.RerunResult] = []
    for album, failures in albums.items():
        ensure_album_partition(context, album)
        album_id = uuid.UUID(album)
        report = render_album(context.log, photo_pipeline, album_id, context.run.run_id)
        result = reruns.rerun_result(album_id, {uuid.UUID(p): error for p, error in failures.items()}, report.outcomes)
        log = context.log.warning if result.changed_nothing else context.log.info
        log("album %s: %s", album, result.summary())
        # The same events the album_renditions asset records (materializations and checks), so
        # the asset's history in the UI shows this re-run like any other render of the album.
        for event in album_rendition_events(context.log, photo_pipeline, report, rerun=result):
            # log_event accepts check evaluations at run time (1.13), though its annotation omits them.
            context.log_event(event)  # type: ignore[arg-type]
        rendered, failed = rendered + report.rendered, failed + report.failed
        results.append(result)
    if not albums:
        context.log.info("no photo was requeued: nothing to render")
    summary = rerun_summary(results)
    # On the run itself, so the runs list tells a re-run that fixed nothing from one that did.
    context.instance.add_run_tags(context.run.run_id, {RERUN_RESULT_TAG: summary})
    context.add_output_metadata(
        {
            "summary": MetadataValue.text(summary),
            "albums": MetadataValue.int(len(albums)),
            "photos_rendered": MetadataValue.int(rendered),
            "photos_failed": MetadataValue.int(failed),
            "photos_fixed": MetadataValue.int(sum(len(r.fixed) for r in results)),
            "photos_failed_again_same_reason": MetadataValue.int(sum(len(r.failed_again) for r in results)),
            "photos_failed_with_new_reason": MetadataValue.int(sum(len(r.failed_differently) for r in results)),
        }
    )


def rerun_summary(results: list[reruns.RerunResult]) -> str:
    """One line for the whole run (its tag, the step's summary): the albums' results together."""
    if not results:
        return "nothing requeued"
    if len(results) == 1:
        return results[0].summary()
    return "; ".join(f"album {r.album_id}: {r.summary()}" for r in results)


def ensure_album_partition(context: OpExecutionContext, album: str) -> None:
    # Materializations of an album the UI does not know as a partition would be invisible there.
    if not context.instance.has_dynamic_partition(ALBUMS, album):
        context.instance.add_dynamic_partitions(ALBUMS, [album])


@job(
    name="reprocess_failed_photos",
    executor_def=in_process_executor,
    # Partitioned by album: the launchpad's partition picker chooses the album (and fills
    # album_id), the Partitions tab backfills several, and the run carries the album's
    # dagster/partition tag, so it queues behind a process_album run of the same album.
    config=reprocess_partitioned_config,
    description=(
        "An operator's re-run of an album's failed photos (optionally only some, by photo_ids; "
        "optionally missing ones too): back to pending, then rendered again. Pick the album in the "
        "launchpad's partition picker, or backfill several albums from the Partitions tab. Fix the "
        "cause first (replace a corrupt original, restore a missing one); the "
        f"{NO_FAILED_PHOTOS_IN_ALBUM} check on `thumbnails` lists each album's failed photos."
    ),
    tags={"photo_pipeline/kind": "rerun"},
)
def reprocess_failed_photos() -> None:
    render_albums(requeue_failed())
