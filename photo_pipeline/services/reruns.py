"""Operator re-runs: which photos go back to the queue and what an album's failures look like.

These are the rules behind the `reprocess_failed_photos` job and the renditions' checks
`no_failed_photos_in_album` and `no_failed_photos_in_any_album`. No Dagster here, so tests reach
every rule directly.
The state machine allows `failed -> pending` only by an operator's re-run: `requeue` is that re-run.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from photo_pipeline.failures import FailureAdvice, FailureKind, advice
from photo_pipeline.photos.models import PhotoStatus
from photo_pipeline.photos.repository import PhotoRecord, PhotoRepository, RequeuedPhoto
from photo_pipeline.services.processing import Outcome, PhotoOutcome

# How many failed photos the check lists (ids and errors); the count covers all of them.
FAILED_EXAMPLES = 5


class InvalidRerunSelection(ValueError):
    """The operator's choice of photos to re-run is empty or malformed."""


@dataclass(frozen=True)
class RerunSelection:
    album_id: uuid.UUID | None
    photo_ids: tuple[uuid.UUID, ...]
    include_missing: bool

    def describe(self) -> str:
        statuses = "failed or missing" if self.include_missing else "failed"
        if self.photo_ids and self.album_id:
            return f"{len(self.photo_ids)} chosen {statuses} photo(s) of album {self.album_id}"
        if self.photo_ids:
            return f"{len(self.photo_ids)} chosen {statuses} photo(s)"
        return f"every {statuses} photo of album {self.album_id}"


def parse_selection(album_id: str | None, photo_ids: Sequence[str], include_missing: bool) -> RerunSelection:
    """Validate what the launchpad sent; errors say what to type instead."""
    album = _parse_album(album_id)
    photos = _parse_photo_ids(photo_ids)
    if album is None and not photos:
        raise InvalidRerunSelection(
            "nothing chosen: set album_id (re-run every failed photo of that album), photo_ids "
            "(re-run those photos), or both (those photos, only if they are in that album)"
        )
    return RerunSelection(album_id=album, photo_ids=photos, include_missing=include_missing)


def _parse_album(album_id: str | None) -> uuid.UUID | None:
    # The launchpad turns a cleared field into "" rather than null.
    if album_id is None or not album_id.strip():
        return None
    try:
        return uuid.UUID(album_id.strip())
    except ValueError:
        raise InvalidRerunSelection(f"album_id {album_id!r} is not a UUID (albums are named by UUID)") from None


def _parse_photo_ids(photo_ids: Sequence[str]) -> tuple[uuid.UUID, ...]:
    parsed: dict[uuid.UUID, None] = {}  # ordered and without duplicates
    invalid: list[str] = []
    for raw in photo_ids:
        try:
            parsed[uuid.UUID(raw.strip())] = None
        except ValueError:
            invalid.append(raw)
    if invalid:
        shown = ", ".join(repr(v) for v in invalid[:10]) + (" …" if len(invalid) > 10 else "")
        raise InvalidRerunSelection(f"photo_ids must be UUIDs; {len(invalid)} are not: {shown}")
    return tuple(parsed)


@dataclass(frozen=True)
class RequeueOutcome:
    requeued: list[RequeuedPhoto]
    # Chosen photo ids that were not requeued, with the reason an operator needs to act on.
    not_requeued: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.requeued)

    @property
    def per_album(self) -> dict[uuid.UUID, int]:
        return dict(sorted(Counter(r.record.album_id for r in self.requeued).items(), key=lambda item: str(item[0])))

    @property
    def albums(self) -> list[uuid.UUID]:
        return list(self.per_album)

    def failures_before(self) -> dict[uuid.UUID, dict[uuid.UUID, str | None]]:
        """Album -> photo -> the error it had failed with: what its re-run is compared with."""
        before: dict[uuid.UUID, dict[uuid.UUID, str | None]] = {album: {} for album in self.albums}
        for r in self.requeued:
            before[r.record.album_id][r.record.id] = r.failed_with
        return before


def requeue(repository: PhotoRepository, selection: RerunSelection) -> RequeueOutcome:
    """Failed (and optionally missing) photos of the selection back to pending, in one guarded
    statement per chunk, so a photo some other run holds is never touched."""
    requeued = repository.requeue_failed(
        album_id=selection.album_id,
        # An empty tuple would mean "none of them"; no ids chosen means the whole album.
        photo_ids=selection.photo_ids or None,
        include_missing=selection.include_missing,
    )
    return RequeueOutcome(requeued=requeued, not_requeued=_why_not_requeued(repository, selection, requeued))


def _why_not_requeued(
    repository: PhotoRepository, selection: RerunSelection, requeued: Sequence[RequeuedPhoto]
) -> dict[uuid.UUID, str]:
    done = {r.record.id for r in requeued}
    left = [p for p in selection.photo_ids if p not in done]
    rows = repository.get_many(left) if left else {}
    reasons: dict[uuid.UUID, str] = {}
    for photo_id in left:
        row = rows.get(photo_id)
        if row is None:
            reasons[photo_id] = "no such photo"
        elif selection.album_id is not None and row.album_id != selection.album_id:
            reasons[photo_id] = f"belongs to album {row.album_id}, not {selection.album_id}"
        else:
            reasons[photo_id] = _status_reason(row.status)
    return reasons


