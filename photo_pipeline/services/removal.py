"""Removing photos and albums: the rules behind `DELETE /api/photos/{id}`, `DELETE /api/albums/{id}`,
their restores and `photo-pipeline delete | restore` (the API and the CLI call these and hold no
rule of their own), and the erase that empty_trash carries out.

- A pending or failed photo's DELETE is the uploader's cleanup, as it always was (row deleted,
  tombstone kept, its object removed); any other photo goes to the trash: hidden everywhere, files
  kept, restorable until the trash is emptied. An album's DELETE trashes the album and every photo
  of it, pending uploads included.
- Restore brings back exactly what was trashed (same row, keys, renditions); a photo of an album in
  the trash comes back with its album, not on its own.
- Erase (`erase=True`, or empty_trash after the retention): first the rows go and the id-only
  erase record is written, in one transaction; then every object carrying the photo's id is
  deleted: the keys the table recorded and whatever a listing of its folders finds (settings,
  formats and the table may all have moved on). A key that carries another photo's id that still
  has a row is never deleted (a duplicate may point at its canonical photo's files).
- Photos trashed or erased take their completed duplicates back to `pending`: their albums'
  runs are wanted (`albums_to_render`), which the caller requests.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import CleanupRefused, PhotoNotFound, PhotoRepository
from photo_pipeline.photos.trash import (
    AlbumErased,
    AlbumInTrash,
    AlbumNotFound,
    EraseOutcome,
    ErasedRow,
    PhotoErased,
    RequeuedDuplicate,
    RestoredRow,
)
from photo_pipeline.services.uploads import CleanupIncomplete, CleanupResult, cleanup_photo
from photo_pipeline.storage import ObjectStore, StorageError, keys
from photo_pipeline.trash.plan import EmptyTrashPlan

log = logging.getLogger(__name__)

# What an upload's own cleanup takes (a DELETE of such a photo is not a trash).
UPLOAD_CLEANUP = frozenset({PhotoStatus.PENDING, PhotoStatus.FAILED})
# An erase of more photos of one album than this lists the album's folders once instead of each
# photo's keys (a few listings either way, never one a photo of a large batch).
LIST_ALBUM_WHOLE_FROM = 20
# How many removed keys an album's answer names (all are counted).
MAX_KEYS_LISTED = 1000


class RestoreRefused(Exception):
    """The photo or album is not in the trash: there is nothing to restore."""


class Removal(StrEnum):
    CLEANED_UP = "cleaned_up"  # a pending or failed upload: row and object deleted, tombstone kept
    TRASHED = "trashed"
    ALREADY_TRASHED = "already_trashed"  # in the trash since `trashed_at`: nothing changed
    ERASED = "erased"


@dataclass(frozen=True)
class ObjectRemoval:
    """The objects an erase deleted, or why some could not be (the rows are gone whatever: the
    erase record makes reconciliation remove what is left)."""

    removed_keys: tuple[str, ...] = ()
    problem: str | None = None

    @property
    def note(self) -> str | None:
        if self.problem is None:
            return None
        return f"{self.problem}; reconciliation removes what is left (the photo is recorded as erased)"


@dataclass(frozen=True)
class PhotoRemoval:
    photo_id: uuid.UUID
    album_id: uuid.UUID
    outcome: Removal
    status: PhotoStatus  # the status the photo had
    removed_keys: tuple[str, ...] = ()
    trashed_at: datetime | None = None
    note: str | None = None
    # Albums with photos back in `pending` (duplicates of the removed photo): request their runs.
    albums_to_render: frozenset[uuid.UUID] = frozenset()


@dataclass(frozen=True)
class PhotoRestoral:
    photo_id: uuid.UUID
    album_id: uuid.UUID
    status: PhotoStatus  # the status it is back in

    @property
    def albums_to_render(self) -> frozenset[uuid.UUID]:
        return frozenset({self.album_id}) if self.status is PhotoStatus.PENDING else frozenset()


@dataclass(frozen=True)
class AlbumRemoval:
    album_id: uuid.UUID
    outcome: Removal
    photos: int  # photos trashed, or erased, by this call
    trashed_at: datetime | None = None
    removed_objects: int = 0
    removed_keys: tuple[str, ...] = ()  # the first MAX_KEYS_LISTED of them
    note: str | None = None

    @property
    def erased(self) -> bool:
        """The album's dynamic partition can go (the caller holds the Dagster instance)."""
        return self.outcome is Removal.ERASED


@dataclass(frozen=True)
class AlbumRestoral:
    album_id: uuid.UUID
    # Photos brought back, by the status they are back in.
    restored: Mapping[PhotoStatus, int] = field(default_factory=dict)

    @property
    def photos(self) -> int:
        return sum(self.restored.values())

    @property
    def albums_to_render(self) -> frozenset[uuid.UUID]:
        return frozenset({self.album_id}) if self.restored.get(PhotoStatus.PENDING) else frozenset()


