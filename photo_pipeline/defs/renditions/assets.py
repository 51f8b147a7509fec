"""Album-partitioned renditions: `thumbnails` and `previews`, produced together from one decode."""


import base64
import logging
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Backoff,
    Config,
    DynamicPartitionsDefinition,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    PreviewWarning,
    RetryPolicy,
    multi_asset,
)
from pydantic import Field
from sqlalchemy.exc import SQLAlchemyError

from photo_pipeline.defs.resources import PhotoPipelineResource
from photo_pipeline.photos.database import schema_problem
from photo_pipeline.services import reruns
from photo_pipeline.services.processing import (
    AlbumReport,
    DatabaseUnavailable,
    Outcome,
    PhotoProcessor,
)
from photo_pipeline.settings import SettingsError
from photo_pipeline.storage import StorageError, StorageUnavailable

ALBUMS = "albums"
albums_partitions = DynamicPartitionsDefinition(name=ALBUMS)

THUMBNAILS = "thumbnails"
PREVIEWS = "previews"
NO_FAILED_PHOTOS = "no_failed_photos"

# Transient trouble (database or bucket briefly away) is retried by Dagster with backoff; a bad
# photo never is: it ends `failed` inside the step and the step succeeds.
TRANSIENT_RETRY = RetryPolicy(max_retries=3, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)

MAX_OUTCOME_ROWS = 50


def album_id_of(partition_key: str) -> uuid.UUID:
    try:
        return uuid.UUID(partition_key)
    except ValueError:
        # No retry can turn it into one: fail at once, with the cause as the headline.
        raise Failure(
            description=(
                f"album partition {partition_key!r} is not a UUID: albums are keyed by their UUID; "
                "remove this partition and launch the run for the album's id"
            ),
            allow_retries=False,
        ) from None


def outcomes_table(report: AlbumReport) -> str:
    """Markdown table of per-photo outcomes, failures first (the rows an operator acts on)."""
    order = {Outcome.FAILED: 0, Outcome.RELEASED: 1, Outcome.CLAIM_LOST: 2, Outcome.COMPLETED: 3}
    rows = sorted(report.outcomes, key=lambda o: order[o.outcome])[:MAX_OUTCOME_ROWS]
    lines = ["| photo | outcome | seconds | detail |", "|---|---|---|---|"]
    for o in rows:
        detail = (o.detail or o.warning or "").replace("|", "\\|")
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
        # Completed but looking damaged (a truncated JPEG padded with grey): see the outcomes.
        "photos_flagged": MetadataValue.int(report.flagged),
        "seconds": MetadataValue.float(round(report.seconds, 3)),
        "photos_per_second": MetadataValue.float(round(report.photos_per_second, 3)),
        "outcomes": MetadataValue.md(outcomes_table(report)),
        # First claim and last outcome: the run's time outside them is its fixed cost.
        "processing_started_at": MetadataValue.timestamp(report.started_at),
        "processing_finished_at": MetadataValue.timestamp(report.finished_at),
    }


def sample_markdown(report: AlbumReport) -> MetadataValue:
    if report.sample_thumbnail is None:
        return MetadataValue.md("_no photo rendered in this run_")
    encoded = base64.b64encode(report.sample_thumbnail).decode("ascii")
    return MetadataValue.md(f"![sample thumbnail](data:{report.sample_content_type};base64,{encoded})")


def rendition_metadata(report: AlbumReport) -> dict[str, dict[str, MetadataValue]]:
    """Materialization metadata per asset. Every job that renders an album records exactly this,
    so the assets' history (and its plots) reads the same whichever job rendered."""
    metadata = shared_metadata(report)
    thumb_bytes = sum(o.thumb_bytes for o in report.outcomes)
    preview_bytes = sum(o.preview_bytes for o in report.outcomes)
    return {
        THUMBNAILS: {**metadata, "bytes_written": MetadataValue.int(thumb_bytes), "sample": sample_markdown(report)},
        PREVIEWS: {**metadata, "bytes_written": MetadataValue.int(preview_bytes)},
    }


