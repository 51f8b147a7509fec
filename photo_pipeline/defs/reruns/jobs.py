"""`reprocess_failed_photos`: an operator's re-run of failed (optionally missing) photos, by album
and/or photo id. The rules live in `services/reruns.py`; the ops below only wire and report.
"""


import uuid

from dagster import (
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
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
    render_album,
)
from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.services import reruns

# Photos listed one by one in a step's metadata; the rest are counted.
MAX_LISTED_PHOTOS = 50


class ReprocessFailedConfig(Config):
    album_id: str | None = Field(
        default=None,
        description=(
            "Album (UUID) whose failed photos are re-run. Together with photo_ids: only those "
            "photos, and only if they belong to this album. Set album_id, photo_ids or both."
        ),
    )
    photo_ids: list[str] = Field(
        default_factory=list,
        description=(
            "Photo ids (UUIDs) to re-run. Only photos that are failed (or missing, with "
            "include_missing) are requeued; the others are listed in the step's metadata with why."
        ),
    )
    include_missing: bool = Field(
        default=False,
        description=(
            "Also requeue photos flagged `missing` (their original was gone past the grace period): "
            "use it once the files are back in the bucket."
        ),
    )


@op(
    name="requeue_failed",
    description="Put the chosen failed (and optionally missing) photos back to pending; outputs the albums touched.",
    tags={"kind": "requeue"},
)
def requeue_failed(
    context: OpExecutionContext, config: ReprocessFailedConfig, photo_pipeline: PhotoPipelineResource
) -> list[str]:
    try:
        selection = reruns.parse_selection(config.album_id, config.photo_ids, config.include_missing)
    except reruns.InvalidRerunSelection as exc:
        # A config mistake: retrying cannot help, the operator relaunches with a fixed config.
        raise Failure(description=f"invalid config: {exc}", allow_retries=False) from exc
    outcome = reruns.requeue(photo_pipeline.repository(), selection)
    context.log.info(
        "requeued %d photo(s) in %d album(s) (%s)", outcome.count, len(outcome.albums), selection.describe()
    )
    for photo_id, reason in outcome.not_requeued.items():
        context.log.warning("photo %s not requeued: %s", photo_id, reason)
    context.add_output_metadata(requeue_metadata(outcome))
    return [str(album) for album in outcome.albums]


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
        "materializations and the failed-photo checks for that album partition."
    ),
    retry_policy=TRANSIENT_RETRY,
    tags={"kind": "rendering"},
)
def render_albums(context: OpExecutionContext, photo_pipeline: PhotoPipelineResource, albums: list[str]) -> None:
    rendered = failed = 0
    for album in albums:
        ensure_album_partition(context, album)
        report = render_album(context.log, photo_pipeline, uuid.UUID(album), context.run.run_id)
        # The same events the album_renditions asset records (materializations and checks), so
        # the asset's history in the UI shows this re-run like any other render of the album.
        for event in album_rendition_events(context.log, photo_pipeline, report):
            # log_event accepts check evaluations at run time (1.13), though its annotation omits them.
            context.log_event(event)  # type: ignore[arg-type]
        rendered, failed = rendered + report.rendered, failed + report.failed
    if not albums:
        context.log.info("no photo was requeued: nothing to render")
    context.add_output_metadata(
        {
            "albums": MetadataValue.int(len(albums)),
            "photos_rendered": MetadataValue.int(rendered),
            "photos_failed": MetadataValue.int(failed),
        }
    )


def ensure_album_partition(context: OpExecutionContext, album: str) -> None:
    # Materializations of an album the UI does not know as a partition would be invisible there.
    if not context.instance.has_dynamic_partition(ALBUMS, album):
        context.instance.add_dynamic_partitions(ALBUMS, [album])


@job(
    name="reprocess_failed_photos",
    executor_def=in_process_executor,
    description=(
        "An operator's re-run: failed photos (of an album, or chosen by id; optionally missing "
        "ones too) go back to pending and are rendered again. Fix the cause first (replace a "
        "corrupt original, restore a missing one); the failed photos of an album are listed by "
        f"the {NO_FAILED_PHOTOS_IN_ALBUM} check on `thumbnails`."
    ),
    tags={"photo_pipeline/kind": "rerun"},
)
def reprocess_failed_photos() -> None:
    render_albums(requeue_failed())
