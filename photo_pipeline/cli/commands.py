"""`photo-pipeline`: the operator's and the client's command line (click + rich)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from photo_pipeline.photos.database import DatabaseNotReady, migrate, require_schema
from photo_pipeline.photos.errors import describe_database_error
from photo_pipeline.photos.models import SHOWN_STATUSES, PhotoStatus
from photo_pipeline.photos.repository import (
    CleanupRefused,
    PhotoNotFound,
    PhotoRecord,
    PhotoRepository,
)
from photo_pipeline.photos.trash import AlbumErased, AlbumInTrash, AlbumNotFound, PhotoErased
from photo_pipeline.redaction import RedactingFilter, install_log_redaction, redact
from photo_pipeline.services import removal
from photo_pipeline.services.albums import AlbumState, album_states
from photo_pipeline.services.uploads import (
    InvalidAlbumTitle,
    UploadFailed,
    UploadPolicy,
    UploadRejected,
    clean_album_title,
    cleanup_photo,
    title_album,
    upload_photo,
)
from photo_pipeline.settings import ENV_DATABASE_URL, Settings, SettingsError, default_database_url
from photo_pipeline.storage import ObjectStore, StorageError, build_object_store, keys

console = Console()
err_console = Console(stderr=True)
log = logging.getLogger(__name__)


class Context:
    """Settings read once per command; repository and store built on first use."""

    def __init__(self) -> None:
        try:
            self.settings = Settings.from_env()
        except SettingsError as exc:
            raise click.UsageError(str(exc)) from exc
        self._repository: PhotoRepository | None = None
        self._store: ObjectStore | None = None

    def repository(self, *, migrate_first: bool = False) -> PhotoRepository:
        """The photo table, checked before use. Only init-db and the demo (and the UI on the
        embedded default database) migrate: a command pointed at the wrong database must say so
        and change nothing there, not plant a schema in it."""
        if self._repository is None:
            if migrate_first:
                self.settings.home.mkdir(parents=True, exist_ok=True)
                migrate(self.settings.database_url)
            try:
                require_schema(self.settings.database_url)
            except DatabaseNotReady as exc:
                raise click.ClickException(str(exc)) from exc
            self._repository = PhotoRepository.from_url(self.settings.database_url)
        return self._repository

    @property
    def uses_embedded_database(self) -> bool:
        return self.settings.database_url == default_database_url(self.settings.home)

    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = build_object_store(self.settings)
        return self._store


pass_context = click.make_pass_decorator(Context, ensure=True)


def parse_uuid(kind: str) -> Callable[[click.Context, click.Parameter, str | None], uuid.UUID | None]:
    def convert(_ctx: click.Context, _param: click.Parameter, value: str | None) -> uuid.UUID | None:
        if value is None:
            return None
        try:
            return uuid.UUID(value)
        except ValueError:
            raise click.BadParameter(f"{kind} must be a UUID, got {value!r}") from None

    return convert


def failure_text(exc: BaseException) -> str:
    """One line for an error the command reports: a database error as photos/errors.py describes
    it (never SQLAlchemy's statement), anything else by class and redacted message."""
    if isinstance(exc, SQLAlchemyError):
        return describe_database_error(exc).for_operator()
    return f"{type(exc).__name__}: {redact(str(exc))}"


class PipelineCommands(click.Group):
    """The commands. A database error any of them meets ends it with one line and exit status 1;
    its traceback goes to the log (shown with -v)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as exc:
            log.debug("the command failed on a database error", exc_info=True)
            raise click.ClickException(failure_text(exc)) from None


@click.group(cls=PipelineCommands)
@click.option("-v", "--verbose", is_flag=True, help="Log details (never secrets) to stderr.")
def main(verbose: bool) -> None:
    """Photo pipeline: the photo table, the bucket and the renditions, kept in agreement."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        # Our own details (tracebacks of per-file failures); botocore's DEBUG would dump headers.
        logging.getLogger("photo_pipeline").setLevel(logging.DEBUG)
    install_log_redaction()
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())


@main.command("init-db")
@pass_context
def init_db(ctx: Context) -> None:
    """Create or migrate the photo table (Alembic upgrade to head)."""
    ctx.settings.home.mkdir(parents=True, exist_ok=True)
    migrate(ctx.settings.database_url)
    console.print(f"[green]database ready[/] {ctx.settings.database_url_for_display()}")


