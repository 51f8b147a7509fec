"""Album-partitioned renditions: `thumbnails` and `previews`, produced together from one decode."""


import base64
import io
import logging
import re
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
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
from photo_pipeline.services import albums, reruns
from photo_pipeline.services.albums import AlbumState
from photo_pipeline.services.processing import (
    AlbumReport,
    DatabaseUnavailable,
    Outcome,
    PhotoOutcome,
    PhotoProcessor,
)
from photo_pipeline.settings import SettingsError
from photo_pipeline.storage import StorageError, StorageUnavailable, keys

ALBUMS = "albums"
albums_partitions = DynamicPartitionsDefinition(name=ALBUMS)

THUMBNAILS = "thumbnails"
PREVIEWS = "previews"
# The failed-photo checks on `thumbnails`: one per album partition, one across every album (the
# per-album check's latest result is whichever album ran last; this one cannot look green while
# any album has failed photos).
NO_FAILED_PHOTOS_IN_ALBUM = "no_failed_photos_in_album"
NO_FAILED_PHOTOS_IN_ANY_ALBUM = "no_failed_photos_in_any_album"

# The jobs an operator is sent to (defined in defs/renditions/jobs.py and defs/reruns/jobs.py,
# which import this module: named here, not imported).
RERENDER_JOB = "rerender_albums"
RERUN_JOB = "reprocess_failed_photos"

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


# Markdown that Dagster renders: text from uploaders (file names, titles) and from decoders
# (errors) is escaped, so a file named `*[x](y)` or `a|b` cannot restyle or break a table.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|!#~&])")


def markdown_text(text: str, limit: int = 200) -> str:
    """`text` as literal Markdown: control and bidi characters escaped (keys.display_key), long
    text shortened in the middle, Markdown's special characters backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", keys.display_key(text, limit))


@dataclass(frozen=True)
class Sample:
    """A thumbnail to show in the UI: the run's first, or else the album's latest in the bucket."""

    data: bytes | None
    content_type: str | None
    # What it is, or why there is none.
    caption: str


@dataclass(frozen=True)
class AlbumView:
    """What the metadata says about the album besides what the run did: its state in the table
    now, the file names of the photos the run's outcome table lists, a sample thumbnail."""

    state: AlbumState
    filenames: Mapping[uuid.UUID, str]
    sample: Sample


def listed_outcomes(report: AlbumReport) -> list[PhotoOutcome]:
    """The per-photo outcomes a table shows, failures first (the rows an operator acts on)."""
    order = {Outcome.FAILED: 0, Outcome.RELEASED: 1, Outcome.CLAIM_LOST: 2, Outcome.COMPLETED: 3}
    return sorted(report.outcomes, key=lambda o: order[o.outcome])[:MAX_OUTCOME_ROWS]


def outcomes_table(report: AlbumReport, filenames: Mapping[uuid.UUID, str]) -> str:
    """Markdown table of per-photo outcomes, each photo by its file name and id."""
    if not report.outcomes:
        return "_no photo was processed in this run_"
    lines = ["| file | photo | outcome | seconds | detail |", "|---|---|---|---|---|"]
    for o in listed_outcomes(report):
        file = markdown_text(filenames.get(o.photo_id, ""), 80)
        detail = markdown_text(o.detail or o.warning or "", 300)
        lines.append(f"| {file} | `{o.photo_id}` | {o.outcome.value} | {o.seconds:.2f} | {detail} |")
    if len(report.outcomes) > MAX_OUTCOME_ROWS:
        lines.append(f"| … | {len(report.outcomes) - MAX_OUTCOME_ROWS} more | | | |")
    return "\n".join(lines)


def failed_photos_table(failures: reruns.AlbumFailures) -> str:
    if not failures.failed:
        return "_none_"
    lines = ["| file | photo | error | re-run |", "|---|---|---|---|"]
    for photo in failures.examples:
        lines.append(
            f"| {markdown_text(photo.filename, 80)} | `{photo.id}` | {markdown_text(photo.error or '', 300)} "
            f"| {markdown_text(photo.advice.action)} |"
        )
    if failures.failed > len(failures.examples):
        lines.append(f"| … | {failures.failed - len(failures.examples)} more | | |")
    return "\n".join(lines)