def render_album(
    log: logging.Logger, photo_pipeline: PhotoPipelineResource, album_id: uuid.UUID, worker: str, *, rerender: bool = False
) -> AlbumReport:
    """Run the processor on one album and turn infrastructure trouble into the right Failure:
    transient trouble is retried by the step's RetryPolicy; what no retry can fix (bad settings,
    a database without the photo table or with an older schema, a bucket that does not exist or
    denies us) fails at once, before a single photo is claimed: the operator fixes the cause and
    re-executes the run from failure."""
    processor = checked_processor(log, photo_pipeline, album_id)
    try:
        report = processor.process_album(album_id, worker=worker, rerender=rerender)
    except (DatabaseUnavailable, StorageUnavailable) as exc:
        log.exception("album %s: transient failure, the step will be retried", album_id)
        raise Failure(description=f"album {album_id}: {exc}") from exc
    except SQLAlchemyError as exc:
        problem = schema_problem(photo_pipeline.settings().database_url)
        if problem is None:
            raise  # not a schema problem: let the retry policy have it
        raise Failure(
            description=f"album {album_id}: {problem}; then re-execute this run from failure",
            allow_retries=False,
        ) from exc
    log.info(
        "album %s: %d rendered, %d failed, %d skipped in %.2fs (%.2f photos/s)",
        album_id,
        report.rendered,
        report.failed,
        report.skipped,
        report.seconds,
        report.photos_per_second,
    )
    fail_if_unfinished(log, report)
    return report


def checked_processor(log: logging.Logger, photo_pipeline: PhotoPipelineResource, album_id: uuid.UUID) -> PhotoProcessor:
    """The run's processor, once its settings, table and bucket are known to be usable. A wrong
    PHOTO_BUCKET used to end in a green run that had spent one attempt of every photo: now the run
    fails here, non-retryable, having touched no row."""
    try:
        settings = photo_pipeline.settings()
        store = photo_pipeline.store()
        processor = photo_pipeline.processor(log, store=store)
    except SettingsError as exc:
        raise Failure(description=f"album {album_id}: configuration error, nothing was claimed: {exc}", allow_retries=False) from exc
    problem = schema_problem(settings.database_url)
    if problem is not None:
        raise Failure(
            description=f"album {album_id}: {problem}; nothing was claimed. Fix it, then re-execute this run from failure",
            allow_retries=False,
        )
    try:
        store.check()
    except StorageUnavailable as exc:
        log.exception("album %s: the bucket is unreachable, the step will be retried", album_id)
        raise Failure(description=f"album {album_id}: {exc}") from exc
    except StorageError as exc:
        raise Failure(
            description=(
                f"album {album_id}: the bucket cannot be used, nothing was claimed: {exc}. Check PHOTO_BUCKET, "
                "the endpoint and the credentials, then re-execute this run from failure"
            ),
            allow_retries=False,
        ) from exc
    return processor


def fail_if_unfinished(log: logging.Logger, report: AlbumReport) -> None:
    """A run that leaves photos of its own claimed but unfinished (released for storage trouble,
    or still held after its loop) is not a success: the step fails, naming them, and its
    RetryPolicy tries again. Photos whose original has not arrived yet are normal releases."""
    unfinished = report.unfinished
    if not unfinished:
        return
    summary = report.unfinished_summary()
    log.error("album %s: %d photo(s) claimed by this run were left unfinished: %s", report.album_id, len(unfinished), summary)
    raise Failure(
        description=(
            f"album {report.album_id}: {len(unfinished)} photo(s) claimed by this run were left unfinished "
            f"(given back to pending; the step will be retried): {summary}"
        ),
        metadata={
            **shared_metadata(report),
            "unfinished_photos": MetadataValue.int(len(unfinished)),
            "unfinished_photo_ids": MetadataValue.json([str(photo_id) for photo_id in unfinished[:MAX_OUTCOME_ROWS]]),
        },
    )