# -- photos --------------------------------------------------------------------------------------


def delete_photo(repository: PhotoRepository, store: ObjectStore, photo_id: uuid.UUID, *, erase: bool = False) -> PhotoRemoval:
    """A pending or failed upload is cleaned up; any other photo goes to the trash (in it already:
    ALREADY_TRASHED); with `erase`, any photo is erased at once. PhotoNotFound for an unknown id,
    PhotoErased for an erased one."""
    if erase:
        return erase_photo(repository, store, photo_id)
    record = repository.get(photo_id)
    if record is None:
        raise photo_gone(repository, photo_id)
    if record.status in UPLOAD_CLEANUP:
        try:
            return _cleaned_up(cleanup_photo(repository, store, photo_id))
        except CleanupIncomplete as exc:
            log.warning("%s", exc)
            return PhotoRemoval(
                photo_id, exc.photo.album_id, Removal.CLEANED_UP, exc.photo.status, note=f"{exc}; reconciliation removes them"
            )
        except (CleanupRefused, PhotoNotFound):
            pass  # claimed (or cleaned up) meanwhile: what it is now decides below
    outcome = repository.trash_photos([photo_id])
    if not outcome.rows:
        current = repository.get(photo_id)
        if current is None:
            raise photo_gone(repository, photo_id)
        return PhotoRemoval(photo_id, current.album_id, Removal.ALREADY_TRASHED, PhotoStatus.TRASHED, trashed_at=current.trashed_at)
    [trashed] = outcome.rows
    log.info("photo %s (%s) moved to the trash", photo_id, trashed.status_before.value)
    return PhotoRemoval(
        photo_id,
        trashed.album_id,
        Removal.TRASHED,
        trashed.status_before,
        trashed_at=trashed.trashed_at,
        albums_to_render=_albums_of(outcome.requeued_duplicates),
    )


def _cleaned_up(result: CleanupResult) -> PhotoRemoval:
    photo = result.photo
    return PhotoRemoval(photo.id, photo.album_id, Removal.CLEANED_UP, photo.status, removed_keys=result.deleted_keys)


def erase_photo(repository: PhotoRepository, store: ObjectStore, photo_id: uuid.UUID) -> PhotoRemoval:
    """Erase one photo in any state (a privacy request): row, renditions and every object
    carrying its id; its erase record stays. PhotoErased when it was erased before."""
    outcome = repository.erase_photos([photo_id])
    if not outcome.rows:
        raise photo_gone(repository, photo_id)
    [row] = outcome.rows
    objects = remove_objects(repository, store, outcome.rows)
    log.info("photo %s (%s) erased: %d object(s) removed", photo_id, row.status.value, len(objects.removed_keys))
    return PhotoRemoval(
        photo_id,
        row.album_id,
        Removal.ERASED,
        row.status,
        removed_keys=objects.removed_keys,
        note=objects.note,
        albums_to_render=_albums_of(outcome.requeued_duplicates),
    )


def restore_photo(repository: PhotoRepository, photo_id: uuid.UUID) -> PhotoRestoral:
    """Bring the photo back from the trash as it was (a `processing` one to `pending`).
    RestoreRefused when it is not in the trash; AlbumInTrash when its album is (the album's
    restore brings it back); PhotoNotFound / PhotoErased for an unknown or erased id."""
    restored: list[RestoredRow] = repository.restore_photos([photo_id])
    if restored:
        [row] = restored
        log.info("photo %s restored from the trash (%s)", photo_id, row.status.value)
        return PhotoRestoral(photo_id, row.album_id, row.status)
    record = repository.get(photo_id)
    if record is None:
        raise photo_gone(repository, photo_id)
    if record.status is not PhotoStatus.TRASHED:
        raise RestoreRefused(f"photo {photo_id} is {record.status.value}, not in the trash: there is nothing to restore")
    album = repository.album(record.album_id)
    if album is not None and album.trashed_at is not None:
        raise AlbumInTrash(record.album_id, album.trashed_at, f"photo {photo_id} comes back with it")
    raise RestoreRefused(f"photo {photo_id} could not be restored: it changed meanwhile; try again")


def photo_gone(repository: PhotoRepository, photo_id: uuid.UUID) -> PhotoErased | PhotoNotFound:
    """Why a photo has no row, to raise: erased (PhotoErased), or never known (PhotoNotFound)."""
    erased_at = repository.erased_at(photo_id=photo_id)
    return PhotoErased(photo_id, erased_at) if erased_at is not None else PhotoNotFound(f"no photo {photo_id}")