def run_summary(report: AlbumReport, album: AlbumState, *, rerender: bool, rerun: reruns.RerunResult | None = None) -> str:
    """One line on what this run did (for an operator's re-run: what it changed), and what to do
    when it had nothing to do."""
    if report.outcomes:
        did = f"rendered {report.rendered}, failed {report.failed}, skipped {report.skipped}"
        did += f" of {len(report.outcomes)} photo(s) claimed" + (" (re-render)" if rerender else "")
        return did + (f"; {rerun.summary()}" if rerun is not None else "")
    if rerender or not album.completed:
        return "nothing to render: the album has no pending photo"
    return (
        f"nothing to render: no pending photo; its {album.completed} completed photo(s) were left as they are. "
        f"To render them again, launch the {RERENDER_JOB} job for this album (or set rerender: true in the launchpad)"
    )


def album_metadata(album: AlbumState) -> dict[str, MetadataValue]:
    """The album as the table has it after the run: the same figures whatever the run did, so a
    run that found nothing to do never makes the album look empty."""
    metadata: dict[str, MetadataValue] = {"album_id": MetadataValue.text(str(album.album_id))}
    if album.title:
        metadata["album_title"] = MetadataValue.text(album.title)
    return {
        **metadata,
        "album_photos": MetadataValue.int(album.photos),
        "album_completed": MetadataValue.int(album.completed),
        "album_failed": MetadataValue.int(album.failed),
        "album_pending": MetadataValue.int(album.pending),
        "album_processing": MetadataValue.int(album.processing),
        "album_missing": MetadataValue.int(album.missing),
        # In the trash: not among album_photos; erased by empty_trash after the retention.
        "album_trashed": MetadataValue.int(album.trashed),
        "album_duplicates": MetadataValue.int(album.duplicates),
        "album_failed_photos": MetadataValue.md(failed_photos_table(album.failures)),
    }


def run_metadata(report: AlbumReport, filenames: Mapping[uuid.UUID, str]) -> dict[str, MetadataValue]:
    """What this run did. Timing figures only when it processed photos, and the rate only when
    it rendered some: a run with nothing to do adds no point at zero to their plots."""
    metadata = {
        "photos_rendered": MetadataValue.int(report.rendered),
        "photos_failed": MetadataValue.int(report.failed),
        "photos_skipped": MetadataValue.int(report.skipped),
        # Completed but looking damaged (a truncated JPEG padded with grey): see the outcomes.
        "photos_flagged": MetadataValue.int(report.flagged),
        # Completed as copies of a photo the album already has (same SHA-256): not rendered.
        "photos_duplicate": MetadataValue.int(len(report.duplicates)),
        # The responsive sizes (processed/<size>/...) uploaded, every size and format (a size whose
        # bytes are the preview's or the thumbnail's names their key and is not uploaded).
        "sized_files_written": MetadataValue.int(sum(o.sized_files for o in report.outcomes)),
        "sized_bytes_written": MetadataValue.int(sum(o.sized_bytes for o in report.outcomes)),
        "outcomes": MetadataValue.md(outcomes_table(report, filenames)),
    }
    if report.outcomes:
        metadata["seconds"] = MetadataValue.float(round(report.seconds, 3))
        # First claim and last outcome: the run's time outside them is its fixed cost.
        metadata["processing_started_at"] = MetadataValue.timestamp(report.started_at)
        metadata["processing_finished_at"] = MetadataValue.timestamp(report.finished_at)
    if report.rendered:
        metadata["photos_per_second"] = MetadataValue.float(round(report.photos_per_second, 3))
    return metadata


def sample_markdown(sample: Sample) -> MetadataValue:
    caption = markdown_text(sample.caption, 300)
    if sample.data is None:
        return MetadataValue.md(f"_{caption}_")
    encoded = base64.b64encode(sample.data).decode("ascii")
    return MetadataValue.md(f"![sample thumbnail](data:{sample.content_type};base64,{encoded})\n\n_{caption}_")


def rendition_metadata(
    report: AlbumReport, view: AlbumView, *, rerender: bool = False, rerun: reruns.RerunResult | None = None
) -> dict[str, dict[str, MetadataValue]]:
    """Materialization metadata per asset: a summary line, the album from the table, what the
    run did. Every job that renders an album records exactly this, so the assets' history (and
    its plots) reads the same whichever job rendered."""
    shared = {
        "summary": MetadataValue.text(run_summary(report, view.state, rerender=rerender, rerun=rerun)),
        **album_metadata(view.state),
        **run_metadata(report, view.filenames),
    }
    thumb_bytes = sum(o.thumb_bytes for o in report.outcomes)
    preview_bytes = sum(o.preview_bytes for o in report.outcomes)
    return {
        THUMBNAILS: {
            **shared,
            "album_bytes": MetadataValue.int(view.state.thumb_bytes),
            "bytes_written": MetadataValue.int(thumb_bytes),
            "sample": sample_markdown(view.sample),
        },
        PREVIEWS: {
            **shared,
            "album_bytes": MetadataValue.int(view.state.preview_bytes),
            "bytes_written": MetadataValue.int(preview_bytes),
        },
    }