def failures_metadata(failures: reruns.AlbumFailures) -> dict[str, MetadataValue]:
    lines = ["| photo | error |", "|---|---|"]
    for photo in failures.examples:
        error = (photo.error or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{photo.id}` | {error} |")
    return {
        "album_id": MetadataValue.text(str(failures.album_id)),
        "failed_photos": MetadataValue.int(failures.failed),
        "failed_photo_ids": MetadataValue.json([str(p.id) for p in failures.examples]),
        "latest_failures": MetadataValue.md("\n".join(lines) if failures.examples else "_none_"),
    }


def failures_description(failures: reruns.AlbumFailures) -> str:
    if failures.passed:
        return f"album {failures.album_id}: no failed photos"
    return (
        f"album {failures.album_id}: {failures.failed} failed photo(s); fix the originals, then re-run "
        "them with the reprocess_failed_photos job"
    )


def no_failed_photos_outcome(photo_pipeline: PhotoPipelineResource, album_id: uuid.UUID) -> dict[str, Any]:
    """What the check reports for an album, from the table as it is now (whoever failed the photos)."""
    failures = reruns.album_failures(photo_pipeline.repository(), album_id)
    return {
        "passed": failures.passed,
        # A bad original is the uploader's problem, not a broken pipeline: yellow, not red.
        "severity": AssetCheckSeverity.WARN,
        "description": failures_description(failures),
        "metadata": failures_metadata(failures),
    }


def no_failed_photos_result(photo_pipeline: PhotoPipelineResource, album_id: uuid.UUID) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=NO_FAILED_PHOTOS, asset_key=THUMBNAILS, **no_failed_photos_outcome(photo_pipeline, album_id)
    )


def no_failed_photos_evaluation(photo_pipeline: PhotoPipelineResource, album_id: uuid.UUID) -> AssetCheckEvaluation:
    """The same check as an event that an op outside the asset can log (re-runs of failed photos)."""
    return AssetCheckEvaluation(
        asset_key=AssetKey(THUMBNAILS),
        check_name=NO_FAILED_PHOTOS,
        partition=str(album_id),
        **no_failed_photos_outcome(photo_pipeline, album_id),
    )


class RenditionsConfig(Config):
    rerender: bool = Field(
        default=False,
        description=(
            "Also render every COMPLETED photo of the album again (completed -> processing), with "
            "the settings in force now: after the watermark, sizes, quality or format changed. "
            "Off (the default): only pending photos are rendered. Failed photos are never picked "
            "up here; re-run them with the reprocess_failed_photos job."
        ),
    )


with warnings.catch_warnings():
    # Partitioned asset checks are a preview feature in Dagster 1.13; used on purpose, so the UI
    # shows the check per album instead of only for whichever album ran last.
    warnings.simplefilter("ignore", PreviewWarning)
    NO_FAILED_PHOTOS_SPEC = AssetCheckSpec(
        NO_FAILED_PHOTOS,
        asset=THUMBNAILS,
        partitions_def=albums_partitions,
        description=(
            "Warns when the album has photos in the `failed` state after the run (corrupt or "
            "unsupported originals). Lists the latest failures and their errors; re-run them with "
            "the reprocess_failed_photos job once the originals are fixed."
        ),
    )


@multi_asset(
    specs=[
        AssetSpec(
            THUMBNAILS,
            partitions_def=albums_partitions,
            description=(
                "Watermarked thumbnails of an album's photos, under processed/thumbs/{album}/. Rendered "
                "with the previews from one decode of each photo, so materializing either materializes "
                "both (Dagster's Materialize dialog says so)."
            ),
            group_name="renditions",
            kinds={"s3", "image"},
        ),
        AssetSpec(
            PREVIEWS,
            partitions_def=albums_partitions,
            description=(
                "Watermarked previews of an album's photos, under processed/previews/{album}/. Rendered "
                "with the thumbnails from one decode of each photo, so materializing either materializes "
                "both (Dagster's Materialize dialog says so)."
            ),
            group_name="renditions",
            kinds={"s3", "image"},
        ),
    ],
    check_specs=[NO_FAILED_PHOTOS_SPEC],
    name="album_renditions",
    partitions_def=albums_partitions,
    # Not subsettable on purpose: one decode yields both renditions and a photo is `completed`
    # only with both keys; rendering one alone would be the same work for half the result.
    can_subset=False,
    retry_policy=TRANSIENT_RETRY,
    op_tags={"kind": "rendering"},
)
def album_renditions(
    context: AssetExecutionContext, config: RenditionsConfig, photo_pipeline: PhotoPipelineResource
) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Claims the album's pending photos (and, with `rerender`, its completed ones) and renders
    each one's thumbnail and preview from a single decode. Photos that cannot be rendered end
    `failed` with the reason; the run goes on."""
    album_id = album_id_of(context.partition_key)
    report = render_album(context.log, photo_pipeline, album_id, context.run.run_id, rerender=config.rerender)
    if config.rerender and len(report.outcomes) >= photo_pipeline.limits().max_photos:
        context.log.warning(
            "album %s: re-render stopped at PHOTO_MAX_PHOTOS_PER_RUN (%d photos); a later run starts "
            "from the oldest photo again, so raise the limit to re-render an album this large in one run",
            album_id,
            photo_pipeline.limits().max_photos,
        )
    for asset, metadata in rendition_metadata(report).items():
        yield MaterializeResult(asset_key=asset, metadata=metadata)
    if AssetCheckKey(AssetKey(THUMBNAILS), NO_FAILED_PHOTOS) in context.selected_asset_check_keys:
        yield no_failed_photos_result(photo_pipeline, album_id)