def _albums_of(requeued: Iterable[RequeuedDuplicate]) -> frozenset[uuid.UUID]:
    return frozenset(duplicate.album_id for duplicate in requeued)


# -- albums --------------------------------------------------------------------------------------


def delete_album(repository: PhotoRepository, store: ObjectStore, album_id: uuid.UUID, *, erase: bool = False) -> AlbumRemoval:
    """Trash the album and every photo of it (again: what arrived since; its trash time stands);
    with `erase`, erase them all and the album. AlbumNotFound for an unknown album, AlbumErased
    for an erased one."""
    if erase:
        return erase_album(repository, store, album_id)
    erased_at = repository.erased_at(album_id=album_id)
    if erased_at is not None:
        raise AlbumErased(album_id, erased_at)
    before = repository.album(album_id)
    outcome = repository.trash_album(album_id)
    record = repository.album(album_id)
    already = before is not None and before.trashed_at is not None and not outcome.rows
    log.info("album %s moved to the trash with %d photo(s)", album_id, len(outcome.rows))
    return AlbumRemoval(
        album_id,
        Removal.ALREADY_TRASHED if already else Removal.TRASHED,
        photos=len(outcome.rows),
        trashed_at=record.trashed_at if record is not None else None,
    )


def erase_album(repository: PhotoRepository, store: ObjectStore, album_id: uuid.UUID) -> AlbumRemoval:
    """Erase every photo of the album, its title and the album (its erase record stays), then
    every object in its folders that no standing photo's id is carried by."""
    erased_before = repository.erased_at(album_id=album_id)
    outcome = repository.erase_album(album_id)
    if erased_before is not None and not outcome.rows:
        raise AlbumErased(album_id, erased_before)
    objects = remove_objects(repository, store, outcome.rows, whole_album=album_id)
    log.info("album %s erased with %d photo(s): %d object(s) removed", album_id, len(outcome.rows), len(objects.removed_keys))
    return AlbumRemoval(
        album_id,
        Removal.ERASED,
        photos=len(outcome.rows),
        removed_objects=len(objects.removed_keys),
        removed_keys=objects.removed_keys[:MAX_KEYS_LISTED],
        note=objects.note,
    )


def restore_album(repository: PhotoRepository, album_id: uuid.UUID) -> AlbumRestoral:
    """Take the album out of the trash with the photos its deletion trashed (a photo trashed on
    its own before stays there). RestoreRefused when the album is not in the trash;
    AlbumNotFound / AlbumErased for an unknown or erased album."""
    restored = repository.restore_album(album_id)
    if restored is None:
        erased_at = repository.erased_at(album_id=album_id)
        if erased_at is not None:
            raise AlbumErased(album_id, erased_at)
        if repository.album(album_id) is None and not repository.album_figures([album_id]):
            raise AlbumNotFound(f"no album {album_id}")
        raise RestoreRefused(f"album {album_id} is not in the trash: there is nothing to restore")
    counts: dict[PhotoStatus, int] = {}
    for row in restored:
        counts[row.status] = counts.get(row.status, 0) + 1
    log.info("album %s restored from the trash with %d photo(s)", album_id, len(restored))
    return AlbumRestoral(album_id, counts)


# -- objects of erased photos ----------------------------------------------------------------------


def remove_objects(
    repository: PhotoRepository, store: ObjectStore, rows: Sequence[ErasedRow], *, whole_album: uuid.UUID | None = None
) -> ObjectRemoval:
    """Delete every object of these erased photos: the keys the table recorded and whatever the
    listing of their folders finds carrying their ids (with `whole_album`, everything in that
    album's folders but what a standing photo's id is carried by). A store that cannot list or
    delete is reported, never raised: the rows are gone already, and the erase record makes
    reconciliation remove the rest."""
    try:
        sizes = keys.sizes_of_folders(store.list_folders(keys.PROCESSED_PREFIX))
        listed = [obj.key for prefix in listing_prefixes(rows, sizes, whole_album) for obj in store.iter_objects(prefix)]
        candidates = {key: keys.carried_photo_id(key) for key in {*listed, *(k for r in rows for k in r.recorded_keys)}}
        erased = {row.id for row in rows}
        standing = set(repository.get_many({i for i in candidates.values() if i is not None and i not in erased}))
        doomed = keys_to_remove(rows, candidates, standing)
        store.delete_many(doomed)
    except StorageError as exc:
        log.exception("erase of %d photo(s): their objects could not all be removed", len(rows))
        return ObjectRemoval((), f"the objects could not all be removed now ({exc})")
    return ObjectRemoval(tuple(doomed))