def album_view(log: logging.Logger, photo_pipeline: PhotoPipelineResource, report: AlbumReport) -> AlbumView:
    """Read the album's state after the run (table, file names, a sample thumbnail)."""
    repository = photo_pipeline.repository()
    state = albums.album_state(repository, report.album_id)
    filenames = albums.display_filenames(repository, [o.photo_id for o in listed_outcomes(report)])
    return AlbumView(state=state, filenames=filenames, sample=album_sample(log, photo_pipeline, report))


# A stored thumbnail larger than this is not inlined into the metadata (thumbnails are ~10-50 KB).
MAX_SAMPLE_BYTES = 256 * 1024


def album_sample(log: logging.Logger, photo_pipeline: PhotoPipelineResource, report: AlbumReport) -> Sample:
    """The run's first thumbnail; without one, the album's latest thumbnail from the bucket, so a
    run that rendered nothing does not blank the picture. A thumbnail that cannot be read is
    said so in the metadata and the log; it does not fail the run."""
    if report.sample_thumbnail is not None:
        return Sample(report.sample_thumbnail, report.sample_content_type, "rendered in this run")
    key = photo_pipeline.repository().latest_thumbnail_key(report.album_id)
    if key is None:
        return Sample(None, None, "no rendered photo in this album yet")
    buffer = io.BytesIO()
    try:
        photo_pipeline.store().download(key, buffer, MAX_SAMPLE_BYTES)
    except StorageError as exc:
        log.warning("album %s: the sample thumbnail %s could not be read: %s", report.album_id, keys.display_key(key), exc)
        return Sample(None, None, f"sample thumbnail unavailable: {exc}")
    content_type = keys.content_type_for_extension(key.rsplit(".", 1)[-1])
    return Sample(buffer.getvalue(), content_type, "the album's latest rendered thumbnail (none rendered in this run)")


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
    fail_if_unfinished(log, photo_pipeline, report)
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


def fail_if_unfinished(log: logging.Logger, photo_pipeline: PhotoPipelineResource, report: AlbumReport) -> None:
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
            **run_metadata(report, filenames_if_readable(log, photo_pipeline, report)),
            "unfinished_photos": MetadataValue.int(len(unfinished)),
            "unfinished_photo_ids": MetadataValue.json([str(photo_id) for photo_id in unfinished[:MAX_OUTCOME_ROWS]]),
        },
    )


def filenames_if_readable(log: logging.Logger, photo_pipeline: PhotoPipelineResource, report: AlbumReport) -> dict[uuid.UUID, str]:
    """File names for a failing step's outcome table. The step is failing already (perhaps for
    the database's sake): if the names cannot be read, the table lists ids alone and the log
    says why, rather than a second error hiding the first."""
    try:
        return albums.display_filenames(photo_pipeline.repository(), [o.photo_id for o in listed_outcomes(report)])
    except SQLAlchemyError as exc:
        log.warning("album %s: the file names of its photos could not be read (%s); outcomes are listed by id", report.album_id, type(exc).__name__)
        return {}


@dataclass(frozen=True)
class CheckOutcome:
    """A check's result, as both an asset's AssetCheckResult and an op's AssetCheckEvaluation."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, MetadataValue]
    # Per album partition (True) or across all albums (False).
    per_album: bool


def failed_in_album_check(album: AlbumState, rerun: reruns.RerunResult | None = None) -> CheckOutcome:
    """no_failed_photos_in_album: this album's failed photos, by file name, id and error; after an
    operator's re-run, which of them failed again for the very same reason."""
    failures = album.failures
    if failures.passed:
        description = f"album {album.label}: no failed photos"
    else:
        # Uploaders' file names may hold control characters: escaped, as in any output.
        names = ", ".join(keys.display_key(photo.filename, 80) for photo in failures.examples)
        more = f" and {failures.failed - len(failures.examples)} more" if failures.failed > len(failures.examples) else ""
        description = (
            f"album {album.label}: {failures.failed} failed photo(s): {names}{more}. Fix or replace the "
            f"originals, then re-run them with the {RERUN_JOB} job"
        )
    rerun_metadata: dict[str, MetadataValue] = {}
    if rerun is not None and rerun.failed_again:
        description += (
            f". The re-run just made changed nothing for {len(rerun.failed_again)} of them: failed again, same reason"
        )
        rerun_metadata["failed_again_same_reason"] = MetadataValue.json([str(p) for p in rerun.failed_again])
    title = {"album_title": MetadataValue.text(album.title)} if album.title else {}
    return CheckOutcome(
        name=NO_FAILED_PHOTOS_IN_ALBUM,
        passed=failures.passed,
        description=description,
        metadata={
            "album_id": MetadataValue.text(str(album.album_id)),
            **title,
            "failed_photos": MetadataValue.int(failures.failed),
            "failed_photo_ids": MetadataValue.json([str(p.id) for p in failures.examples]),
            "latest_failures": MetadataValue.md(failed_photos_table(failures)),
            **rerun_metadata,
        },
        per_album=True,
    )