@dataclass(frozen=True)
class RerunResult:
    """What a re-run changed for the photos it requeued, each compared with the failure it had:
    a photo that fails again with the very same reason was not fixed by it, and says so."""

    album_id: uuid.UUID
    fixed: list[uuid.UUID] = field(default_factory=list)
    failed_again: list[uuid.UUID] = field(default_factory=list)  # the same reason as before
    failed_differently: dict[uuid.UUID, str] = field(default_factory=dict)  # photo -> its new reason
    # Requeued, but not finished by this run (released again, taken over, or left pending).
    not_finished: list[uuid.UUID] = field(default_factory=list)

    @property
    def photos(self) -> int:
        return len(self.fixed) + len(self.failed_again) + len(self.failed_differently) + len(self.not_finished)

    @property
    def changed_nothing(self) -> bool:
        """Every photo it finished failed again for the same reason."""
        return bool(self.failed_again) and not self.fixed and not self.failed_differently

    def summary(self) -> str:
        if not self.photos:
            return "re-run of no photo"
        parts = [f"{len(self.fixed)} fixed (completed)"]
        if self.failed_again:
            parts.append(f"{len(self.failed_again)} failed again, same reason")
        if self.failed_differently:
            parts.append(f"{len(self.failed_differently)} failed again with a new reason")
        if self.not_finished:
            parts.append(f"{len(self.not_finished)} not finished by this run")
        told = f"re-run of {self.photos} photo(s): " + ", ".join(parts)
        if self.changed_nothing:
            told += ": the re-run changed nothing (the originals are the same); replace them or fix the cause first"
        return told


def rerun_result(album_id: uuid.UUID, failures_before: Mapping[uuid.UUID, str | None], outcomes: Iterable[PhotoOutcome]) -> RerunResult:
    """Compare a re-run's outcomes with the failures its photos had (`failures_before`: photo ->
    error); outcomes of other photos the run rendered (new uploads of the album) are left out."""
    result = RerunResult(album_id)
    finished = set()
    for outcome in outcomes:
        if outcome.photo_id not in failures_before:
            continue
        if outcome.outcome is Outcome.COMPLETED:
            result.fixed.append(outcome.photo_id)
        elif outcome.outcome is Outcome.FAILED and outcome.detail == failures_before[outcome.photo_id]:
            result.failed_again.append(outcome.photo_id)
        elif outcome.outcome is Outcome.FAILED:
            result.failed_differently[outcome.photo_id] = outcome.detail or ""
        else:
            continue
        finished.add(outcome.photo_id)
    result.not_finished.extend(photo_id for photo_id in failures_before if photo_id not in finished)
    return result


def _status_reason(status: PhotoStatus) -> str:
    if status is PhotoStatus.MISSING:
        return "is missing (its original was gone); set include_missing once the file is back"
    if status is PhotoStatus.COMPLETED:
        return "is completed; use the rerender_albums job to render it again"
    return f"is {status.value}; only failed (or missing) photos are re-run"


@dataclass(frozen=True)
class FailedPhoto:
    id: uuid.UUID
    # The uploader's file name (or the key's last segment): what the operator recognises.
    filename: str
    error: str | None
    failure_kind: FailureKind | None = None

    @classmethod
    def of(cls, record: PhotoRecord) -> FailedPhoto:
        return cls(id=record.id, filename=record.display_filename, error=record.error, failure_kind=record.failure_kind)

    @property
    def advice(self) -> FailureAdvice:
        """Whether a re-run can help it, and what to do instead."""
        return advice(self.failure_kind)


@dataclass(frozen=True)
class AlbumFailures:
    album_id: uuid.UUID
    failed: int
    examples: list[FailedPhoto]

    @property
    def passed(self) -> bool:
        return self.failed == 0


def album_failures(repository: PhotoRepository, album_id: uuid.UUID, examples: int = FAILED_EXAMPLES) -> AlbumFailures:
    """The album's failed photos as the table has them now (whoever failed them)."""
    failed = repository.status_counts(album_id)[PhotoStatus.FAILED]
    listed = latest_failed(repository, album_id, examples) if failed else []
    return AlbumFailures(album_id=album_id, failed=failed, examples=listed)


def latest_failed(repository: PhotoRepository, album_id: uuid.UUID, limit: int) -> list[FailedPhoto]:
    """The album's most recently failed photos, with their file names and errors."""
    return [FailedPhoto.of(r) for r in repository.failed_in_albums([album_id], limit).get(album_id, [])]


# How many albums the cross-album view lists by name; the counts cover all of them.
LISTED_FAILED_ALBUMS = 20


@dataclass(frozen=True)
class FailedAlbum:
    album_id: uuid.UUID
    title: str | None
    failed: int


@dataclass(frozen=True)
class FailuresAcrossAlbums:
    """Every album with failed photos, at a glance: how many albums and photos, the worst listed."""

    albums: int
    photos: int
    listed: list[FailedAlbum]

    @property
    def passed(self) -> bool:
        return self.photos == 0


def failures_across_albums(repository: PhotoRepository, limit: int = LISTED_FAILED_ALBUMS) -> FailuresAcrossAlbums:
    """The albums that have failed photos now, the most failed first (two small grouped reads on
    the status index, and the titles of those listed)."""
    counts = repository.failed_photo_counts(limit)
    titles = repository.album_titles([album_id for album_id, _ in counts.most_failed])
    listed = [FailedAlbum(album_id, titles.get(album_id), failed) for album_id, failed in counts.most_failed]
    return FailuresAcrossAlbums(albums=counts.albums, photos=counts.photos, listed=listed)