def listing_prefixes(rows: Sequence[ErasedRow], sizes: Collection[int], whole_album: uuid.UUID | None) -> list[str]:
    """What to list to find the erased photos' objects: a whole erased album's folders; else per
    album, its folders when many of its photos go at once, each photo's keys otherwise."""
    if whole_album is not None:
        return keys.album_key_prefixes(whole_album, sizes)
    by_album: dict[uuid.UUID, list[uuid.UUID]] = {}
    for row in rows:
        by_album.setdefault(row.album_id, []).append(row.id)
    prefixes: list[str] = []
    for album_id, photo_ids in by_album.items():
        if len(photo_ids) > LIST_ALBUM_WHOLE_FROM:
            prefixes += keys.album_key_prefixes(album_id, sizes)
        else:
            prefixes += [p for photo_id in photo_ids for p in keys.photo_key_prefixes(album_id, photo_id, sizes)]
    return prefixes


def keys_to_remove(rows: Sequence[ErasedRow], candidates: Mapping[str, uuid.UUID | None], standing: Collection[uuid.UUID]) -> list[str]:
    """The keys an erase deletes, sorted: each erased photo's original (the row's own key, unique
    to it) and every candidate key but those carrying the id of a photo that still has a row
    (a duplicate's row may name its canonical photo's files)."""
    originals = {row.original_key for row in rows}
    return sorted(key for key, carried in candidates.items() if key in originals or carried not in standing)


def sweep_erased_photo(repository: PhotoRepository, store: ObjectStore, photo_id: uuid.UUID, album_id: uuid.UUID) -> ObjectRemoval | None:
    """For a run whose claim was lost: if the photo was erased meanwhile, delete what the run
    wrote (the erase's own deletes may have run before the run's uploads). None when the photo was
    not erased (trashed, or taken over by another run): its files are not the run's to delete."""
    if repository.erased_at(photo_id=photo_id) is None:
        return None
    gone = ErasedRow(id=photo_id, album_id=album_id, status=PhotoStatus.PROCESSING, original_key="", thumb_key=None, preview_key=None)
    return remove_objects(repository, store, [gone])


# -- emptying the trash ----------------------------------------------------------------------------


class TrashSafetyLimitExceeded(RuntimeError):
    """The empty_trash plan erases an unusual share of the table; nothing was erased."""

    def __init__(self, plan: EmptyTrashPlan) -> None:
        self.plan = plan
        super().__init__(
            f"empty_trash refused: {'; '.join(plan.violations)}. Review the plan on the trash asset; if it is right, "
            "launch empty_trash with dry_run: false, force: true"
        )


@dataclass
class EmptyTrashReport:
    albums_erased: list[uuid.UUID] = field(default_factory=list)
    photos_erased: int = 0
    objects_removed: int = 0
    # What could not be done (objects left for reconciliation), one line each.
    problems: list[str] = field(default_factory=list)
    # Albums with duplicates back in `pending`: the pending sensor requests their runs.
    albums_to_render: set[uuid.UUID] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems

    def record(self, outcome: EraseOutcome, objects: ObjectRemoval) -> None:
        self.photos_erased += len(outcome.rows)
        self.objects_removed += len(objects.removed_keys)
        self.albums_to_render |= _albums_of(outcome.requeued_duplicates)
        if objects.note is not None:
            self.problems.append(objects.note)


def empty_trash(
    repository: PhotoRepository, store: ObjectStore, plan: EmptyTrashPlan, *, force: bool = False, batch: int = 500
) -> EmptyTrashReport:
    """Erase what the plan found past the retention: its albums whole, then the other photos in
    batches. Each erase is guarded on the trash time (a photo or album restored since the plan is
    left alone), so it never erases more than the plan counted. TrashSafetyLimitExceeded, with
    nothing erased, for a plan the safety limit refuses (unless `force`)."""
    if not plan.safe and not force:
        raise TrashSafetyLimitExceeded(plan)
    report = EmptyTrashReport()
    for album in plan.albums:
        outcome = repository.erase_album_trashed_before(album.album_id, plan.cutoff)
        if outcome is None:
            log.info("empty_trash: album %s was restored since the plan; left alone", album.album_id)
            continue
        report.albums_erased.append(album.album_id)
        report.record(outcome, remove_objects(repository, store, outcome.rows, whole_album=album.album_id))
    after: uuid.UUID | None = None
    while page := repository.expired_trashed_photos(plan.cutoff, limit=batch, after=after):
        after = page[-1][0]
        outcome = repository.erase_photos([photo_id for photo_id, _ in page], trashed_before=plan.cutoff)
        report.record(outcome, remove_objects(repository, store, outcome.rows))
    log.info(
        "empty_trash: %d album(s) and %d photo(s) erased, %d object(s) removed",
        len(report.albums_erased),
        report.photos_erased,
        report.objects_removed,
    )
    return report