def parse_title(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return clean_album_title(value)
    except InvalidAlbumTitle as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("album_id", callback=parse_uuid("ALBUM_ID"))
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--title", callback=parse_title, help="Give the album this title (shown by status and in the Dagster UI).")
@pass_context
def upload(ctx: Context, album_id: uuid.UUID, files: tuple[Path, ...], title: str | None) -> None:
    """Upload FILES into ALBUM_ID the way a browser does: row, presigned PUT, verification.

    A file that never lands is retried, then cleaned up (row and object) and reported.
    """
    repository, store = ctx.repository(), ctx.store()
    try:
        upload_files(repository, store, album_id, files, title, UploadPolicy.from_settings(ctx.settings))
    except (AlbumInTrash, AlbumErased) as exc:
        # The whole album refuses, not one file: nothing more is tried.
        err_console.print(f"[red]refused:[/] {escape(str(exc))}")
        raise SystemExit(1) from None


def upload_files(
    repository: PhotoRepository, store: ObjectStore, album_id: uuid.UUID, files: tuple[Path, ...], title: str | None, policy: UploadPolicy
) -> None:
    if title is not None:
        titled = title_album(repository, album_id, title)
        console.print(f"album {album_id}: titled \"{terminal_text(titled.title or '')}\"", highlight=False, soft_wrap=True)
    failures = 0
    uploaded = 0
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console
    ) as progress:
        for path in files:
            size = path.stat().st_size if path.is_file() else 0
            task = progress.add_task(terminal_text(path.name), total=size or None)

            def advance(n: int, task: TaskID = task) -> None:
                if n < 0:
                    progress.reset(task)
                else:
                    progress.advance(task, n)

            try:
                result = upload_photo(repository, store, album_id, path, policy=policy, on_progress=advance)
            except UploadRejected as exc:
                failures += 1
                progress.console.print(f"[yellow]skipped[/] {exc}")
                progress.remove_task(task)
                continue
            except UploadFailed as exc:
                failures += 1
                progress.console.print(f"[red]failed[/] {exc}")
                continue
            except (StorageError, SQLAlchemyError, OSError) as exc:
                # One file's trouble must not abort the rest of the batch; -v shows the traceback.
                failures += 1
                log.debug("upload of %s failed", path, exc_info=True)
                progress.console.print(f"[red]failed[/] {escape(str(path))}: {escape(failure_text(exc))}", highlight=False)
                continue
            progress.console.print(f"[green]uploaded[/] {terminal_text(path.name)} -> photo {result.photo_id} ({result.key})", highlight=False)
            uploaded += 1
    if uploaded:
        request_runs([album_id])
    if failures:
        raise SystemExit(1)


def request_runs(album_ids: list[uuid.UUID]) -> bool:
    """The fast path: ask for the albums' runs now. A failure here loses no photo (the sensors
    find them within seconds), so it is reported as a warning, with its cause, not as an error."""
    from dagster._core.errors import DagsterError

    from photo_pipeline.instance.run_requests import album_run_requester

    try:
        with album_run_requester() as requester:
            submitted = False
            for album_id in album_ids:
                outcome = requester.request(album_id)
                suffix = f": run {outcome.run_id}" if outcome.run_id else ""
                console.print(f"[green]album {album_id}[/] processing {outcome.decision.value}{suffix}")
                submitted = submitted or outcome.submitted
            if submitted:
                # Queued is not running: say who launches it, so a quiet embedded setup is no mystery.
                console.print("  queued runs are launched by the Dagster daemon (locally: photo-pipeline ui)")
    except (DagsterError, SQLAlchemyError, OSError) as exc:
        log.debug("requesting the album runs failed", exc_info=True)
        err_console.print(
            f"[yellow]warning[/] could not request the album's run now ({escape(failure_text(exc))}); "
            "the sensors will pick the photos up"
        )
        return False
    return True


@main.command()
@click.argument("photo_ids", nargs=-1, required=True, callback=lambda ctx, param, values: [parse_uuid("PHOTO_ID")(ctx, param, v) for v in values])
@pass_context
def arrived(ctx: Context, photo_ids: list[uuid.UUID]) -> None:
    """Say that the uploads of PHOTO_IDS are complete: their albums' runs are requested now
    (the fast path; without it the sensors find the photos within their interval)."""
    from photo_pipeline.instance.run_requests import plan_arrivals

    plan = plan_arrivals(photo_ids, ctx.repository().get_many(photo_ids))
    for photo_id, reason in plan.refused.items():
        err_console.print(f"[yellow]skipped[/] photo {photo_id}: {reason}")
    if plan.albums and not request_runs(plan.albums):
        raise SystemExit(1)
    if plan.refused:
        raise SystemExit(1)