def failed_in_any_album_check(across: reruns.FailuresAcrossAlbums) -> CheckOutcome:
    """no_failed_photos_in_any_album: every album with failed photos and how many, so the asset
    does not look green because the album rendered last happens to be clean."""
    shown = [f"{a.title} ({a.album_id})" if a.title else str(a.album_id) for a in across.listed]
    if across.passed:
        description = "no album has failed photos"
    else:
        listed = "; ".join(f"{name}: {a.failed}" for name, a in zip(shown, across.listed, strict=True))
        more = f"; and {across.albums - len(across.listed)} more album(s)" if across.albums > len(across.listed) else ""
        description = (
            f"{across.albums} album(s) have {across.photos} failed photo(s): {listed}{more}. Each album's "
            f"files and errors: the {NO_FAILED_PHOTOS_IN_ALBUM} check of its partition"
        )
    lines = ["| album | title | failed photos |", "|---|---|---|"]
    lines += [f"| `{a.album_id}` | {markdown_text(a.title or '')} | {a.failed} |" for a in across.listed]
    if across.albums > len(across.listed):
        lines.append(f"| … {across.albums - len(across.listed)} more | | |")
    return CheckOutcome(
        name=NO_FAILED_PHOTOS_IN_ANY_ALBUM,
        passed=across.passed,
        description=description,
        metadata={
            "albums_with_failed_photos": MetadataValue.int(across.albums),
            "failed_photos": MetadataValue.int(across.photos),
            "albums": MetadataValue.md("\n".join(lines) if across.listed else "_none_"),
        },
        per_album=False,
    )


def check_outcomes(
    photo_pipeline: PhotoPipelineResource, album: AlbumState, rerun: reruns.RerunResult | None = None
) -> list[CheckOutcome]:
    """Both failed-photo checks, from the table as it is now (whoever failed the photos)."""
    across = reruns.failures_across_albums(photo_pipeline.repository())
    return [failed_in_album_check(album, rerun), failed_in_any_album_check(across)]


def check_result(outcome: CheckOutcome) -> AssetCheckResult:
    # A bad original is the uploader's problem, not a broken pipeline: yellow, not red.
    return AssetCheckResult(
        check_name=outcome.name,
        asset_key=THUMBNAILS,
        passed=outcome.passed,
        severity=AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata=outcome.metadata,
    )


def check_evaluation(outcome: CheckOutcome, album_id: uuid.UUID) -> AssetCheckEvaluation:
    """The same result as an event that an op outside the asset can log (re-runs of failed photos)."""
    return AssetCheckEvaluation(
        asset_key=AssetKey(THUMBNAILS),
        check_name=outcome.name,
        partition=str(album_id) if outcome.per_album else None,
        passed=outcome.passed,
        severity=AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata=outcome.metadata,
    )


def album_rendition_events(
    log: logging.Logger, photo_pipeline: PhotoPipelineResource, report: AlbumReport, *, rerun: reruns.RerunResult | None = None
) -> list[AssetMaterialization | AssetCheckEvaluation]:
    """What the album_renditions asset records for a render, as events an op logs after calling
    `render_album` itself (reprocess_failed_photos, with what its re-run changed): the thumbnails
    and previews materializations of the album partition and both failed-photo checks. The
    asset's history then shows that run like any other render of the album."""
    view = album_view(log, photo_pipeline, report)
    partition = str(report.album_id)
    events: list[AssetMaterialization | AssetCheckEvaluation] = [
        AssetMaterialization(asset_key=asset, partition=partition, metadata=metadata)
        for asset, metadata in rendition_metadata(report, view, rerun=rerun).items()
    ]
    events += [check_evaluation(outcome, report.album_id) for outcome in check_outcomes(photo_pipeline, view.state, rerun)]
    return events


