"""Album-partitioned renditions: `thumbnails` and `previews`, produced together from one decode."""


import base64
import uuid

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    Backoff,
    DynamicPartitionsDefinition,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    multi_asset,
)

from photo_pipeline.object_store import StorageUnavailable
from photo_pipeline.processing import AlbumReport, DatabaseUnavailable, Outcome
from photo_pipeline.resources import PhotoPipelineResource

albums_partitions = DynamicPartitionsDefinition(name="albums")

THUMBNAILS = "thumbnails"
PREVIEWS = "previews"

# Transient trouble (database or bucket briefly away) is retried by Dagster with backoff; a bad
# photo never is: it ends `failed` inside the step and the step succeeds.
TRANSIENT_RETRY = RetryPolicy(max_retries=3, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

MAX_OUTCOME_ROWS = 50


def album_id_of(partition_key: str) -> uuid.UUID:
    try:
        return uuid.UUID(partition_key)
    except ValueError:
        raise Failure(f"album partition {partition_key!r} is not a UUID") from None


def outcomes_table(report: AlbumReport) -> str:
    """Markdown table of per-photo outcomes, failures first (the rows an operator acts on)."""
    order = {Outcome.FAILED: 0, Outcome.RELEASED: 1, Outcome.CLAIM_LOST: 2, Outcome.COMPLETED: 3}
    rows = sorted(report.outcomes, key=lambda o: order[o.outcome])[:MAX_OUTCOME_ROWS]
    lines = ["| photo | outcome | seconds | detail |", "|---|---|---|---|"]
    for o in rows:
        detail = (o.detail or "").replace("|", "\\|")
        lines.append(f"| `{o.photo_id}` | {o.outcome.value} | {o.seconds:.2f} | {detail} |")
    if len(report.outcomes) > MAX_OUTCOME_ROWS:
        lines.append(f"| … | {len(report.outcomes) - MAX_OUTCOME_ROWS} more | | |")
    return "\n".join(lines)


def shared_metadata(report: AlbumReport) -> dict[str, MetadataValue]:
    return {
        "album_id": MetadataValue.text(str(report.album_id)),
        "photos_rendered": MetadataValue.int(report.rendered),
        "photos_failed": MetadataValue.int(report.failed),
        "photos_skipped": MetadataValue.int(report.skipped),
        "seconds": MetadataValue.float(round(report.seconds, 3)),
        "photos_per_second": MetadataValue.float(round(report.photos_per_second, 3)),
        "outcomes": MetadataValue.md(outcomes_table(report)),
    }


def sample_markdown(report: AlbumReport) -> MetadataValue:
    if report.sample_thumbnail is None:
        return MetadataValue.md("_no photo rendered in this run_")
    encoded = base64.b64encode(report.sample_thumbnail).decode("ascii")
    return MetadataValue.md(f"![sample thumbnail](data:{report.sample_content_type};base64,{encoded})")


@multi_asset(
    specs=[
        AssetSpec(
            THUMBNAILS,
            partitions_def=albums_partitions,
            description="Watermarked thumbnails of an album's photos, under processed/thumbs/{album}/.",
            group_name="renditions",
            kinds={"s3", "image"},
        ),
        AssetSpec(
            PREVIEWS,
            partitions_def=albums_partitions,
            description="Watermarked previews of an album's photos, under processed/previews/{album}/.",
            group_name="renditions",
            kinds={"s3", "image"},
        ),
    ],
    name="album_renditions",
    partitions_def=albums_partitions,
    retry_policy=TRANSIENT_RETRY,
    op_tags={"kind": "rendering"},
)
def album_renditions(context: AssetExecutionContext, photo_pipeline: PhotoPipelineResource):
    """Claims the album's pending photos and renders each one's thumbnail and preview from a
    single decode. Photos that cannot be rendered end `failed` with the reason; the run goes on."""
    album_id = album_id_of(context.partition_key)
    processor = photo_pipeline.processor(context.log)
    try:
        report = processor.process_album(album_id, worker=context.run.run_id)
    except (DatabaseUnavailable, StorageUnavailable) as exc:
        context.log.exception("album %s: transient failure, the step will be retried", album_id)
        raise Failure(description=f"album {album_id}: {exc}") from exc
    context.log.info(
        "album %s: %d rendered, %d failed, %d skipped in %.2fs (%.2f photos/s)",
        album_id,
        report.rendered,
        report.failed,
        report.skipped,
        report.seconds,
        report.photos_per_second,
    )
    metadata = shared_metadata(report)
    thumb_bytes = sum(o.thumb_bytes for o in report.outcomes)
    preview_bytes = sum(o.preview_bytes for o in report.outcomes)
    yield MaterializeResult(
        asset_key=THUMBNAILS,
        metadata={**metadata, "bytes_written": MetadataValue.int(thumb_bytes), "sample": sample_markdown(report)},
    )
    yield MaterializeResult(
        asset_key=PREVIEWS,
        metadata={**metadata, "bytes_written": MetadataValue.int(preview_bytes)},
    )