# Failed photos listed per album (the counts cover all): a few per album in the overview, more
# when one album is asked for.
FAILED_LISTED_PER_ALBUM = 5
FAILED_LISTED_FOR_ONE_ALBUM = 50
# Albums whose failed photos the human output lists one by one; --album shows any album's.
FAILED_ALBUMS_LISTED = 20


@main.command()
@click.option("--album", "album_id", callback=parse_uuid("--album"), help="Only this album.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def status(ctx: Context, album_id: uuid.UUID | None, as_json: bool) -> None:
    """Photo counts per status, per album (full ids and titles), and the failed photos by file name."""
    repository = ctx.repository()
    listed = FAILED_LISTED_FOR_ONE_ALBUM if album_id is not None else FAILED_LISTED_PER_ALBUM
    states = album_states(repository, [album_id] if album_id is not None else None, failed_examples=listed)
    ordered = sorted(states.values(), key=lambda a: str(a.album_id))
    totals = {s: sum(a.counts[s] for a in ordered) for s in PhotoStatus}
    if as_json:
        payload = status_payload(ordered, totals)
        if album_id is not None:
            # One album: its photos too, in the order they were taken.
            payload["photos"] = [photo_facts(p) for p in repository.photos_in_capture_order(album_id, STATUS_PHOTOS_LISTED)]
        click.echo(json.dumps(payload, indent=2))
        return
    console.print(status_table(ordered, totals))
    print_trash([a for a in ordered if a.trashed])
    print_failed_photos([a for a in ordered if a.failed])


def status_payload(albums: list[AlbumState], totals: dict[PhotoStatus, int]) -> dict[str, object]:
    return {
        "totals": {s.value: n for s, n in totals.items()},
        "albums": {
            str(a.album_id): {
                "title": a.title,
                **{s.value: a.counts[s] for s in PhotoStatus},
                # The latest failures (all of them are counted in "failed"), by id and file name.
                "duplicates": a.duplicates,
                "failed_photos": [
                    {"id": str(p.id), "file": p.filename, "error": p.error, "failure_kind": p.advice.kind, "retryable": p.advice.retryable}
                    for p in a.failures.examples
                ],
            }
            for a in albums
        },
        "albums_with_failed_photos": [str(a.album_id) for a in albums if a.failed],
    }


# `status --album ID --json` lists at most this many photos (capture order).
STATUS_PHOTOS_LISTED = 5000


def photo_facts(photo: PhotoRecord) -> dict[str, object]:
    """One photo in `status --album ID --json`: its capture facts, checksum and placeholder."""
    return {
        "id": str(photo.id),
        "file": photo.display_filename,
        "status": photo.status.value,
        "taken_at": photo.taken_at,
        "camera_make": photo.camera_make,
        "camera_model": photo.camera_model,
        "width": photo.width,
        "height": photo.height,
        "sha256": photo.original_sha256,
        "duplicate_of": str(photo.duplicate_of) if photo.duplicate_of else None,
        "thumbhash": photo.thumbhash,
        **({"gps": [photo.gps_latitude, photo.gps_longitude]} if photo.gps_latitude is not None else {}),
    }


def terminal_text(text: str, limit: int = 160) -> str:
    """Uploader- or decoder-given text made safe for the terminal: control and bidi characters
    escaped, rich markup neutralised."""
    return escape(keys.display_key(text, limit))


def status_table(albums: list[AlbumState], totals: dict[PhotoStatus, int]) -> Table:
    # No borders and one space between columns: a full id and the five statuses fit 80 columns.
    table = Table(title="photos per album", box=None, pad_edge=False, collapse_padding=True)
    # Full ids, never shortened: they are what --album, the UI's partitions and the jobs take.
    table.add_column("album", no_wrap=True, min_width=36)
    # The trash is counted apart (print_trash): a sixth column would not fit 80.
    for s in SHOWN_STATUSES:
        table.add_column(s.value, justify="right")
    for album in albums:
        cell = str(album.album_id) + (f"\n[dim]{terminal_text(album.title, 36)}[/]" if album.title else "")
        counts = [str(album.counts[s]) for s in SHOWN_STATUSES]
        if album.failed:
            counts[SHOWN_STATUSES.index(PhotoStatus.FAILED)] = f"[bold red]{album.failed} ✗[/]"
        table.add_row(cell, *counts)
    table.add_row("[bold]total[/]", *(f"[bold]{totals[s]}[/]" for s in SHOWN_STATUSES))
    return table


def print_trash(trashed: list[AlbumState]) -> None:
    """The photos in the trash, per album: not among the counts above, restorable until emptied."""
    if not trashed:
        return
    console.print(
        f"\n[yellow]{sum(a.trashed for a in trashed)} photo(s) in the trash[/] (photo-pipeline restore PHOTO_ID... | --album ID; "
        "empty_trash erases them after PHOTO_TRASH_RETENTION_DAYS)"
    )
    for album in trashed:
        title = f"  {terminal_text(album.title, 36)}" if album.title else ""
        console.print(f"  {album.album_id}  {album.trashed} in the trash{title}", highlight=False)


def print_failed_photos(failing: list[AlbumState]) -> None:
    """Each album with failed photos, by title and full id, and its latest failures by file name."""
    if not failing:
        return
    console.print(f"\n[bold red]✗ {len(failing)} album(s) with failed photos[/] (re-run them with the reprocess_failed_photos job once the originals are fixed)")
    for album in failing[:FAILED_ALBUMS_LISTED]:
        title = f"{terminal_text(album.title)} " if album.title else ""
        console.print(f"\n{title}(album {album.album_id}): [red]{album.failed} failed[/]", highlight=False, soft_wrap=True)
        for photo in album.failures.examples:
            console.print(f"  {photo.id}  {terminal_text(photo.filename)}", highlight=False, soft_wrap=True)
            if photo.error:
                console.print(f"      {terminal_text(photo.error, 300)}", highlight=False, soft_wrap=True)
            console.print(f"      [dim]→ {escape(photo.advice.action)}[/]", highlight=False, soft_wrap=True)
        if album.failed > len(album.failures.examples):
            console.print(f"  … {album.failed - len(album.failures.examples)} more: photo-pipeline status --album {album.album_id}", highlight=False, soft_wrap=True)
    if len(failing) > FAILED_ALBUMS_LISTED:
        console.print(f"\n… and {len(failing) - FAILED_ALBUMS_LISTED} more album(s) with failed photos (see --json)")


@main.command()
@click.argument("photo_id", callback=parse_uuid("PHOTO_ID"))
@pass_context
def cleanup(ctx: Context, photo_id: uuid.UUID) -> None:
    """Delete a pending or failed photo's row and objects (never one being processed)."""
    try:
        result = cleanup_photo(ctx.repository(), ctx.store(), photo_id)
    except PhotoNotFound:
        err_console.print(f"[red]no photo {photo_id}[/]")
        raise SystemExit(1) from None
    except CleanupRefused as exc:
        err_console.print(f"[red]refused:[/] {exc}")
        raise SystemExit(1) from None
    except StorageError as exc:
        err_console.print(f"[red]row deleted but objects could not be removed:[/] {exc}; reconciliation will remove them")
        raise SystemExit(1) from None
    console.print(f"[green]cleaned up[/] photo {photo_id} ({result.photo.status.value}); removed {', '.join(result.deleted_keys)}")


def photo_id_list(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[uuid.UUID]:
    convert = parse_uuid("PHOTO_ID")
    return [photo_id for photo_id in (convert(ctx, param, value) for value in values) if photo_id is not None]


def photos_or_album(photo_ids: list[uuid.UUID], album_id: uuid.UUID | None) -> None:
    if bool(photo_ids) == (album_id is not None):
        raise click.UsageError("give PHOTO_ID... or --album ID (one of the two)")


@main.command()
@click.argument("photo_ids", nargs=-1, callback=photo_id_list)
@click.option("--album", "album_id", callback=parse_uuid("--album"), help="The whole album, and every photo of it.")
@click.option("--erase", is_flag=True, help="Erase at once (original, every rendition, the row), not to the trash.")
@pass_context
def delete(ctx: Context, photo_ids: list[uuid.UUID], album_id: uuid.UUID | None, erase: bool) -> None:
    """Move photos, or an album with all its photos, to the trash (hidden everywhere, files kept,
    restorable until empty_trash erases them); a pending or failed upload is cleaned up instead.
    --erase erases at once, in any state, leaving only an id-only erase record."""
    photos_or_album(photo_ids, album_id)
    repository, store = ctx.repository(), ctx.store()
    if album_id is not None:
        try:
            removed = removal.delete_album(repository, store, album_id, erase=erase)
        except (AlbumNotFound, AlbumErased) as exc:
            err_console.print(f"[red]{escape(str(exc))}[/]")
            raise SystemExit(1) from None
        print_album_removal(removed)
        if removed.erased:
            forget_album_partition(ctx.settings, album_id)
        return
    failures, to_render = 0, set()
    for photo_id in photo_ids:
        try:
            photo = removal.delete_photo(repository, store, photo_id, erase=erase)
        except (PhotoNotFound, PhotoErased) as exc:
            failures += 1
            err_console.print(f"[red]{escape(str(exc))}[/]")
            continue
        print_photo_removal(photo)
        to_render |= photo.albums_to_render
    if to_render:
        request_runs(sorted(to_render, key=str))
    if failures:
        raise SystemExit(1)


REMOVED = {
    removal.Removal.CLEANED_UP: "[green]cleaned up[/]",
    removal.Removal.TRASHED: "[yellow]trashed[/]",
    removal.Removal.ALREADY_TRASHED: "[yellow]in the trash already[/]",
    removal.Removal.ERASED: "[red]erased[/]",
}


def print_photo_removal(photo: removal.PhotoRemoval) -> None:
    console.print(f"{REMOVED[photo.outcome]} photo {photo.photo_id} (was {photo.status.value})", highlight=False)
    if photo.trashed_at is not None:
        console.print(f"  in the trash since {photo.trashed_at:%Y-%m-%d %H:%M:%S} UTC; `photo-pipeline restore {photo.photo_id}` brings it back")
    for key in photo.removed_keys:
        console.print(f"  removed {terminal_text(key, 300)}", highlight=False)
    if photo.note:
        err_console.print(f"[yellow]note[/] {escape(photo.note)}")


def print_album_removal(album: removal.AlbumRemoval) -> None:
    console.print(f"{REMOVED[album.outcome]} album {album.album_id}: {album.photos} photo(s)", highlight=False)
    if album.trashed_at is not None:
        console.print(
            f"  in the trash since {album.trashed_at:%Y-%m-%d %H:%M:%S} UTC; `photo-pipeline restore --album {album.album_id}` brings it back"
        )
    if album.outcome is removal.Removal.ERASED:
        console.print(f"  removed {album.removed_objects} object(s)")
    if album.note:
        err_console.print(f"[yellow]note[/] {escape(album.note)}")


def forget_album_partition(settings: Settings, album_id: uuid.UUID) -> None:
    """An erased album's Dagster partition goes too; if the instance cannot be reached, empty_trash
    deletes it later (a warning, not a failure: the album is erased)."""
    from dagster._core.errors import DagsterError

    from photo_pipeline.instance.partitions import remove_album_partitions
    from photo_pipeline.instance.run_requests import instance_for

    try:
        with instance_for(settings) as instance:
            removed = remove_album_partitions(instance, [album_id])
    except (DagsterError, SQLAlchemyError, OSError) as exc:
        log.debug("deleting the album's partition failed", exc_info=True)
        err_console.print(f"[yellow]warning[/] the album's partition could not be deleted now ({type(exc).__name__}); empty_trash deletes it")
        return
    if removed:
        console.print("  its Dagster partition was deleted")


@main.command()
@click.argument("photo_ids", nargs=-1, callback=photo_id_list)
@click.option("--album", "album_id", callback=parse_uuid("--album"), help="The album, with the photos its deletion trashed.")
@pass_context
def restore(ctx: Context, photo_ids: list[uuid.UUID], album_id: uuid.UUID | None) -> None:
    """Bring photos, or an album, back from the trash as they were (same rows, keys, renditions)."""
    photos_or_album(photo_ids, album_id)
    repository = ctx.repository()
    refusals = (PhotoNotFound, PhotoErased, AlbumNotFound, AlbumErased, AlbumInTrash, removal.RestoreRefused)
    failures, to_render = 0, set()
    if album_id is not None:
        try:
            album = removal.restore_album(repository, album_id)
        except refusals as exc:
            err_console.print(f"[red]refused:[/] {escape(str(exc))}")
            raise SystemExit(1) from None
        counts = ", ".join(f"{n} {status.value}" for status, n in album.restored.items()) or "no photo"
        console.print(f"[green]restored[/] album {album_id}: {counts}", highlight=False)
        to_render |= album.albums_to_render
    for photo_id in photo_ids:
        try:
            photo = removal.restore_photo(repository, photo_id)
        except refusals as exc:
            failures += 1
            err_console.print(f"[red]refused:[/] {escape(str(exc))}")
            continue
        console.print(f"[green]restored[/] photo {photo_id} ({photo.status.value})", highlight=False)
        to_render |= photo.albums_to_render
    if to_render:
        request_runs(sorted(to_render, key=str))
    if failures:
        raise SystemExit(1)


@main.command()
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--force", is_flag=True, help="Apply a plan the safety limit refused (review it with --dry-run first).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def reconcile(ctx: Context, dry_run: bool, force: bool, as_json: bool) -> None:
    """Bring the table and the bucket into agreement (what the scheduled reconcile_storage job does)."""
    from photo_pipeline.defs.resources import PhotoPipelineResource
    from photo_pipeline.reconcile.apply import (
        Reconciler,
        SafetyLimitExceeded,
        policy_from_settings,
    )

    settings = ctx.settings
    reconciler = Reconciler(ctx.repository(), ctx.store(), policy_from_settings(settings))
    try:
        plan = reconciler.plan()
    except StorageError as exc:
        err_console.print(f"[red]cannot list the bucket, nothing changed:[/] {exc}")
        raise SystemExit(1) from None
    payload: dict[str, object] = {**plan.summary(), "dry_run": dry_run, "planned": [a.as_dict() for a in plan.actions]}
    if dry_run:
        emit_plan(payload, plan, as_json)
        return
    try:
        processor = PhotoPipelineResource().processor(logging.getLogger("photo_pipeline.reconcile"))
        report = reconciler.apply(plan, force=force, processor=processor, worker="cli-reconcile", rerender_limit=settings.reconcile_rerender_limit)
    except SafetyLimitExceeded as exc:
        emit_plan({**payload, "refused": str(exc)}, plan, as_json)
        err_console.print(f"[red]{exc}[/]")
        raise SystemExit(2) from None
    payload["applied"] = report.applied
    payload["albums_to_render"] = sorted(str(a) for a in report.albums_to_render)
    payload["errors"] = report.errors
    payload["failed_rows"] = report.failed_rows
    emit_plan(payload, plan, as_json)
    if not report.ok:
        err_console.print(f"[red]reconciliation applied only in part; failed:[/] {escape(report.describe_errors())}")
        raise SystemExit(3)


def emit_plan(payload: dict[str, object], plan: object, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    table = Table(title="reconciliation" + (" (dry run)" if payload.get("dry_run") else ""))
    table.add_column("action")
    table.add_column("planned", justify="right")
    table.add_column("applied", justify="right")
    applied = payload.get("applied") or {}
    for kind, count in dict(payload["actions"]).items():  # type: ignore[call-overload]
        table.add_row(kind, str(count), str(applied.get(kind, "")) if isinstance(applied, dict) else "")
    console.print(table)
    console.print(f"rows seen {payload['rows_seen']}, objects seen {payload['objects_seen']}")
    violations = payload.get("violations")
    for violation in violations if isinstance(violations, list) else []:
        console.print(f"[red]refused:[/] {violation}")
    emit_skipped_keys(payload)


def emit_skipped_keys(payload: dict[str, object]) -> None:
    """Keys the table cannot hold, already escaped and shortened by the plan (never raw)."""
    count = payload.get("unholdable_keys") or 0
    if not count:
        return
    console.print(f"[yellow]skipped {count} object(s) under raw/ whose keys the photo table cannot hold:[/]")
    skipped = payload.get("skipped_keys")
    for item in skipped if isinstance(skipped, list) else []:
        console.print(f"  {escape(item['key'])}  ({escape(item['reason'])})", highlight=False)
    if isinstance(skipped, list) and isinstance(count, int) and count > len(skipped):
        console.print(f"  … and {count - len(skipped)} more")


@main.command()
def doctor() -> None:
    """Check the settings, the database and its write permission, the bucket (a probe object written
    and deleted), a presigned PUT through the public endpoint, and CORS."""
    from photo_pipeline.cli.doctor import run_all_checks

    failed = False
    # Not through Context: a bad setting is one of the things the doctor reports.
    for check in run_all_checks():
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}[check.level]
        console.print(f"[{colour}]{check.level:>4}[/] {check.name}: {check.detail}")
        failed = failed or check.level == "fail"
    if failed:
        raise SystemExit(1)


@main.command()
@click.option("--test", "send_test", is_flag=True, help="Send a test message to each destination of PHOTO_ALERT_URLS.")
@pass_context
def alert(ctx: Context, send_test: bool) -> None:
    """Alerts: --test sends a test message to each destination and says which took it."""
    from photo_pipeline.alerts.delivery import destinations_from, send
    from photo_pipeline.services.alerts import send_check

    if not send_test:
        raise click.UsageError("nothing to do: `photo-pipeline alert --test` sends a test message to each destination")
    destinations = destinations_from(ctx.settings.alerts.urls)
    if not destinations:
        err_console.print("[red]no destinations:[/] PHOTO_ALERT_URLS is not set (see docs/operations.md, Alerts and metrics)")
        raise SystemExit(1)
    results = send_check(destinations, send)
    for result in results:
        if result.ok:
            console.print(f"[green]  ok[/] {result.destination.shown}: took the test message", highlight=False, soft_wrap=True)
        else:
            console.print(f"[red]fail[/] {result.destination.shown}: {escape(result.error or '')}", highlight=False, soft_wrap=True)
    if not all(result.ok for result in results):
        raise SystemExit(1)


@main.command()
@pass_context
def demo(ctx: Context) -> None:
    """Run the whole pipeline on sample photos (made in code) on the embedded defaults."""
    from photo_pipeline.cli.demo import album_rows, run_demo
    from photo_pipeline.instance.local import local_instance

    settings = ctx.settings
    repository, store = ctx.repository(migrate_first=True), ctx.store()
    console.print(f"[bold]photo_pipeline demo[/] in {settings.home}")
    console.print(f"  database: {settings.database_url_for_display()}\n  objects:  {store.describe()}")
    instance = local_instance(settings)

    def on_upload(album: str, path: Path, result: object) -> None:
        console.print(f"  uploaded {album}/{path.name}")

    albums = run_demo(repository, store, instance, settings.home / "demo-samples", on_upload=on_upload)
    for album in albums:
        table = Table(title=f"{album.name} — album {album.album_id} — run {album.run_id[:8]}")
        for column in ("file", "status", "original", "preview / thumbnail", "error"):
            table.add_column(column)
        for row in album_rows(repository, album):
            colour = {"completed": "green", "failed": "red"}.get(row.status.value, "yellow")
            size = f"{row.width}x{row.height}" if row.width else ""
            rendered = f"{(row.preview_bytes or 0) // 1024} KiB / {(row.thumb_bytes or 0) // 1024} KiB" if row.preview_key else ""
            table.add_row(row.filename or "", f"[{colour}]{row.status.value}[/]", size, rendered, row.error or "")
        console.print(table)
        console.print(f"  {album.photos_per_second:.2f} photos/s ({album.seconds:.2f}s for the album)")
    if not settings.uses_s3:
        console.print(f"\nrenditions: {settings.objects_dir / 'processed'}")
    console.print("open the Dagster UI to see the runs: [bold]photo-pipeline ui[/]")
    if not all(album.run_success for album in albums):
        raise SystemExit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (behind a reverse proxy: keep loopback).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@pass_context
def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the HTTP API and the uploader page (/upload) with uvicorn; needs PHOTO_API_TOKEN."""
    import uvicorn

    from photo_pipeline.api.app import ApiNotConfigured, create_app, public_base_url, require_token
    from photo_pipeline.instance.run_requests import album_run_requester

    settings = ctx.settings
    try:
        # Checked before anything is opened: the API never runs without its token, nor hands out
        # URLs of a host it cannot name.
        require_token(settings)
        public_url = public_base_url(settings, host, port)
    except ApiNotConfigured as exc:
        raise click.ClickException(str(exc)) from None
    repository = ctx.repository(migrate_first=ctx.uses_embedded_database)
    # The bucket's client is the API's own (each call bounded), not the pipeline's patient one.
    app = create_app(settings, album_run_requester, public_url=public_url, repository=repository)
    # Every request is logged by the app (without query strings or headers); uvicorn's access
    # log would print query strings, which carry the presigned URLs' signatures.
    for name in ("photo_pipeline.api", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.INFO)
    err_console.print(f"photo_pipeline API on http://{host}:{port} (uploader: /upload, description: /openapi.json)")
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None, server_header=False)


@main.command()
@click.option("--port", default=3000, show_default=True)
@pass_context
def ui(ctx: Context, port: int) -> None:
    """Start the Dagster UI and daemon on the local instance (sensors on, demo runs visible)."""
    from photo_pipeline.instance.local import ensure_local_dagster_home, local_instance, start_run_retries_from_now

    # The sensors start ticking at once and need the table: the embedded database is created
    # here; any other one must have been migrated with init-db.
    ctx.repository(migrate_first=ctx.uses_embedded_database)
    dagster_home = ensure_local_dagster_home(ctx.settings)
    with local_instance(ctx.settings) as instance:
        start_run_retries_from_now(instance)
    command = ui_command(port)
    # One line whatever the terminal's width, so it can be copied.
    console.print(f"DAGSTER_HOME={dagster_home} {' '.join(command)}", soft_wrap=True, highlight=False)
    # The home is absolute (and so is a SQLite file given relative to here), so the change of
    # folder below changes nothing the pipeline reads.
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PHOTO_PIPELINE_HOME": str(ctx.settings.home)}
    if env.get(ENV_DATABASE_URL):  # set and not empty (empty means unset, as in the settings)
        env[ENV_DATABASE_URL] = sqlite_file_made_absolute(env[ENV_DATABASE_URL])
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix  # dg warns when the project's venv is not the active one
    # Run from the local instance's folder: `dagster dev` warns when the folder it runs in holds a
    # dagster.yaml other than DAGSTER_HOME's, and the project folder holds the production one.
    os.chdir(dagster_home)
    # Become the Dagster process rather than its parent: stopping `photo-pipeline ui` by its PID
    # (or Ctrl-C) then stops the webserver and the daemon, with nothing left serving.
    # An ignored signal stays ignored across exec, and a shell starts background commands with
    # SIGINT ignored; dagster dev answers SIGTERM with SIGINT's handler, so started that way it
    # would ignore `kill PID` too. Both get their default back, which Python and dagster build on.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_DFL)
    sys.stdout.flush()
    os.execve(command[0], command, env)


def sqlite_file_made_absolute(url: str) -> str:
    """`url` with a relative SQLite file made absolute (from the current folder); any other URL
    unchanged, character for character."""
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:" or Path(path).is_absolute():
        return url
    return parsed.set(database=str(Path(path).absolute())).render_as_string(hide_password=False)


@main.command()
@click.option("--name", "-n", required=True, help="This worker's name, unique among the workers (the host is appended).")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 64),
    default=None,
    help="Runs at once on this machine [default: worker_concurrency in the instance's yaml].",
)
@click.option("--loglevel", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@pass_context
def worker(ctx: Context, name: str, concurrency: int | None, loglevel: str) -> None:
    """Run album runs on this machine: a Celery worker for the Celery run launcher
    (DAGSTER_HOME's dagster.yaml must be deploy/dagster-celery.yaml). Stops on SIGTERM once its
    runs end."""
    from dagster._core.errors import DagsterHomeNotSetError, DagsterInvalidConfigError

    from photo_pipeline.instance.celery_worker import CeleryWorkerError, start_worker

    # A worker that cannot reach the photo table would fail every run it takes: refuse to start.
    ctx.repository()
    try:
        start_worker(name, concurrency=concurrency, loglevel=loglevel)
    except (CeleryWorkerError, DagsterHomeNotSetError, DagsterInvalidConfigError) as exc:
        raise click.ClickException(str(exc)) from exc


def ui_command(port: int) -> list[str]:
    """`dg dev` (`dagster dev` is superseded by it and warns so) on the project's workspace.yaml,
    which names the code location; the bare module where the package runs without its project
    folder. Given a workspace, dg runs where it is started instead of moving into the project."""
    dg = Path(sys.executable).with_name("dg")  # this venv's, not another project's on PATH
    if not dg.is_file():
        raise click.ClickException(f"{dg} not found: install the project (pip install -e .), which brings dagster-dg-cli")
    workspace = Path(__file__).resolve().parents[2] / "workspace.yaml"
    target = ["-w", str(workspace)] if workspace.is_file() else ["-m", "photo_pipeline.definitions"]
    return [str(dg), "dev", *target, "--host", "127.0.0.1", "--port", str(port)]


if __name__ == "__main__":
    main()