class RenditionsConfig(Config):
    rerender: bool = Field(
        default=False,
        description=(
            "Also render every COMPLETED photo of the album again (completed -> processing), with "
            "the settings in force now: after the watermark, sizes, quality or format changed. "
            "Off (the default): only pending photos are rendered, so Materialize on a rendered "
            f"album changes nothing. The {RERENDER_JOB} job sets this for every album it runs. "
            f"Failed photos are never picked up here; re-run them with the {RERUN_JOB} job."
        ),
    )


def renditions_description(what: str, prefix: str) -> str:
    """The asset page's description: what the asset is, what Materialize does, how to re-render."""
    return (
        f"Watermarked {what} of an album's photos, under `{prefix}{{album}}/`; one partition per album, "
        "rendered together with its sibling asset from one decode, so materializing either "
        "materializes both (the Materialize dialog says so).\n\n"
        "**Materialize…** renders the album's *pending* photos (what the sensors do for new uploads). "
        "An album rendered already has none, so the run changes nothing; the metadata still shows "
        "the album (`album_photos`, `album_completed`, `album_failed`, `album_pending`, `album_bytes`) "
        "beside what the run did.\n\n"
        f"**To render albums again** (after the watermark, sizes, quality or format changed): launch the "
        f"`{RERENDER_JOB}` job and pick the albums among its partitions, or set `rerender: true` in this "
        "asset's config in the launchpad.\n\n"
        f"**Failed photos** (corrupt or unsupported originals): counted in `album_failed` and listed by "
        f"the checks on `{THUMBNAILS}`, `{NO_FAILED_PHOTOS_IN_ALBUM}` (per album partition) and "
        f"`{NO_FAILED_PHOTOS_IN_ANY_ALBUM}` (every album at once); re-run them with `{RERUN_JOB}` once "
        "the originals are fixed."
    )


with warnings.catch_warnings():
    # Partitioned asset checks are a preview feature in Dagster 1.13; used on purpose, so the UI
    # keeps a result per album instead of only for whichever album ran last.
    warnings.simplefilter("ignore", PreviewWarning)
    NO_FAILED_PHOTOS_IN_ALBUM_SPEC = AssetCheckSpec(
        NO_FAILED_PHOTOS_IN_ALBUM,
        asset=THUMBNAILS,
        partitions_def=albums_partitions,
        description=(
            "Per album (one result per album partition): warns while the album has photos in the "
            "`failed` state (corrupt or unsupported originals), with their count, file names, ids "
            f"and errors. Evaluated whenever the album is rendered. Fix the originals, then re-run "
            f"them with the {RERUN_JOB} job. For every album at once, see {NO_FAILED_PHOTOS_IN_ANY_ALBUM}."
        ),
    )
NO_FAILED_PHOTOS_IN_ANY_ALBUM_SPEC = AssetCheckSpec(
    NO_FAILED_PHOTOS_IN_ANY_ALBUM,
    asset=THUMBNAILS,
    description=(
        "Every album at once: warns while any album has failed photos, listing the albums (id, "
        "title) and how many each has, so the asset cannot look green because the album rendered "
        f"last is clean. Evaluated whenever any album is rendered. The files and errors of one album: "
        f"its {NO_FAILED_PHOTOS_IN_ALBUM} result."
    ),
)


@multi_asset(
    specs=[
        AssetSpec(
            THUMBNAILS,
            partitions_def=albums_partitions,
            description=renditions_description("thumbnails", keys.THUMBS_PREFIX),
            group_name="renditions",
            kinds={"s3", "image"},
        ),
        AssetSpec(
            PREVIEWS,
            partitions_def=albums_partitions,
            description=renditions_description("previews", keys.PREVIEWS_PREFIX),
            group_name="renditions",
            kinds={"s3", "image"},
        ),
    ],
    check_specs=[NO_FAILED_PHOTOS_IN_ALBUM_SPEC, NO_FAILED_PHOTOS_IN_ANY_ALBUM_SPEC],
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
    view = album_view(context.log, photo_pipeline, report)
    metadata = rendition_metadata(report, view, rerender=config.rerender)
    context.log.info("album %s: %s", view.state.label, metadata[THUMBNAILS]["summary"].value)
    for asset, asset_metadata in metadata.items():
        yield MaterializeResult(asset_key=asset, metadata=asset_metadata)
    for outcome in check_outcomes(photo_pipeline, view.state):
        if AssetCheckKey(AssetKey(THUMBNAILS), outcome.name) in context.selected_asset_check_keys:
            yield check_result(outcome)
